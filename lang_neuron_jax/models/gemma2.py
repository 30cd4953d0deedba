"""Gemma 2: presets, checkpoint key table and tokenizer policy.

Gemma 2 on the shared decoder: RMSNorms that multiply by ``1 + w``, four per block (the
sandwich: ``input_layernorm`` before attention, ``post_attention_layernorm`` on its
output, ``pre_feedforward_layernorm`` before the MLP, ``post_feedforward_layernorm`` on
its output), embeddings times ``sqrt(D)``, GeGLU with tanh GELU, query scale
``query_pre_attn_scalar ** -0.5`` (not always ``H ** -0.5``: 27B uses 144 with H = 128),
tanh soft caps on attention logits (50) and output logits (30), a tied head, and
sliding-window (4096) and global layers alternating, the sliding ones first (layer 0),
unless ``layer_types`` says otherwise. Unlike Gemma 3 it has no q/k norms and one RoPE base
(10,000) for both kinds of layer. ``use_bidirectional_attention`` is refused.

Neuron sites (per layer) and the transformers modules they mirror (``Gemma2DecoderLayer``):

  q     self_attn.q_proj   N*H  (before RoPE)    k     self_attn.k_proj   K*H (before RoPE)
  v     self_attn.v_proj   K*H                   o     self_attn.o_proj   D (before
                                                       post_attention_layernorm)
  gate  mlp.gate_proj      F                     up    mlp.up_proj        F
  down  mlp.down_proj      D (before post_feedforward_layernorm)
  gate_act  mlp.act_fn output, gelu_tanh(gate) (LAPE's activation site)   F
  act   input of mlp.down_proj, gelu_tanh(gate) * up                     F
  resid output of the decoder layer                                      D

GGUF (llama.cpp's ``gemma2`` architecture, written by ``Gemma2Model`` in its
``convert_hf_to_gguf.py``, ``conversion/gemma.py`` in recent trees): every
``*norm.weight`` stored as ``1 + w``; no ``output.weight`` (the head is always tied);
metadata with the head dimension (``key_length``), both soft caps and the sliding window,
but neither the RoPE base (10,000 unless the file says otherwise) nor
``query_pre_attn_scalar`` nor a layer pattern, which llama.cpp fixes for the
architecture (see :func:`config_from_gguf`).

Tokenizer policy: the tokenizer prepends ``<bos>`` (id 2); unconditional generation starts
from ``[<bos>]``.
"""

from __future__ import annotations

from typing import Mapping

from lang_neuron_jax.errors import CheckpointMismatchError, UserError
from lang_neuron_jax.models import gemma3, llama
from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.models.convert import Rule
from lang_neuron_jax.models.sources import gguf_float, gguf_head_dim, gguf_required

FAMILY = "gemma2"
HF_MODEL_TYPES = ("gemma2",)
GGUF_ARCHITECTURE = "gemma2"


def layer_kinds(num_layers: int) -> tuple[str, ...]:
  """Gemma 2's default pattern: even layers local (sliding), odd layers global."""
  return tuple("local" if i % 2 == 0 else "global" for i in range(num_layers))


def _preset(*, width, num_layers, num_heads, num_kv_heads, mlp_width, head_dim=256,
            query_pre_attn_scalar=256) -> DecoderConfig:
  return DecoderConfig(
      family=FAMILY, vocab_size=256_000, width=width, num_layers=num_layers,
      num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim, mlp_width=mlp_width,
      layer_kinds=layer_kinds(num_layers), sliding_window=4096, rope_base_global=10_000.0,
      rope_base_local=10_000.0, query_scale=query_pre_attn_scalar ** -0.5, norm_eps=1e-6,
      norm_plus_one=True, sandwich_norms=True, embed_scale=width ** 0.5,
      activation="gelu_tanh", tie_embeddings=True, attn_logit_softcap=50.0,
      final_logit_softcap=30.0, bos_token_id=2, eos_token_id=1, pad_token_id=0)


PRESETS: Mapping[str, DecoderConfig] = {
    "gemma2-2b": _preset(width=2304, num_layers=26, num_heads=8, num_kv_heads=4,
                         mlp_width=9216),
    "gemma2-9b": _preset(width=3584, num_layers=42, num_heads=16, num_kv_heads=8,
                         mlp_width=14336),
}


