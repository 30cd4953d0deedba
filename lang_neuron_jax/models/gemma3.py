"""Gemma 3 (text): presets, checkpoint key tables and tokenizer policy.

The forward pass is the shared :class:`~lang_neuron_jax.models.decoder.Decoder`; Gemma 3
turns on its sandwich norms, q/k norms, ``1 + w`` norm scales, scaled embeddings, GeGLU
(tanh GELU) and the local/global layer pattern (every 6th layer global, the rest with a
sliding window, each with its own RoPE base).

Neuron sites and the transformers module each one mirrors (per layer):

  q     self_attn.q_proj      N*H units      k   self_attn.k_proj   K*H
  v     self_attn.v_proj      K*H            o   self_attn.o_proj   D
  gate  mlp.gate_proj         F              up  mlp.up_proj        F
  down  mlp.down_proj         D              act input of down_proj F
  resid output of the decoder layer, D

Tokenizer policy: the tokenizer prepends ``<bos>`` (id 2); unconditional generation
starts from ``[<bos>]``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.models.convert import Rule, linear_to_kernel, minus_one
from lang_neuron_jax.models.sources import gguf_required
from lang_neuron_jax.errors import UserError

FAMILY = "gemma3"
# Architecture names in transformers' config.json ("model_type") and GGUF metadata.
HF_MODEL_TYPES = ("gemma3_text",)
GGUF_ARCHITECTURE = "gemma3"


def layer_kinds(num_layers: int, global_every: int = 6) -> tuple[str, ...]:
  """Gemma 3's pattern: layers ``global_every-1, 2*global_every-1, ...`` are global."""
  return tuple("global" if (i + 1) % global_every == 0 else "local" for i in range(num_layers))


def _preset(*, width, num_layers, num_heads, num_kv_heads, mlp_width, sliding_window,
            rope_scale_global=1.0, head_dim=256, query_pre_attn_scalar=256) -> DecoderConfig:
  return DecoderConfig(
      family=FAMILY,
      vocab_size=262_144,
      width=width,
      num_layers=num_layers,
      num_heads=num_heads,
      num_kv_heads=num_kv_heads,
      head_dim=head_dim,
      mlp_width=mlp_width,
      layer_kinds=layer_kinds(num_layers),
      sliding_window=sliding_window,
      rope_base_global=1_000_000.0,
      rope_base_local=10_000.0,
      rope_scale_global=rope_scale_global,
      query_scale=query_pre_attn_scalar ** -0.5,
      norm_eps=1e-6,
      norm_plus_one=True,
      qk_norm=True,
      sandwich_norms=True,
      embed_scale=width ** 0.5,
      activation="gelu_tanh",
      tie_embeddings=True,
      bos_token_id=2,
      eos_token_id=1,
      pad_token_id=0,
  )


PRESETS: Mapping[str, DecoderConfig] = {
    "gemma3-270m": _preset(width=640, num_layers=18, num_heads=4, num_kv_heads=1,
                           mlp_width=2048, sliding_window=512),
    "gemma3-1b": _preset(width=1152, num_layers=26, num_heads=4, num_kv_heads=1,
                         mlp_width=6912, sliding_window=512),
    "gemma3-4b": _preset(width=2560, num_layers=34, num_heads=8, num_kv_heads=4,
                         mlp_width=10240, sliding_window=1024, rope_scale_global=8.0),
}


