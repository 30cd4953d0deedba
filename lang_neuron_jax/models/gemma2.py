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

Tokenizer policy: the tokenizer prepends ``<bos>`` (id 2); unconditional generation starts
from ``[<bos>]``.
"""

from __future__ import annotations

from typing import Mapping

from lang_neuron_jax.errors import UserError
from lang_neuron_jax.models import gemma3, llama
from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.models.convert import Rule

FAMILY = "gemma2"
HF_MODEL_TYPES = ("gemma2",)
GGUF_ARCHITECTURE = None


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