def config_from_hf(hf: Mapping) -> DecoderConfig:
  """Builds the config from a transformers ``config.json`` dict."""
  if hf.get("use_bidirectional_attention"):
    raise UserError("Gemma 2 config.json sets use_bidirectional_attention; only causal "
                    "attention is implemented.")
  n = hf["num_hidden_layers"]
  types = hf.get("layer_types")
  if types:
    if len(types) != n or set(types) - {"sliding_attention", "full_attention"}:
      raise UserError(f"Gemma 2 config.json has layer_types {types}; expected {n} entries "
                      "of 'full_attention' or 'sliding_attention'.")
    kinds = tuple("local" if t == "sliding_attention" else "global" for t in types)
  else:
    kinds = layer_kinds(n)
  width, heads = hf["hidden_size"], hf["num_attention_heads"]
  head_dim = hf.get("head_dim") or width // heads
  window = hf.get("sliding_window", 4096)  # transformers' default when the key is absent
  if "local" in kinds and not window:
    raise UserError("Gemma 2 config.json has sliding_attention layers but no sliding_window.")
  return DecoderConfig(
      family=FAMILY, vocab_size=hf["vocab_size"], width=width, num_layers=n, num_heads=heads,
      num_kv_heads=hf.get("num_key_value_heads") or heads, head_dim=head_dim,
      mlp_width=hf["intermediate_size"], layer_kinds=kinds, sliding_window=window or None,
      **llama.rope_fields(hf, "Gemma 2"),
      query_scale=float(hf.get("query_pre_attn_scalar") or head_dim) ** -0.5,
      norm_eps=hf.get("rms_norm_eps", 1e-6), norm_plus_one=True, sandwich_norms=True,
      embed_scale=width ** 0.5,
      activation=llama.activation_from_hf(hf, "Gemma 2", "hidden_activation",
                                          "gelu_pytorch_tanh"),
      tie_embeddings=hf.get("tie_word_embeddings", True),
      attn_logit_softcap=hf.get("attn_logit_softcapping"),
      final_logit_softcap=hf.get("final_logit_softcapping"),
      attention_bias=hf.get("attention_bias", False),
      bos_token_id=hf.get("bos_token_id", 2),
      eos_token_id=llama.first_id(hf.get("eos_token_id"), 1),
      pad_token_id=llama.first_id(hf.get("pad_token_id"), 0))


def hf_rules(config: DecoderConfig) -> tuple[Rule, ...]:
  """Gemma 3's key table without its q/k norms (same four norms per block); biases and an
  untied head when the config has them."""
  rules = [r for r in gemma3.HF_RULES if r.target.split("/")[-2] not in ("q_norm", "k_norm")]
  layer = "model.layers.{i}."
  if config.attention_bias:
    rules += [Rule(layer + f"self_attn.{p}_proj.bias", f"layer_{{i}}/attn/{p}_proj/bias")
              for p in "qkvo"]
  if not config.tie_embeddings:
    rules.append(Rule("lm_head.weight", "lm_head"))
  return tuple(rules)


HF_IGNORED = (r"lm_head\.weight",)


# llama.cpp's defaults when a gemma2 GGUF lacks the soft caps (llama_hparams in
# src/llama-hparams.h); its graph applies both caps to every gemma2 model.
_GGUF_DEFAULT_ATTN_CAP, _GGUF_DEFAULT_FINAL_CAP = 50.0, 30.0
# llama.cpp's block count of Gemma 2 27B, the one size whose query scale is not H ** -0.5.
_GGUF_27B_LAYERS = 46