def config_from_hf(hf: Mapping) -> DecoderConfig:
  """Builds the config from a transformers ``config.json`` dict (v4 or v5 layout)."""
  if "text_config" in hf:
    hf = hf["text_config"]
  n = hf["num_hidden_layers"]
  if hf.get("layer_types"):
    kinds = tuple("local" if t == "sliding_attention" else "global" for t in hf["layer_types"])
  else:
    kinds = layer_kinds(n, hf.get("sliding_window_pattern", hf.get("_sliding_window_pattern", 6)))
  rope = hf.get("rope_parameters") or {}
  if "full_attention" in rope:
    glob, loc = rope["full_attention"], rope.get("sliding_attention", {})
  else:  # transformers 4.x: rope_theta, rope_local_base_freq, rope_scaling
    glob = dict(hf.get("rope_scaling") or {}, rope_theta=hf.get("rope_theta", 1_000_000.0))
    loc = {"rope_theta": hf.get("rope_local_base_freq", 10_000.0)}
  for params in (glob, loc):
    if params.get("rope_type", "default") not in ("default", "linear"):
      raise UserError(f"Unsupported RoPE type {params['rope_type']!r} in config.json.")
  width = hf["hidden_size"]
  head_dim = hf.get("head_dim", width // hf["num_attention_heads"])
  eos = hf.get("eos_token_id", 1)
  return DecoderConfig(
      family=FAMILY,
      vocab_size=hf["vocab_size"],
      width=width,
      num_layers=n,
      num_heads=hf["num_attention_heads"],
      num_kv_heads=hf.get("num_key_value_heads", hf["num_attention_heads"]),
      head_dim=head_dim,
      mlp_width=hf["intermediate_size"],
      layer_kinds=kinds,
      sliding_window=hf.get("sliding_window") or 4096,
      rope_base_global=float(glob.get("rope_theta", 1_000_000.0)),
      rope_base_local=float(loc.get("rope_theta", 10_000.0)),
      rope_scale_global=float(glob.get("factor", 1.0)),
      query_scale=float(hf.get("query_pre_attn_scalar", head_dim)) ** -0.5,
      norm_eps=hf.get("rms_norm_eps", 1e-6),
      norm_plus_one=True,
      qk_norm=True,
      sandwich_norms=True,
      embed_scale=width ** 0.5,
      activation="gelu_tanh",
      tie_embeddings=hf.get("tie_word_embeddings", True),
      attn_logit_softcap=hf.get("attn_logit_softcapping"),
      final_logit_softcap=hf.get("final_logit_softcapping"),
      bos_token_id=hf.get("bos_token_id", 2),
      eos_token_id=eos[0] if isinstance(eos, (list, tuple)) else eos,
      pad_token_id=hf.get("pad_token_id", 0) or 0,
  )


def config_from_gguf(metadata: Mapping, tensor_names=()) -> DecoderConfig:
  """Builds the config from GGUF metadata (Gemma 3 always ties its head, so the tensor
  names are not needed).

  The GGUF does not record the local RoPE base or the layer pattern; Gemma 3 uses
  10,000 and a global layer every 6th for every published size.

  Raises:
    CheckpointMismatchError: a required key missing
      (:func:`~lang_neuron_jax.models.sources.gguf_required`).
  """
  del tensor_names
  a = GGUF_ARCHITECTURE
  n = int(gguf_required(metadata, f"{a}.block_count"))
  width = int(gguf_required(metadata, f"{a}.embedding_length"))
  head_dim = int(gguf_required(metadata, f"{a}.attention.key_length"))
  vocab = len(gguf_required(metadata, "tokenizer.ggml.tokens"))
  return _preset(
      width=width, num_layers=n,
      num_heads=int(gguf_required(metadata, f"{a}.attention.head_count")),
      num_kv_heads=int(gguf_required(metadata, f"{a}.attention.head_count_kv")),
      mlp_width=int(gguf_required(metadata, f"{a}.feed_forward_length")),
      sliding_window=int(gguf_required(metadata, f"{a}.attention.sliding_window")),
      rope_scale_global=float(metadata.get(f"{a}.rope.scaling.factor", 1.0)),
      head_dim=head_dim,
  ).replace(
      vocab_size=vocab,
      rope_base_global=float(metadata.get(f"{a}.rope.freq_base", 1_000_000.0)),
      norm_eps=_shortest_float32(metadata.get(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)),
      bos_token_id=int(metadata.get("tokenizer.ggml.bos_token_id", 2)),
      eos_token_id=int(metadata.get("tokenizer.ggml.eos_token_id", 1)),
      pad_token_id=int(metadata.get("tokenizer.ggml.padding_token_id", 0)),
  )


def _shortest_float32(value) -> float:
  """GGUF stores floats as float32; read 1e-6 back as 1e-6, not 9.99999997e-07."""
  return float(str(np.float32(value)))


_HF_LAYER = "model.layers.{i}."
HF_RULES = (
    Rule("model.embed_tokens.weight", "embed/embedding"),
    Rule("model.norm.weight", "final_norm/scale"),
    *(Rule(_HF_LAYER + f"self_attn.{p}_proj.weight", f"layer_{{i}}/attn/{p}_proj/kernel",
           linear_to_kernel) for p in "qkvo"),
    *(Rule(_HF_LAYER + f"mlp.{p}_proj.weight", f"layer_{{i}}/mlp/{p}_proj/kernel",
           linear_to_kernel) for p in ("gate", "up", "down")),
    Rule(_HF_LAYER + "self_attn.q_norm.weight", "layer_{i}/attn/q_norm/scale"),
    Rule(_HF_LAYER + "self_attn.k_norm.weight", "layer_{i}/attn/k_norm/scale"),
    Rule(_HF_LAYER + "input_layernorm.weight", "layer_{i}/pre_attn_norm/scale"),
    Rule(_HF_LAYER + "post_attention_layernorm.weight", "layer_{i}/post_attn_norm/scale"),
    Rule(_HF_LAYER + "pre_feedforward_layernorm.weight", "layer_{i}/pre_mlp_norm/scale"),
    Rule(_HF_LAYER + "post_feedforward_layernorm.weight", "layer_{i}/post_mlp_norm/scale"),
)
# Tied checkpoints may still store the head; nothing else may go unused.
HF_IGNORED = (r"lm_head\.weight",)


def hf_rules(config: DecoderConfig) -> tuple[Rule, ...]:
  del config  # Gemma 3 checkpoints have one layout.
  return HF_RULES

_GGUF_LAYER = "blk.{i}."
GGUF_RULES = (
    Rule("token_embd.weight", "embed/embedding"),
    Rule("output_norm.weight", "final_norm/scale", minus_one),
    *(Rule(_GGUF_LAYER + f"attn_{g}.weight", f"layer_{{i}}/attn/{p}_proj/kernel",
           linear_to_kernel) for g, p in (("q", "q"), ("k", "k"), ("v", "v"), ("output", "o"))),
    *(Rule(_GGUF_LAYER + f"ffn_{p}.weight", f"layer_{{i}}/mlp/{p}_proj/kernel",
           linear_to_kernel) for p in ("gate", "up", "down")),
    Rule(_GGUF_LAYER + "attn_q_norm.weight", "layer_{i}/attn/q_norm/scale", minus_one),
    Rule(_GGUF_LAYER + "attn_k_norm.weight", "layer_{i}/attn/k_norm/scale", minus_one),
    Rule(_GGUF_LAYER + "attn_norm.weight", "layer_{i}/pre_attn_norm/scale", minus_one),
    Rule(_GGUF_LAYER + "post_attention_norm.weight", "layer_{i}/post_attn_norm/scale", minus_one),
    Rule(_GGUF_LAYER + "ffn_norm.weight", "layer_{i}/pre_mlp_norm/scale", minus_one),
    Rule(_GGUF_LAYER + "post_ffw_norm.weight", "layer_{i}/post_mlp_norm/scale", minus_one),
)
GGUF_IGNORED = ()


def gguf_rules(config: DecoderConfig) -> tuple[Rule, ...]:
  del config  # Gemma 3 GGUF files have one layout.
  return GGUF_RULES
