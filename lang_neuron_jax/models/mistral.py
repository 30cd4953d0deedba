"""Mistral (7B v0.1-v0.3, Nemo 12B): presets, checkpoint key table and tokenizer policy.

Mistral on the shared decoder: Llama's block and key table (RMSNorm multiplying by
``w``, SwiGLU, half-split RoPE, no biases, untied head), grouped-query attention, an
explicit ``head_dim`` (Nemo: 128 with width 5120, so N*H != D), and, where config.json
sets ``sliding_window`` (v0.1: 4096), a sliding window on *every* layer: a query at
position t attends to keys t - W < s <= t, the window of transformers'
``sliding_window_overlay`` (``kv_idx > q_idx - sliding_window``) and of our
``attention_mask``, which Gemma 3 uses too. v0.2, v0.3 and Nemo set it to null (global
attention). transformers' MistralConfig ignores ``layer_types`` (it warns and points to
Ministral), so we do too.

Neuron sites: Llama's (the table in ``llama.py``; every family in docs/tap_sites.md), the
modules of ``MistralDecoderLayer``. LAPE's activation site is ``gate_act``, silu(gate).

Tokenizer policy: the tokenizer prepends ``<s>`` (id 1); unconditional generation starts
from ``[<s>]``.
"""

from __future__ import annotations

from typing import Mapping

from lang_neuron_jax.models import llama
from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.models.convert import Rule

FAMILY = "mistral"
HF_MODEL_TYPES = ("mistral",)
GGUF_ARCHITECTURE = None


def _preset(*, vocab_size, width, num_layers, mlp_width, rope_base, sliding_window=None,
            head_dim=128) -> DecoderConfig:
  kind = "local" if sliding_window else "global"
  return DecoderConfig(
      family=FAMILY, vocab_size=vocab_size, width=width, num_layers=num_layers, num_heads=32,
      num_kv_heads=8, head_dim=head_dim, mlp_width=mlp_width,
      layer_kinds=(kind,) * num_layers, sliding_window=sliding_window,
      rope_base_global=rope_base, rope_base_local=rope_base, query_scale=head_dim ** -0.5,
      norm_eps=1e-5, activation="silu", tie_embeddings=False, bos_token_id=1,
      eos_token_id=2, pad_token_id=0)


PRESETS: Mapping[str, DecoderConfig] = {
    "mistral-7b-v0.1": _preset(vocab_size=32_000, width=4096, num_layers=32, mlp_width=14336,
                               rope_base=10_000.0, sliding_window=4096),
    "mistral-7b-v0.3": _preset(vocab_size=32_768, width=4096, num_layers=32, mlp_width=14336,
                               rope_base=1_000_000.0),
    "mistral-nemo-12b": _preset(vocab_size=131_072, width=5120, num_layers=40,
                                mlp_width=14336, rope_base=1_000_000.0),
}


def config_from_hf(hf: Mapping) -> DecoderConfig:
  """Builds the config from a transformers ``config.json`` dict."""
  width, heads = hf["hidden_size"], hf["num_attention_heads"]
  head_dim = hf.get("head_dim") or width // heads
  n = hf["num_hidden_layers"]
  # transformers' default when the key is absent; v0.2+ configs write null.
  window = hf.get("sliding_window", 4096)
  return DecoderConfig(
      family=FAMILY, vocab_size=hf["vocab_size"], width=width, num_layers=n, num_heads=heads,
      num_kv_heads=hf.get("num_key_value_heads") or heads, head_dim=head_dim,
      mlp_width=hf["intermediate_size"], layer_kinds=("local" if window else "global",) * n,
      sliding_window=window or None, **llama.rope_fields(hf, "Mistral"),
      query_scale=head_dim ** -0.5, norm_eps=hf.get("rms_norm_eps", 1e-6),
      activation=llama.activation_from_hf(hf, "Mistral"),
      tie_embeddings=hf.get("tie_word_embeddings", False),
      bos_token_id=hf.get("bos_token_id", 1),
      eos_token_id=llama.first_id(hf.get("eos_token_id"), 2),
      pad_token_id=llama.first_id(hf.get("pad_token_id"), 0))


def hf_rules(config: DecoderConfig) -> tuple[Rule, ...]:
  """Llama's key table (Mistral has no biases)."""
  return llama.hf_rules(config)


HF_IGNORED = llama.HF_IGNORED
