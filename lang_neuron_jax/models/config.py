"""The one configuration type every decoder family fills in.

A family file (``gemma3.py``, ``gemma2.py``, ``llama.py``, ``mistral.py``, ``qwen2.py``,
``qwen3.py``, ``cohere.py``, ``xglm.py``, ``bloom.py``) turns its checkpoint's own config
into a :class:`DecoderConfig`; the :class:`~lang_neuron_jax.models.
decoder.Decoder` reads nothing else. Every field is plain data, so a config can be hashed
(it is a static argument of jitted functions) and written to ``run.json``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Mapping

from lang_neuron_jax.errors import ConfigError

LayerKind = Literal["global", "local"]


def hf_value(hf: Mapping, key: str, default):
  """``hf[key]`` of a transformers config dict, or ``default`` when it is missing or
  null (saved configs write ``null`` for unset token ids)."""
  value = hf.get(key)
  return default if value is None else value


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecoderConfig:
  """Shape and behaviour of a decoder-only transformer.

  Attributes:
    family: Name of the family file that built this config ("gemma3", ...).
    vocab_size: V, rows of the embedding table.
    width: D, the residual stream width.
    num_layers: L, number of blocks.
    num_heads: N, query heads.
    num_kv_heads: K, key/value heads (N must be a multiple of K).
    head_dim: H, width of one head.
    mlp_width: F, hidden width of the MLP.
    layer_kinds: One entry per layer: "global" attends to every earlier token,
      "local" only to the last ``sliding_window`` tokens (itself included).
    sliding_window: Window of the local layers, in tokens.
    rope_base_global: RoPE base frequency of global layers.
    rope_base_local: RoPE base frequency of local layers.
    rope_scale_global: Linear RoPE scaling factor of global layers (positions are
      divided by it), 1.0 for none.
    rope_scale_local: The same for local layers (Gemma 3 scales only its global
      layers; Mistral and Qwen3 scale every layer alike).
    rope_llama3: Llama 3.1's RoPE frequency scaling, applied to every layer, as
      ``(factor, low_freq_factor, high_freq_factor, original_max_position_embeddings)``
      (transformers' ``rope_type = "llama3"``), or None. Long wavelengths are divided by
      ``factor``, short ones kept, those in between interpolated.
    rope_interleaved: Whether RoPE rotates adjacent pairs ``(x[2i], x[2i+1])`` (GPT-J's
      rotate-every-two, Cohere) instead of the halves ``(x[i], x[i + H/2])``
      (``rotate_half``, Llama and most others).
    query_scale: Multiplier of the query-key dot products.
    norm_eps: Epsilon of the RMS norms.
    norm_plus_one: Whether an RMS norm multiplies by ``1 + scale`` (Gemma) or by
      ``scale``.
    qk_norm: Whether queries and keys are normed per head (over H) before RoPE, with
      the model's norm kind.
    qk_norm_per_head: Whether each head has its own q/k norm scale (``[N, H]`` and
      ``[K, H]``, Cohere's Command-R+) instead of one ``[H]`` scale shared by all heads
      (Gemma 3, Qwen3).
    sandwich_norms: Whether each sub-block's output is normed again before it is
      added to the residual stream (Gemma 2/3), in addition to the pre-norm.
    embed_scale: Multiplier of the token embeddings.
    activation: MLP nonlinearity of the gate ("gelu_tanh", "silu").
    tie_embeddings: Whether the output head reuses the embedding table.
    attn_logit_softcap: tanh soft cap of attention logits, or None.
    final_logit_softcap: tanh soft cap of output logits, or None.
    logit_scale: Multiplier of the output logits (Cohere's ``logit_scale``), applied
      before any soft cap.
    norm_kind: "rms" (RMSNorm) or "layer" (LayerNorm).
    norm_bias: Whether LayerNorms have a bias (Cohere's have none); needs "layer".
    parallel_block: Whether attention and MLP read the same normed input and both add
      to the residual stream (``x + attn(n(x)) + mlp(n(x))``, Cohere; GPT-J), instead of
      the MLP reading the stream after attention's update.
    attention_bias: Whether the attention projections have biases.
    attention_out_bias: Whether the attention output projection has one too when
      ``attention_bias`` is set (Qwen2: biases on q, k and v only, not on o). Default
      True: every earlier family with attention biases has them on all four.
    mlp_bias: Whether the MLP projections have biases.
    position_kind: "rope", "alibi" (BLOOM) or "sinusoidal" (XGLM, added to the
      embeddings at ``position + position_offset``).
    position_offset: Offset of sinusoidal positions (XGLM: 2).
    mlp_kind: "gated" (``down(act(gate(x)) * up(x))``) or "plain" (``down(act(up(x)))``).
    fused_qkv: Whether q, k and v come from one projection whose output interleaves
      them per head (BLOOM's ``query_key_value``: ``[head][q, k, v][head_dim]``).
    embed_norm: Whether the embeddings are normed before the first block (BLOOM).
    bos_token_id: Token the family's tokenizer puts first, or None. (XGLM's tokenizer
      puts ``</s>`` first; BLOOM's and Qwen's put nothing.)
    document_start_token_id: Token unconditional generation starts from when it is not
      ``bos_token_id`` (or EOS when there is no BOS): the authors' prompt is the
      tokenizer's BOS alone, and a family without BOS names what began a document in its
      pre-training (Qwen: ``<|endoftext|>``). None: BOS, else EOS.
    eos_token_id: End-of-sequence token.
    pad_token_id: Padding token.
  """

  family: str
  vocab_size: int
  width: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_width: int
  layer_kinds: tuple[LayerKind, ...]
  sliding_window: int | None = None
  rope_base_global: float = 10_000.0
  rope_base_local: float = 10_000.0
  rope_scale_global: float = 1.0
  rope_scale_local: float = 1.0
  rope_llama3: tuple[float, float, float, float] | None = None
  rope_interleaved: bool = False
  query_scale: float = 1.0
  norm_eps: float = 1e-6
  norm_plus_one: bool = False
  qk_norm: bool = False
  qk_norm_per_head: bool = False
  sandwich_norms: bool = False
  embed_scale: float = 1.0
  activation: str = "silu"
  tie_embeddings: bool = True
  attn_logit_softcap: float | None = None
  final_logit_softcap: float | None = None
  logit_scale: float = 1.0
  norm_kind: str = "rms"
  norm_bias: bool = True
  parallel_block: bool = False
  attention_bias: bool = False
  attention_out_bias: bool = True
  mlp_bias: bool = False
  position_kind: str = "rope"
  position_offset: int = 0
  mlp_kind: str = "gated"
  fused_qkv: bool = False
  embed_norm: bool = False
  bos_token_id: int | None = None
  document_start_token_id: int | None = None
  eos_token_id: int = 1
  pad_token_id: int = 0

  def __post_init__(self):
    if len(self.layer_kinds) != self.num_layers:
      raise ConfigError(
          f"layer_kinds has {len(self.layer_kinds)} entries but num_layers is "
          f"{self.num_layers}; give one kind per layer."
      )
    if self.num_heads % self.num_kv_heads:
      raise ConfigError(
          f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
          f"({self.num_kv_heads})."
      )
    if "local" in self.layer_kinds and not self.sliding_window:
      raise ConfigError("local layers need a positive sliding_window.")
    for name, value, allowed in (("norm_kind", self.norm_kind, ("rms", "layer")),
                                 ("position_kind", self.position_kind,
                                  ("rope", "alibi", "sinusoidal")),
                                 ("mlp_kind", self.mlp_kind, ("gated", "plain"))):
      if value not in allowed:
        raise ConfigError(f"{name} must be one of {allowed}, not {value!r}.")
    if self.fused_qkv and self.num_kv_heads != self.num_heads:
      raise ConfigError("A fused query_key_value projection needs num_kv_heads == num_heads.")
    if not self.norm_bias and self.norm_kind != "layer":
      raise ConfigError("norm_bias=False is for LayerNorms (norm_kind='layer'); RMSNorms "
                       "have no bias.")
    if self.qk_norm_per_head and not self.qk_norm:
      raise ConfigError("qk_norm_per_head needs qk_norm.")
    if self.parallel_block and self.sandwich_norms:
      raise ConfigError("parallel_block has one norm per block; it cannot have sandwich_norms.")
    if self.rope_llama3 is not None:
      factor, low, high, original = self.rope_llama3
      if not (factor > 0 and high > low > 0 and original > 0):
        raise ConfigError(
            "rope_llama3 is (factor, low_freq_factor, high_freq_factor, "
            "original_max_position_embeddings), all positive with high_freq_factor > "
            f"low_freq_factor; got {self.rope_llama3}.")
      if self.rope_scale_global != 1.0 or self.rope_scale_local != 1.0:
        raise ConfigError("rope_llama3 replaces linear RoPE scaling; leave the rope_scale_* at 1.")
    if (self.rope_interleaved or self.rope_llama3 is not None) and self.position_kind != "rope":
      raise ConfigError("rope_interleaved and rope_llama3 need position_kind='rope'.")

  @property
  def neuron_sites(self) -> tuple[str, ...]:
    """The reference method's neurons: the output of every linear projection in a block."""
    attention = ("qkv",) if self.fused_qkv else ("q", "k", "v")
    mlp = ("gate", "up") if self.mlp_kind == "gated" else ("up",)
    return attention + ("o",) + mlp + ("down",)

  @property
  def site_widths(self) -> dict[str, int]:
    """Units per layer of every tap site of this model, neuron sites first."""
    widths = {
        "qkv": 3 * self.num_heads * self.head_dim,
        "q": self.num_heads * self.head_dim,
        "k": self.num_kv_heads * self.head_dim,
        "v": self.num_kv_heads * self.head_dim,
        "o": self.width,
        "gate": self.mlp_width,
        "up": self.mlp_width,
        "down": self.width,
    }
    out = {site: widths[site] for site in self.neuron_sites}
    if self.mlp_kind == "gated":
      out["gate_act"] = self.mlp_width
    out.update(act=self.mlp_width, resid=self.width)
    return out

  @property
  def activation_site(self) -> str:
    """The MLP's nonlinearity output, before anything multiplies it: ``gate_act``
    (act(gate), which multiplies ``up``) in gated MLPs, ``act`` (act(up)) otherwise. The
    site LAPE reads and edits (Tang et al. 2024)."""
    return "gate_act" if self.mlp_kind == "gated" else "act"

  def replace(self, **changes) -> "DecoderConfig":
    return dataclasses.replace(self, **changes)

  def identity(self) -> dict:
    """The fields that make this model what it is: those without a default and those that
    differ from theirs. A field added later, whose default leaves existing families
    unchanged, then leaves their identity (``LanguageModel.model_id``) and so their
    finished work directories as they were."""
    out = {}
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.default is dataclasses.MISSING or value != field.default:
        out[field.name] = value
    return out

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)
