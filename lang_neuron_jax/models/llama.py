"""Llama-2: presets, checkpoint key table and tokenizer policy.

Llama on the shared decoder: RMSNorm (multiplying by ``w``), RoPE (transformers'
checkpoints are already permuted for the half-split ``rotate_half`` layout), SwiGLU,
grouped-query attention (70B), an untied output head, no biases.

Neuron sites (per layer) and the transformers modules they mirror:
q ``self_attn.q_proj``, k ``self_attn.k_proj``, v ``self_attn.v_proj``, o ``self_attn.o_proj``,
gate ``mlp.gate_proj``, up ``mlp.up_proj``, down ``mlp.down_proj``: 42,496 units per layer in
Llama-2-7b (1,359,872 in all).

Tokenizer policy: the tokenizer prepends ``<s>`` (id 1); unconditional generation starts
from ``[<s>]``.
"""

from __future__ import annotations

from typing import Mapping

from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.models.convert import Rule, linear_to_kernel

FAMILY = "llama"
HF_MODEL_TYPES = ("llama",)
GGUF_ARCHITECTURE = None  # Llama GGUF files permute q/k for interleaved RoPE; not supported.


def _preset(*, width, num_layers, num_heads, num_kv_heads, mlp_width) -> DecoderConfig:
  return DecoderConfig(
      family=FAMILY, vocab_size=32_000, width=width, num_layers=num_layers,
      num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=width // num_heads,
      mlp_width=mlp_width, layer_kinds=("global",) * num_layers, rope_base_global=10_000.0,
      query_scale=(width // num_heads) ** -0.5, norm_eps=1e-5, activation="silu",
      tie_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)


PRESETS: Mapping[str, DecoderConfig] = {
    "llama2-7b": _preset(width=4096, num_layers=32, num_heads=32, num_kv_heads=32,
                         mlp_width=11008),
    "llama2-13b": _preset(width=5120, num_layers=40, num_heads=40, num_kv_heads=40,
                          mlp_width=13824),
}


def config_from_hf(hf: Mapping) -> DecoderConfig:
  """Builds the config from a transformers ``config.json`` dict."""
  rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
  if rope.get("rope_type", rope.get("type", "default")) not in ("default", "linear"):
    raise ValueError(f"Unsupported RoPE type {rope.get('rope_type')!r} in config.json.")
  width, heads = hf["hidden_size"], hf["num_attention_heads"]
  head_dim = hf.get("head_dim") or width // heads
  n = hf["num_hidden_layers"]
  eos = hf.get("eos_token_id", 2)
  return DecoderConfig(
      family=FAMILY, vocab_size=hf["vocab_size"], width=width, num_layers=n,
      num_heads=heads, num_kv_heads=hf.get("num_key_value_heads") or heads, head_dim=head_dim,
      mlp_width=hf["intermediate_size"], layer_kinds=("global",) * n,
      rope_base_global=float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))),
      rope_scale_global=float(rope.get("factor", 1.0)), query_scale=head_dim ** -0.5,
      norm_eps=hf.get("rms_norm_eps", 1e-6), activation="silu",
      tie_embeddings=hf.get("tie_word_embeddings", False),
      attention_bias=hf.get("attention_bias", False), mlp_bias=hf.get("mlp_bias", False),
      bos_token_id=hf.get("bos_token_id", 1),
      eos_token_id=eos[0] if isinstance(eos, (list, tuple)) else eos,
      pad_token_id=hf.get("pad_token_id") or 0)


def hf_rules(config: DecoderConfig) -> tuple[Rule, ...]:
  """The key table; biases only when the config has them."""
  layer = "model.layers.{i}."
  rules = [Rule("model.embed_tokens.weight", "embed/embedding"),
           Rule("model.norm.weight", "final_norm/scale"),
           Rule(layer + "input_layernorm.weight", "layer_{i}/pre_attn_norm/scale"),
           Rule(layer + "post_attention_layernorm.weight", "layer_{i}/pre_mlp_norm/scale")]
  if not config.tie_embeddings:
    rules.append(Rule("lm_head.weight", "lm_head"))
  for p in "qkvo":
    rules.append(Rule(layer + f"self_attn.{p}_proj.weight", f"layer_{{i}}/attn/{p}_proj/kernel",
                      linear_to_kernel))
    if config.attention_bias:
      rules.append(Rule(layer + f"self_attn.{p}_proj.bias", f"layer_{{i}}/attn/{p}_proj/bias"))
  for p in ("gate", "up", "down"):
    rules.append(Rule(layer + f"mlp.{p}_proj.weight", f"layer_{{i}}/mlp/{p}_proj/kernel",
                      linear_to_kernel))
    if config.mlp_bias:
      rules.append(Rule(layer + f"mlp.{p}_proj.bias", f"layer_{{i}}/mlp/{p}_proj/bias"))
  return tuple(rules)


HF_IGNORED = (r"lm_head\.weight", r".*rotary_emb\.inv_freq")
