"""Llama 2 and Llama 3.x: presets, checkpoint key table and tokenizer policy.

Llama on the shared decoder: RMSNorm (multiplying by ``w``), RoPE (transformers'
checkpoints are already permuted for the half-split ``rotate_half`` layout), SwiGLU,
grouped-query attention (Llama 2 70B, every Llama 3), no biases. Llama 2 has an untied
output head; Llama 3.2 1B and 3B tie it to the embeddings. Llama 3.x uses RoPE base
500,000 and, from 3.1 on, ``rope_type = "llama3"`` frequency scaling
(:func:`~lang_neuron_jax.models.decoder.llama3_frequencies`). RoPE types other than
default, linear and llama3 (dynamic, yarn, longrope, ...) are refused by name.

Neuron sites (per layer) and the transformers modules they mirror (``LlamaDecoderLayer``):

  q     self_attn.q_proj   N*H   (before RoPE)    k   self_attn.k_proj   K*H (before RoPE)
  v     self_attn.v_proj   K*H                     o   self_attn.o_proj   D
  gate  mlp.gate_proj      F                       up  mlp.up_proj        F
  down  mlp.down_proj      D
  gate_act  mlp.act_fn output, silu(gate) (LAPE's activation site)          F
  act   input of mlp.down_proj, silu(gate) * up                            F
  resid output of the decoder layer                                        D

42,496 neuron units per layer in Llama-2-7b (1,359,872 in all).

Tokenizer policy: Llama 2's tokenizer prepends ``<s>`` (id 1), Llama 3's
``<|begin_of_text|>`` (id 128000); unconditional generation starts from that token.
"""

from __future__ import annotations

from typing import Mapping

from lang_neuron_jax.errors import UserError
from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.models.convert import Rule, linear_to_kernel, reverse_llama_rope_permutation
from lang_neuron_jax.models.sources import gguf_float, gguf_required

FAMILY = "llama"
HF_MODEL_TYPES = ("llama",)
GGUF_ARCHITECTURE = "llama"  # q/k rows un-permuted on load (gguf_rules).


