"""Cohere (Command-R, Aya Expanse; ``model_type`` "cohere"): presets, checkpoint key
table and tokenizer policy.

Cohere on the shared decoder: a parallel block, ``x + attn(n(x)) + mlp(n(x))`` with ONE
norm per block (``input_layernorm``; there is no ``post_attention_layernorm``), and that
norm is a LayerNorm with a weight and no bias (``CohereLayerNorm``: mean-centred, ``w *
(x - mean) / std``), as is the final norm. RoPE is interleaved (GPT-J's rotate-every-two:
``CohereRotaryEmbedding`` repeats each frequency with ``repeat_interleave`` and
``rotate_half`` pairs ``x[2i]`` with ``x[2i+1]``). The output logits are multiplied by
``logit_scale`` (0.0625 in Command-R, 0.125 in Aya Expanse 8B); the head is tied to the
embeddings. SwiGLU MLP, no biases unless ``attention_bias``. ``use_qk_norm`` (Command-R+)
is implemented: a bias-free LayerNorm over each head of q and k before RoPE, with one
weight per head (``[N, H]`` and ``[K, H]``). Cohere 2 (``cohere2``, e.g. Command R7B, with
sliding windows) is another model type, not this one.

Neuron sites (per layer) and the transformers modules they mirror (``CohereDecoderLayer``):

  q     self_attn.q_proj   N*H  (before q_norm, if any, and RoPE)
  k     self_attn.k_proj   K*H  (before k_norm, if any, and RoPE)
  v     self_attn.v_proj   K*H          o     self_attn.o_proj   D
  gate  mlp.gate_proj      F            up    mlp.up_proj        F
  down  mlp.down_proj      D
  gate_act  mlp.act_fn output, silu(gate) (LAPE's activation site)   F
  act   input of mlp.down_proj, silu(gate) * up                     F
  resid output of the decoder layer, x + attn + mlp                 D

Tokenizer policy: the tokenizer prepends ``<BOS_TOKEN>`` (id 5); unconditional generation
starts from ``[<BOS_TOKEN>]``.
"""

from __future__ import annotations

from typing import Mapping

from lang_neuron_jax.models import llama
from lang_neuron_jax.models.config import DecoderConfig

FAMILY = "cohere"
HF_MODEL_TYPES = ("cohere",)
GGUF_ARCHITECTURE = None


def _preset(*, width, num_layers, num_heads, num_kv_heads, mlp_width, logit_scale,
            rope_base) -> DecoderConfig:
  head_dim = width // num_heads
  return DecoderConfig(
      family=FAMILY, vocab_size=256_000, width=width, num_layers=num_layers,
      num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim, mlp_width=mlp_width,
      layer_kinds=("global",) * num_layers, rope_base_global=rope_base,
      rope_base_local=rope_base, rope_interleaved=True, query_scale=head_dim ** -0.5,
      norm_eps=1e-5, norm_kind="layer", norm_bias=False, parallel_block=True,
      activation="silu", tie_embeddings=True, logit_scale=logit_scale, bos_token_id=5,
      eos_token_id=255_001, pad_token_id=0)


PRESETS: Mapping[str, DecoderConfig] = {
    "aya-expanse-8b": _preset(width=4096, num_layers=32, num_heads=32, num_kv_heads=8,
                              mlp_width=14336, logit_scale=0.125, rope_base=10_000.0),
    # Command-R v01 (35B): multi-head attention, RoPE base 8,000,000.
    "command-r-35b": _preset(width=8192, num_layers=40, num_heads=64, num_kv_heads=64,
                             mlp_width=22528, logit_scale=0.0625, rope_base=8_000_000.0),
}


def config_from_hf(hf: Mapping) -> DecoderConfig:
  """Builds the config from a transformers ``config.json`` dict."""
  width, heads = hf["hidden_size"], hf["num_attention_heads"]
  head_dim = hf.get("head_dim") or width // heads
  n = hf["num_hidden_layers"]
  scale = hf.get("logit_scale")
  return DecoderConfig(
      family=FAMILY, vocab_size=hf["vocab_size"], width=width, num_layers=n, num_heads=heads,
      num_kv_heads=hf.get("num_key_value_heads") or heads, head_dim=head_dim,
      mlp_width=hf["intermediate_size"], layer_kinds=("global",) * n,
      **llama.rope_fields(hf, "Cohere"), rope_interleaved=True, query_scale=head_dim ** -0.5,
      norm_eps=hf.get("layer_norm_eps") or 1e-5, norm_kind="layer", norm_bias=False,
      qk_norm=bool(hf.get("use_qk_norm")), qk_norm_per_head=bool(hf.get("use_qk_norm")),
      parallel_block=True, activation=llama.activation_from_hf(hf, "Cohere"),
      tie_embeddings=hf.get("tie_word_embeddings", True),
      logit_scale=0.0625 if scale is None else float(scale),
      attention_bias=hf.get("attention_bias", False),
      bos_token_id=hf.get("bos_token_id", 5),
      eos_token_id=llama.first_id(hf.get("eos_token_id"), 255_001),
      pad_token_id=llama.first_id(hf.get("pad_token_id"), 0))


# Llama's key table: it leaves out the post-attention norm of a parallel block.
hf_rules = llama.hf_rules
HF_IGNORED = llama.HF_IGNORED
