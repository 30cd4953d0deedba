"""XGLM: presets, checkpoint key table and tokenizer policy.

XGLM on the shared decoder: LayerNorm, biases everywhere, sinusoidal absolute positions
added at ``position + 2`` (fairseq's offset), embeddings scaled by ``sqrt(d)`` when
``scale_embedding``, a plain GELU MLP (fc1, fc2), tied output head.

Neuron sites (per layer) and the transformers modules they mirror:
q ``self_attn.q_proj`` (before XGLM's query scaling), k ``self_attn.k_proj``,
v ``self_attn.v_proj``, o ``self_attn.out_proj``, up ``fc1``, down ``fc2``: 9·d units per
layer (221,184 in XGLM-564M).

Tokenizer policy: XGLM's tokenizer prepends ``</s>`` (id 2), so ``bos_token_id`` is 2;
unconditional generation starts from ``[</s>]``.
"""

from __future__ import annotations

from typing import Mapping

from lang_neuron_jax.models.config import DecoderConfig, hf_value
from lang_neuron_jax.models.convert import Rule, linear_to_kernel
from lang_neuron_jax.errors import UserError

FAMILY = "xglm"
HF_MODEL_TYPES = ("xglm",)
GGUF_ARCHITECTURE = None


def _config(*, vocab_size, width, num_layers, num_heads, mlp_width, scale_embedding=True,
            activation="gelu", eos_token_id=2, pad_token_id=1) -> DecoderConfig:
  return DecoderConfig(
      family=FAMILY, vocab_size=vocab_size, width=width, num_layers=num_layers,
      num_heads=num_heads, num_kv_heads=num_heads, head_dim=width // num_heads,
      mlp_width=mlp_width, layer_kinds=("global",) * num_layers,
      query_scale=(width // num_heads) ** -0.5, norm_eps=1e-5,
      embed_scale=width ** 0.5 if scale_embedding else 1.0, activation=activation,
      tie_embeddings=True, norm_kind="layer", attention_bias=True, mlp_bias=True,
      position_kind="sinusoidal", position_offset=2, mlp_kind="plain",
      bos_token_id=eos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id)


PRESETS: Mapping[str, DecoderConfig] = {
    "xglm-564m": _config(vocab_size=256_008, width=1024, num_layers=24, num_heads=16,
                         mlp_width=4096),
    "xglm-1.7b": _config(vocab_size=256_008, width=2048, num_layers=24, num_heads=16,
                         mlp_width=8192),
    "xglm-2.9b": _config(vocab_size=256_008, width=2048, num_layers=48, num_heads=16,
                         mlp_width=8192),
}

_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                "relu": "relu", "silu": "silu"}


def config_from_hf(hf: Mapping) -> DecoderConfig:
  """Builds the config from a transformers ``config.json`` dict."""
  act = hf.get("activation_function", "gelu")
  if act not in _ACTIVATIONS:
    raise UserError(f"Unsupported XGLM activation {act!r}; supported: {sorted(_ACTIVATIONS)}.")
  return _config(vocab_size=hf["vocab_size"], width=hf["d_model"], num_layers=hf["num_layers"],
                 num_heads=hf["attention_heads"], mlp_width=hf["ffn_dim"],
                 scale_embedding=hf.get("scale_embedding", True), activation=_ACTIVATIONS[act],
                 eos_token_id=hf_value(hf, "eos_token_id", 2), pad_token_id=hf_value(hf, "pad_token_id", 1))


def hf_rules(config: DecoderConfig) -> tuple[Rule, ...]:
  layer = "model.layers.{i}."
  rules = [Rule("model.embed_tokens.weight", "embed/embedding"),
           Rule("model.layer_norm.weight", "final_norm/scale"),
           Rule("model.layer_norm.bias", "final_norm/bias")]
  for ours, theirs in (("pre_attn_norm", "self_attn_layer_norm"),
                       ("pre_mlp_norm", "final_layer_norm")):
    rules += [Rule(layer + f"{theirs}.weight", f"layer_{{i}}/{ours}/scale"),
              Rule(layer + f"{theirs}.bias", f"layer_{{i}}/{ours}/bias")]
  for ours, theirs in (("attn/q_proj", "self_attn.q_proj"), ("attn/k_proj", "self_attn.k_proj"),
                       ("attn/v_proj", "self_attn.v_proj"), ("attn/o_proj", "self_attn.out_proj"),
                       ("mlp/up_proj", "fc1"), ("mlp/down_proj", "fc2")):
    rules += [Rule(layer + f"{theirs}.weight", f"layer_{{i}}/{ours}/kernel", linear_to_kernel),
              Rule(layer + f"{theirs}.bias", f"layer_{{i}}/{ours}/bias")]
  return tuple(rules)


# The sinusoidal table is a non-persistent buffer; a tied head may still be stored.
HF_IGNORED = (r"lm_head\.weight", r"model\.embed_positions\..*")