def gguf_query_scale(num_layers: int, width: int, num_heads: int, head_dim: int) -> float:
  """The query scale llama.cpp uses for a gemma2 GGUF, which does not store
  ``query_pre_attn_scalar``.

  llama.cpp's ``load_hparams`` (``LLM_ARCH_GEMMA2``) takes ``(D / N) ** -0.5`` for the 27B
  (46 layers, D / N = 144, its published ``query_pre_attn_scalar``) and ``H ** -0.5``
  otherwise (2B and 9B: H = 256 = their ``query_pre_attn_scalar``). transformers' own GGUF
  loader instead keeps ``Gemma2Config``'s default 256, which is wrong for the 27B.
  """
  if num_layers == _GGUF_27B_LAYERS:
    return float(width // num_heads) ** -0.5
  return float(head_dim) ** -0.5


def config_from_gguf(metadata: Mapping, tensor_names=()) -> DecoderConfig:
  """Builds the config from the metadata llama.cpp's ``Gemma2Model.set_gguf_parameters``
  writes (no ``super()`` call: context and embedding length, block count, feed-forward
  length, head counts, RMS epsilon, key/value length, both soft caps, sliding window).

  What the file does not say is llama.cpp's for ``gemma2``: sliding layers first and
  alternating (``set_swa_pattern(2)``), RoPE base 10,000 for both kinds of layer (or
  ``rope.freq_base`` / ``rope.freq_base_swa`` if present), the query scale of
  :func:`gguf_query_scale`, soft caps 50 and 30. The head is tied: llama.cpp writes no
  ``output.weight`` for gemma2, so the tensor names are not needed.

  Raises:
    CheckpointMismatchError: a required key missing, no positive sliding window (llama.cpp
      would mask every key), or key and value head dimensions that differ.
    UserError: a RoPE scaling, which llama.cpp's converter never writes for Gemma 2.
  """
  del tensor_names
  a = GGUF_ARCHITECTURE
  n = int(gguf_required(metadata, f"{a}.block_count"))
  width = int(gguf_required(metadata, f"{a}.embedding_length"))
  heads = int(gguf_required(metadata, f"{a}.attention.head_count"))
  head_dim = gguf_head_dim(metadata, a, width, heads)
  window = int(gguf_required(metadata, f"{a}.attention.sliding_window"))
  if window <= 0:
    raise CheckpointMismatchError(
        f"This gemma2 GGUF has {a}.attention.sliding_window = {window}; Gemma 2's sliding "
        "layers need a positive window.")
  if metadata.get(f"{a}.rope.scaling.type", "none") != "none":
    raise UserError(f"gemma2 GGUF asks for RoPE scaling {metadata[f'{a}.rope.scaling.type']!r} "
                    f"({a}.rope.scaling.type); Gemma 2 has none and none is implemented.")
  base = gguf_float(metadata.get(f"{a}.rope.freq_base", 10_000.0))
  add_bos = metadata.get("tokenizer.ggml.add_bos_token",
                         metadata.get("tokenizer.ggml.model") == "llama")
  bos = metadata.get("tokenizer.ggml.bos_token_id", 2)
  return DecoderConfig(
      family=FAMILY, vocab_size=len(gguf_required(metadata, "tokenizer.ggml.tokens")),
      width=width, num_layers=n, num_heads=heads,
      num_kv_heads=int(metadata.get(f"{a}.attention.head_count_kv", heads)), head_dim=head_dim,
      mlp_width=int(gguf_required(metadata, f"{a}.feed_forward_length")),
      layer_kinds=layer_kinds(n), sliding_window=window, rope_base_global=base,
      rope_base_local=gguf_float(metadata.get(f"{a}.rope.freq_base_swa", base)),
      query_scale=gguf_query_scale(n, width, heads, head_dim),
      norm_eps=gguf_float(gguf_required(metadata, f"{a}.attention.layer_norm_rms_epsilon")),
      norm_plus_one=True, sandwich_norms=True, embed_scale=width ** 0.5,
      activation="gelu_tanh", tie_embeddings=True,
      attn_logit_softcap=gguf_float(
          metadata.get(f"{a}.attn_logit_softcapping", _GGUF_DEFAULT_ATTN_CAP)),
      final_logit_softcap=gguf_float(
          metadata.get(f"{a}.final_logit_softcapping", _GGUF_DEFAULT_FINAL_CAP)),
      bos_token_id=int(bos) if add_bos else None,
      eos_token_id=int(metadata.get("tokenizer.ggml.eos_token_id", 1)),
      pad_token_id=int(metadata.get("tokenizer.ggml.padding_token_id", 0)))


def gguf_rules(config: DecoderConfig) -> tuple[Rule, ...]:
  """Gemma 3's GGUF table without its q/k norms: the same names for the four norms per
  block (``attn_norm``, ``post_attention_norm``, ``ffn_norm``, ``post_ffw_norm``), each
  with the ``1 + w`` that ``Gemma2Model.modify_tensors`` adds taken off again."""
  del config  # llama.cpp writes one gemma2 layout (tied, no biases).
  return tuple(r for r in gemma3.GGUF_RULES
               if r.target.split("/")[-2] not in ("q_norm", "k_norm"))


GGUF_IGNORED = ()