def _preset(*, width, num_layers, num_heads, num_kv_heads, mlp_width) -> DecoderConfig:
  return DecoderConfig(
      family=FAMILY, vocab_size=32_000, width=width, num_layers=num_layers,
      num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=width // num_heads,
      mlp_width=mlp_width, layer_kinds=("global",) * num_layers, rope_base_global=10_000.0,
      query_scale=(width // num_heads) ** -0.5, norm_eps=1e-5, activation="silu",
      tie_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def _llama3(*, width, num_layers, num_heads, mlp_width, tie_embeddings, factor,
            num_kv_heads=8) -> DecoderConfig:
  """Llama 3.x: vocabulary 128,256, RoPE base 500,000 with llama3 scaling."""
  head_dim = width // num_heads
  return DecoderConfig(
      family=FAMILY, vocab_size=128_256, width=width, num_layers=num_layers,
      num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
      mlp_width=mlp_width, layer_kinds=("global",) * num_layers, rope_base_global=500_000.0,
      rope_base_local=500_000.0, rope_llama3=(factor, 1.0, 4.0, 8192.0),
      query_scale=head_dim ** -0.5, norm_eps=1e-5, activation="silu",
      tie_embeddings=tie_embeddings, bos_token_id=128_000, eos_token_id=128_001,
      pad_token_id=0)


PRESETS: Mapping[str, DecoderConfig] = {
    "llama2-7b": _preset(width=4096, num_layers=32, num_heads=32, num_kv_heads=32,
                         mlp_width=11008),
    "llama2-13b": _preset(width=5120, num_layers=40, num_heads=40, num_kv_heads=40,
                          mlp_width=13824),
    "llama3.2-1b": _llama3(width=2048, num_layers=16, num_heads=32, mlp_width=8192,
                           tie_embeddings=True, factor=32.0),
    "llama3.2-3b": _llama3(width=3072, num_layers=28, num_heads=24, mlp_width=8192,
                           tie_embeddings=True, factor=32.0),
    "llama3.1-8b": _llama3(width=4096, num_layers=32, num_heads=32, mlp_width=14336,
                           tie_embeddings=False, factor=8.0),
}

# RoPE types whose frequencies we compute; transformers has more (ROPE_INIT_FUNCTIONS).
ROPE_TYPES = ("default", "linear", "llama3")


def rope_fields(hf: Mapping, model: str, default_theta: float = 10_000.0) -> dict:
  """The RoPE fields of a :class:`DecoderConfig` for a transformers config in which every
  layer shares one RoPE (Llama, Mistral, Qwen3, Gemma 2, Cohere).

  Reads transformers 5's ``rope_parameters`` or 4's ``rope_theta`` plus ``rope_scaling``
  (whose type may be under ``type``). llama3's ``original_max_position_embeddings``
  falls back to ``max_position_embeddings``, as transformers' does.

  Raises:
    UserError: naming a RoPE type or option we do not implement.
  """
  rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
  kind = rope.get("rope_type", rope.get("type", "default"))
  if kind not in ROPE_TYPES:
    raise UserError(f"{model} config.json asks for RoPE type {kind!r}, which is not "
                    f"implemented; supported: {list(ROPE_TYPES)}.")
  if float(rope.get("partial_rotary_factor", hf.get("partial_rotary_factor") or 1.0)) != 1.0:
    raise UserError(f"{model} config.json sets partial_rotary_factor "
                    f"{rope.get('partial_rotary_factor', hf.get('partial_rotary_factor'))}; "
                    "only RoPE over the whole head (1.0) is implemented.")
  theta = float(rope.get("rope_theta", hf.get("rope_theta") or default_theta))
  fields = dict(rope_base_global=theta, rope_base_local=theta)
  if kind == "linear":
    fields.update(rope_scale_global=float(rope["factor"]), rope_scale_local=float(rope["factor"]))
  elif kind == "llama3":
    original = rope.get("original_max_position_embeddings") or hf["max_position_embeddings"]
    fields["rope_llama3"] = (float(rope["factor"]), float(rope["low_freq_factor"]),
                             float(rope["high_freq_factor"]), float(original))
  return fields


def first_id(value, default):
  """A token id of config.json, which may be a list (several EOS tokens) or null."""
  if isinstance(value, (list, tuple)):
    value = value[0] if value else None
  return default if value is None else value


def config_from_hf(hf: Mapping) -> DecoderConfig:
  """Builds the config from a transformers ``config.json`` dict (Llama 2 or 3.x)."""
  width, heads = hf["hidden_size"], hf["num_attention_heads"]
  head_dim = hf.get("head_dim") or width // heads
  n = hf["num_hidden_layers"]
  return DecoderConfig(
      family=FAMILY, vocab_size=hf["vocab_size"], width=width, num_layers=n,
      num_heads=heads, num_kv_heads=hf.get("num_key_value_heads") or heads, head_dim=head_dim,
      mlp_width=hf["intermediate_size"], layer_kinds=("global",) * n,
      **rope_fields(hf, "Llama"), query_scale=head_dim ** -0.5,
      norm_eps=hf.get("rms_norm_eps", 1e-6), activation=activation_from_hf(hf, "Llama"),
      tie_embeddings=hf.get("tie_word_embeddings", False),
      attention_bias=hf.get("attention_bias", False), mlp_bias=hf.get("mlp_bias", False),
      bos_token_id=hf.get("bos_token_id", 1),
      eos_token_id=first_id(hf.get("eos_token_id"), 2),
      pad_token_id=first_id(hf.get("pad_token_id"), 0))


# transformers' hidden_act names of the activations the decoder implements.
ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_new": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


def activation_from_hf(hf: Mapping, model: str, key: str = "hidden_act",
                       default: str = "silu") -> str:
  """Our name of a config's MLP activation; refuses one we do not implement."""
  act = hf.get(key) or default
  if act not in ACTIVATIONS:
    raise UserError(f"{model} config.json asks for activation {act!r} ({key}), which is not "
                    f"implemented; supported: {sorted(ACTIVATIONS)}.")
  return ACTIVATIONS[act]



def hf_rules(config: DecoderConfig) -> tuple[Rule, ...]:
  """The key table of every Llama-layout checkpoint (Llama, Mistral, Qwen2, Qwen3, Cohere):
  biases where the config has them (Qwen2: q, k, v but not o), the post-attention norm
  unless the block is parallel (Cohere: one norm), q/k norms where it has them (Qwen3,
  Command-R+)."""
  layer = "model.layers.{i}."
  rules = [Rule("model.embed_tokens.weight", "embed/embedding"),
           Rule("model.norm.weight", "final_norm/scale"),
           Rule(layer + "input_layernorm.weight", "layer_{i}/pre_attn_norm/scale")]
  if not config.parallel_block:
    rules.append(Rule(layer + "post_attention_layernorm.weight", "layer_{i}/pre_mlp_norm/scale"))
  if not config.tie_embeddings:
    rules.append(Rule("lm_head.weight", "lm_head"))
  for p in "qkvo":
    rules.append(Rule(layer + f"self_attn.{p}_proj.weight", f"layer_{{i}}/attn/{p}_proj/kernel",
                      linear_to_kernel))
    if config.attention_bias and (p != "o" or config.attention_out_bias):
      rules.append(Rule(layer + f"self_attn.{p}_proj.bias", f"layer_{{i}}/attn/{p}_proj/bias"))
  for p in ("gate", "up", "down"):
    rules.append(Rule(layer + f"mlp.{p}_proj.weight", f"layer_{{i}}/mlp/{p}_proj/kernel",
                      linear_to_kernel))
    if config.mlp_bias:
      rules.append(Rule(layer + f"mlp.{p}_proj.bias", f"layer_{{i}}/mlp/{p}_proj/bias"))
  if config.qk_norm:
    rules += [Rule(layer + f"self_attn.{p}_norm.weight", f"layer_{{i}}/attn/{p}_norm/scale")
              for p in "qk"]
  return tuple(rules)


HF_IGNORED = (r"lm_head\.weight", r".*rotary_emb\.inv_freq")


def config_from_gguf(metadata: Mapping, tensor_names=()) -> DecoderConfig:
  """Builds the config from the metadata llama.cpp writes for ``llama`` and the file's
  tensor names (a tied model has no ``output.weight``; q/k biases show as tensors).

  Raises:
    UserError: a file with Llama 3.1's frequency factors (``rope_freqs.weight``) or a
      RoPE scaling other than linear, which are not read, named.
    CheckpointMismatchError: a required key missing
      (:func:`~lang_neuron_jax.models.sources.gguf_required`).
  """
  a = GGUF_ARCHITECTURE
  if "rope_freqs.weight" in tensor_names:
    raise UserError(
        "This llama GGUF stores Llama 3.1-style RoPE frequency factors (rope_freqs.weight), "
        "which are not read from GGUF; load the transformers checkpoint directory instead.")
  rope_kind = metadata.get(f"{a}.rope.scaling.type", "none")
  if rope_kind not in ("none", "linear"):
    raise UserError(f"GGUF asks for RoPE scaling {rope_kind!r} ({a}.rope.scaling.type); "
                    "only none and linear are implemented.")
  tokens = gguf_required(metadata, "tokenizer.ggml.tokens")
  width = int(gguf_required(metadata, f"{a}.embedding_length"))
  heads = int(gguf_required(metadata, f"{a}.attention.head_count"))
  head_dim = int(metadata.get(f"{a}.attention.key_length",
                              metadata.get(f"{a}.rope.dimension_count", width // heads)))
  n = int(gguf_required(metadata, f"{a}.block_count"))
  scale = float(metadata.get(f"{a}.rope.scaling.factor", 1.0)) if rope_kind == "linear" else 1.0
  # llama.cpp adds BOS unless the file says not to (SentencePiece files often do not say).
  adds_bos = metadata.get("tokenizer.ggml.add_bos_token",
                          metadata.get("tokenizer.ggml.model") == "llama")
  bos = metadata.get("tokenizer.ggml.bos_token_id")
  return DecoderConfig(
      family=FAMILY, vocab_size=len(tokens), width=width, num_layers=n, num_heads=heads,
      num_kv_heads=int(metadata.get(f"{a}.attention.head_count_kv", heads)), head_dim=head_dim,
      mlp_width=int(gguf_required(metadata, f"{a}.feed_forward_length")),
      layer_kinds=("global",) * n,
      rope_base_global=gguf_float(metadata.get(f"{a}.rope.freq_base", 10_000.0)),
      rope_scale_global=scale, query_scale=head_dim ** -0.5,
      norm_eps=gguf_float(metadata.get(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)),
      activation="silu", tie_embeddings="output.weight" not in tensor_names,
      attention_bias="blk.0.attn_q.bias" in tensor_names,
      attention_out_bias="blk.0.attn_output.bias" in tensor_names,
      bos_token_id=int(bos) if bos is not None and adds_bos else None,
      eos_token_id=int(metadata.get("tokenizer.ggml.eos_token_id", 2)),
      pad_token_id=int(metadata.get("tokenizer.ggml.padding_token_id", 0)))


def gguf_rules(config: DecoderConfig) -> tuple[Rule, ...]:
  """The key table of a llama.cpp ``llama`` GGUF: q and k rows (weights and biases) are
  put back from llama.cpp's interleaved-RoPE order (:func:`reverse_llama_rope_permutation`)."""
  layer = "blk.{i}."
  unpermute = {"q": config.num_heads, "k": config.num_kv_heads}
  rules = [Rule("token_embd.weight", "embed/embedding"),
           Rule("output_norm.weight", "final_norm/scale"),
           Rule(layer + "attn_norm.weight", "layer_{i}/pre_attn_norm/scale"),
           Rule(layer + "ffn_norm.weight", "layer_{i}/pre_mlp_norm/scale")]
  if not config.tie_embeddings:
    rules.append(Rule("output.weight", "lm_head"))
  for g, p in (("q", "q"), ("k", "k"), ("v", "v"), ("output", "o")):
    heads = unpermute.get(p)
    rows = ((lambda w, h=heads: reverse_llama_rope_permutation(w, h)) if heads
            else (lambda w: w))
    rules.append(Rule(layer + f"attn_{g}.weight", f"layer_{{i}}/attn/{p}_proj/kernel",
                      lambda w, rows=rows: linear_to_kernel(rows(w))))
    has_bias = config.attention_bias and (p != "o" or config.attention_out_bias)
    if has_bias:
      rules.append(Rule(layer + f"attn_{g}.bias", f"layer_{{i}}/attn/{p}_proj/bias", rows))
  for p in ("gate", "up", "down"):
    rules.append(Rule(layer + f"ffn_{p}.weight", f"layer_{{i}}/mlp/{p}_proj/kernel",
                      linear_to_kernel))
  return tuple(rules)


GGUF_IGNORED = ()
