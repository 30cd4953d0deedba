"""Qwen3 (dense): presets, checkpoint key table and tokenizer policy.

Qwen3 on the shared decoder: Llama's block (RMSNorm multiplying by ``w``, SwiGLU,
half-split RoPE, no biases unless ``attention_bias``) plus an RMSNorm over each head of q
and k before RoPE (``Qwen3RMSNorm``: ``w * x / rms(x)``, one ``[H]`` scale shared by the
heads; not Gemma's ``1 + w``), an explicit ``head_dim`` (128 in every published size,
whatever the width), grouped-query attention, RoPE base 1,000,000. Sliding-window layers
exist only when ``use_sliding_window`` (off in every published checkpoint); then the
layers ``layer_types`` marks ``"sliding_attention"`` (by default those from
``max_window_layers`` on) attend to the last ``sliding_window`` tokens, as transformers'
``Qwen3Config`` decides. Qwen3-MoE (``qwen3_moe``) is another model type, not this one.

Neuron sites: Llama's (the table in ``llama.py``; every family in docs/tap_sites.md), the
modules of ``Qwen3DecoderLayer``; q and k are read before q_norm/k_norm and RoPE. LAPE's
activation site is ``gate_act``, silu(gate).

GGUF (llama.cpp's ``qwen3`` architecture, written by ``Qwen3Model`` in its
``convert_hf_to_gguf.py``, ``conversion/qwen.py`` in recent trees): Qwen2's layout and
metadata keys under ``qwen3.`` plus the ``attn_q_norm``/``attn_k_norm`` tensors;
``attention.key_length`` carries ``head_dim``. The converter writes no sliding window, so
every layer of a GGUF is global, as llama.cpp runs it.

Tokenizer policy: as Qwen2's (see ``qwen2.py``): the tokenizer adds no BOS
(``bos_token_id`` is None here, although config.json names one), and unconditional
generation starts from ``<|endoftext|>`` (151643), the separator between documents in
pre-training (``document_start_token_id``), not from the post-trained models' EOS
``<|im_end|>`` (151645), which chat markup follows.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from lang_neuron_jax.errors import UserError
from lang_neuron_jax.models import llama, qwen2
from lang_neuron_jax.models.config import DecoderConfig

FAMILY = "qwen3"
HF_MODEL_TYPES = ("qwen3",)
GGUF_ARCHITECTURE = "qwen3"
# <|endoftext|> in every Qwen3 vocabulary.
ENDOFTEXT = 151_643


def _preset(*, width, num_layers, num_heads, num_kv_heads, mlp_width,
            tie_embeddings) -> DecoderConfig:
  return DecoderConfig(
      family=FAMILY, vocab_size=151_936, width=width, num_layers=num_layers,
      num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=128, mlp_width=mlp_width,
      layer_kinds=("global",) * num_layers, rope_base_global=1_000_000.0,
      rope_base_local=1_000_000.0, query_scale=128 ** -0.5, norm_eps=1e-6, qk_norm=True,
      activation="silu", tie_embeddings=tie_embeddings, bos_token_id=None,
      eos_token_id=ENDOFTEXT, pad_token_id=ENDOFTEXT, document_start_token_id=ENDOFTEXT)


PRESETS: Mapping[str, DecoderConfig] = {
    "qwen3-0.6b": _preset(width=1024, num_layers=28, num_heads=16, num_kv_heads=8,
                          mlp_width=3072, tie_embeddings=True),
    "qwen3-1.7b": _preset(width=2048, num_layers=28, num_heads=16, num_kv_heads=8,
                          mlp_width=6144, tie_embeddings=True),
    "qwen3-8b": _preset(width=4096, num_layers=36, num_heads=32, num_kv_heads=8,
                        mlp_width=12288, tie_embeddings=False),
}


def layer_kinds(hf: Mapping) -> tuple[tuple[str, ...], int | None]:
  """Each layer's kind and the sliding window, as ``Qwen3Config.__post_init__`` decides
  them: no window unless ``use_sliding_window``; ``layer_types`` if given, else sliding
  from layer ``max_window_layers`` on."""
  n = hf["num_hidden_layers"]
  window = hf.get("sliding_window", 4096) if hf.get("use_sliding_window") else None
  types = hf.get("layer_types")
  if not types:
    start = hf.get("max_window_layers", 28)
    types = ["sliding_attention" if window is not None and i >= start else "full_attention"
             for i in range(n)]
  unknown = sorted(set(types) - {"sliding_attention", "full_attention"})
  if unknown or len(types) != n:
    raise UserError(f"Qwen3 config.json has layer_types {types}; expected {n} entries of "
                    "'full_attention' or 'sliding_attention'.")
  if "sliding_attention" in types and not window:
    # transformers would build sliding layers without a window; say so rather than guess.
    raise UserError("Qwen3 config.json marks sliding_attention layers but use_sliding_window "
                    "is off or sliding_window is unset; fix the config.")
  return tuple("local" if t == "sliding_attention" else "global" for t in types), window


def config_from_hf(hf: Mapping) -> DecoderConfig:
  """Builds the config from a transformers ``config.json`` dict."""
  width, heads = hf["hidden_size"], hf["num_attention_heads"]
  head_dim = hf.get("head_dim") or width // heads
  kinds, window = layer_kinds(hf)
  return DecoderConfig(
      family=FAMILY, vocab_size=hf["vocab_size"], width=width, num_layers=len(kinds),
      num_heads=heads, num_kv_heads=hf.get("num_key_value_heads") or heads, head_dim=head_dim,
      mlp_width=hf["intermediate_size"], layer_kinds=kinds, sliding_window=window,
      **llama.rope_fields(hf, "Qwen3"), query_scale=head_dim ** -0.5,
      norm_eps=hf.get("rms_norm_eps", 1e-6), qk_norm=True,
      activation=llama.activation_from_hf(hf, "Qwen3"),
      tie_embeddings=hf.get("tie_word_embeddings", False),
      attention_bias=hf.get("attention_bias", False), bos_token_id=None,
      eos_token_id=llama.first_id(hf.get("eos_token_id"), ENDOFTEXT),
      pad_token_id=llama.first_id(hf.get("pad_token_id"), ENDOFTEXT),
      document_start_token_id=ENDOFTEXT)


# Llama's key table, with the q/k norms (qk_norm).
hf_rules = llama.hf_rules


HF_IGNORED = llama.HF_IGNORED


def config_from_gguf(metadata: Mapping, tensor_names: Sequence[str] = ()) -> DecoderConfig:
  """Builds the config from the metadata llama.cpp writes for ``qwen3`` and the file's
  tensor names.

  llama.cpp's ``Qwen3Model`` subclasses ``Qwen2Model`` and adds no metadata of its own
  (``TextModel.set_gguf_parameters`` writes both), so Qwen2's reader applies under the
  ``qwen3.`` prefix (:func:`~lang_neuron_jax.models.qwen2.gguf_config`); then the q/k
  norms, and biases only where the file has them (transformers' ``attention_bias`` puts
  them on q, k, v and o alike, so ``attention_out_bias`` stays True as in
  :func:`config_from_hf`). A tied model has no ``output.weight``.
  """
  return qwen2.gguf_config(metadata, tensor_names, GGUF_ARCHITECTURE).replace(
      family=FAMILY, qk_norm=True, attention_bias="blk.0.attn_q.bias" in tensor_names,
      attention_out_bias=True)


# Qwen2's GGUF table: it adds the q/k norms and o's bias for a Qwen3 config.
gguf_rules = qwen2.gguf_rules


GGUF_IGNORED = ()
