"""BLOOM: presets, checkpoint key table and tokenizer policy.

BLOOM on the shared decoder: ALiBi instead of positions, LayerNorm (also on the
embeddings), biases everywhere, one fused ``query_key_value`` projection, a plain GELU
(tanh approximation) MLP, tied output head.

Neuron sites (per layer) and the transformers modules they mirror:
qkv ``self_attention.query_key_value`` (3·d units in the checkpoint's layout,
``[head][q, k, v][head_dim]``), o ``self_attention.dense``, up ``mlp.dense_h_to_4h``,
down ``mlp.dense_4h_to_h``: 9·d units per layer.

Tokenizer policy: BLOOM's tokenizer adds no BOS (``bos_token_id`` is None); unconditional
generation starts from ``[</s>]`` (the EOS token, id 2), as the reference does.
"""

from __future__ import annotations

from typing import Mapping

from lang_neuron_jax.models.config import DecoderConfig, hf_value
from lang_neuron_jax.models.convert import Rule, linear_to_kernel
from lang_neuron_jax.errors import UserError

FAMILY = "bloom"
HF_MODEL_TYPES = ("bloom",)
GGUF_ARCHITECTURE = None


def _config(*, vocab_size, width, num_layers, num_heads, norm_eps=1e-5, eos_token_id=2,
            pad_token_id=3) -> DecoderConfig:
  return DecoderConfig(
      family=FAMILY, vocab_size=vocab_size, width=width, num_layers=num_layers,
      num_heads=num_heads, num_kv_heads=num_heads, head_dim=width // num_heads,
      mlp_width=4 * width, layer_kinds=("global",) * num_layers,
      query_scale=(width // num_heads) ** -0.5, norm_eps=norm_eps, activation="gelu_tanh",
      tie_embeddings=True, norm_kind="layer", attention_bias=True, mlp_bias=True,
      position_kind="alibi", mlp_kind="plain", fused_qkv=True, embed_norm=True,
      bos_token_id=None, eos_token_id=eos_token_id, pad_token_id=pad_token_id)


PRESETS: Mapping[str, DecoderConfig] = {
    "bloom-560m": _config(vocab_size=250_880, width=1024, num_layers=24, num_heads=16),
    "bloom-1b7": _config(vocab_size=250_880, width=2048, num_layers=24, num_heads=16),
    "bloom-3b": _config(vocab_size=250_880, width=2560, num_layers=30, num_heads=32),
}


def config_from_hf(hf: Mapping) -> DecoderConfig:
  """Builds the config from a transformers ``config.json`` dict."""
  if hf.get("apply_residual_connection_post_layernorm"):
    raise UserError("BLOOM with apply_residual_connection_post_layernorm is not supported.")
  return _config(vocab_size=hf["vocab_size"], width=hf.get("hidden_size", hf.get("n_embed")),
                 num_layers=hf.get("n_layer", hf.get("num_hidden_layers")),
                 num_heads=hf.get("n_head", hf.get("num_attention_heads")),
                 norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                 eos_token_id=hf_value(hf, "eos_token_id", 2), pad_token_id=hf_value(hf, "pad_token_id", 3))


def hf_rules(config: DecoderConfig) -> tuple[Rule, ...]:
  layer = "transformer.h.{i}."
  rules = [Rule("transformer.word_embeddings.weight", "embed/embedding")]
  for ours, theirs in (("embed_norm", "transformer.word_embeddings_layernorm"),
                       ("final_norm", "transformer.ln_f")):
    rules += [Rule(f"{theirs}.weight", f"{ours}/scale"), Rule(f"{theirs}.bias", f"{ours}/bias")]
  for ours, theirs in (("pre_attn_norm", "input_layernorm"),
                       ("pre_mlp_norm", "post_attention_layernorm")):
    rules += [Rule(layer + f"{theirs}.weight", f"layer_{{i}}/{ours}/scale"),
              Rule(layer + f"{theirs}.bias", f"layer_{{i}}/{ours}/bias")]
  for ours, theirs in (("attn/qkv_proj", "self_attention.query_key_value"),
                       ("attn/o_proj", "self_attention.dense"),
                       ("mlp/up_proj", "mlp.dense_h_to_4h"), ("mlp/down_proj", "mlp.dense_4h_to_h")):
    rules += [Rule(layer + f"{theirs}.weight", f"layer_{{i}}/{ours}/kernel", linear_to_kernel),
              Rule(layer + f"{theirs}.bias", f"layer_{{i}}/{ours}/bias")]
  return tuple(rules)


HF_IGNORED = (r"lm_head\.weight",)
