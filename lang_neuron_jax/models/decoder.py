"""One Flax Linen decoder for every supported family.

Axes, used in einsum strings, ``# [..]`` comments and docstrings:

  B batch, T query length, S key length (cache slots), N query heads, K key/value
  heads, G query heads per key/value head (N = K*G), H head dim, D model width,
  F MLP width, V vocabulary, L layers, U units of one tap site.

The module is used functionally::

    logits = module.apply({"params": params}, input_ids).logits          # [B, T, V]
    out = module.apply({"params": params}, ids, positions=pos, cache=cache)
    logits, cache = out.logits, out.cache

Padding convention: pad on the *right*. Attention is causal, so real tokens never see
the pads that follow them; callers that pool over tokens mask the pads out.

The KV cache is an explicit pytree (:class:`KVCache`) that goes in and comes out. Slot
``s`` of a row holds the key/value of the token at position ``s``; a call writes its
``T`` tokens at ``positions`` and attends to every slot at or before each query's
position (and, in local layers, within the sliding window). A full forward therefore
equals a prefill followed by token-by-token decoding.
"""

from __future__ import annotations

import math

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.models.taps import Intervention, SiteEdit, Tap

Edits = dict[str, SiteEdit]

_ACTIVATIONS = {
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
}


@flax.struct.dataclass
class KVCache:
  """Keys and values of every layer.

  Attributes:
    keys: One ``[B, K, H, S]`` array per layer.
    values: One ``[B, K, S, H]`` array per layer.

  These layouts (with queries as ``[B, K, G, T, H]``) are the ones the attention matmuls
  read without a transposing copy; the fastest measured on XLA:CPU
  (``benchmarks/generation.py``; the figures are in docs/performance.md).
  """

  keys: tuple[jax.Array, ...]
  values: tuple[jax.Array, ...]

  @property
  def max_length(self) -> int:
    return self.keys[0].shape[3]


@flax.struct.dataclass
class DecoderOutput:
  """What :class:`Decoder` returns (a pytree, like gemma's transformer output).

  Attributes:
    logits: float32 ``[B, T, V]``, or None when called with ``compute_logits=False``.
    hidden: ``[B, T, D]`` final hidden states (after the final norm), which the output
      head (:func:`output_logits`) projects.
    cache: The updated :class:`KVCache`, or None when called without one.
  """

  logits: jax.Array | None
  hidden: jax.Array
  cache: KVCache | None = None


def init_cache(config: DecoderConfig, batch_size: int, max_length: int,
               dtype=jnp.float32) -> KVCache:
  """An empty cache for ``batch_size`` rows of up to ``max_length`` tokens."""
  B, S, K, H = batch_size, max_length, config.num_kv_heads, config.head_dim
  zeros = lambda shape: tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers))
  return KVCache(keys=zeros((B, K, H, S)), values=zeros((B, K, S, H)))


class RMSNorm(nn.Module):
  """RMS norm over the last axis, computed in float32 and cast back.

  With ``plus_one`` (Gemma) the stored scale ``w`` multiplies as ``1 + w``. The scale
  spans the last ``scale_axes`` axes (2: one scale per head, ``[N, H]``); the norm is
  always over the last axis.
  """

  eps: float
  plus_one: bool
  param_dtype: jnp.dtype = jnp.float32
  scale_axes: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    init = nn.initializers.zeros if self.plus_one else nn.initializers.ones
    scale = self.param("scale", init, x.shape[x.ndim - self.scale_axes:], self.param_dtype)
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    scale32 = scale.astype(jnp.float32)
    return (normed * (1.0 + scale32 if self.plus_one else scale32)).astype(x.dtype)


class LayerNorm(nn.Module):
  """LayerNorm over the last axis (scale and, with ``use_bias``, bias), computed in
  float32 and cast back. The scale and bias span the last ``scale_axes`` axes."""

  eps: float
  param_dtype: jnp.dtype = jnp.float32
  use_bias: bool = True
  scale_axes: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = x.shape[x.ndim - self.scale_axes:]
    scale = self.param("scale", nn.initializers.ones, shape, self.param_dtype)
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    normed = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    out = normed * scale.astype(jnp.float32)
    if self.use_bias:
      out = out + self.param("bias", nn.initializers.zeros, shape,
                             self.param_dtype).astype(jnp.float32)
    return out.astype(x.dtype)


def _norm(config: DecoderConfig, name: str, param_dtype, scale_axes: int = 1) -> nn.Module:
  """The config's norm (RMSNorm or LayerNorm), named ``name``."""
  if config.norm_kind == "layer":
    return LayerNorm(config.norm_eps, param_dtype, config.norm_bias, scale_axes, name=name)
  return RMSNorm(config.norm_eps, config.norm_plus_one, param_dtype, scale_axes, name=name)


def alibi_slopes(num_heads: int) -> jnp.ndarray:
  """ALiBi's per-head slopes ``[N]``, as BLOOM computes them (heads need not be a power
  of two: the extra heads take every other slope of the next power of two)."""
  closest = 2 ** math.floor(math.log2(num_heads))
  base = 2.0 ** (-(2.0 ** -(math.log2(closest) - 3)))
  slopes = [base ** p for p in range(1, closest + 1)]
  if closest != num_heads:
    extra = 2.0 ** (-(2.0 ** -(math.log2(2 * closest) - 3)))
    slopes += [extra ** p for p in range(1, 1 + 2 * min(closest, num_heads - closest), 2)]
  return jnp.asarray(slopes, jnp.float32)


def sinusoidal_positions(positions: jax.Array, width: int) -> jax.Array:
  """XGLM's (tensor2tensor's) sinusoidal embeddings ``[..., D]``: sines then cosines."""
  half = width // 2
  freq = jnp.exp(jnp.arange(half, dtype=jnp.float32) * -(math.log(10000.0) / (half - 1)))
  angles = positions.astype(jnp.float32)[..., None] * freq
  emb = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  if width % 2:
    emb = jnp.pad(emb, [(0, 0)] * (emb.ndim - 1) + [(0, 1)])
  return emb


def llama3_frequencies(inv_freq: jax.Array, factor: float, low_freq_factor: float,
                       high_freq_factor: float, original_max_position: float) -> jax.Array:
  """Llama 3.1's RoPE frequency scaling, step by step as transformers'
  ``_compute_llama3_parameters``: wavelengths longer than ``original_max_position /
  low_freq_factor`` are divided by ``factor``, those shorter than ``original_max_position
  / high_freq_factor`` kept, and those in between interpolated smoothly.

  Args:
    inv_freq: float32 ``[H/2]`` unscaled inverse frequencies.

  Returns:
    float32 ``[H/2]``.
  """
  low_freq_wavelen = original_max_position / low_freq_factor
  high_freq_wavelen = original_max_position / high_freq_factor
  wavelen = 2 * math.pi / inv_freq
  scaled = jnp.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
  smooth = (original_max_position / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
  return jnp.where(is_medium, smoothed, scaled)


def rope(x: jax.Array, positions: jax.Array, base: float, scale: float,
         llama3: tuple[float, float, float, float] | None = None,
         interleaved: bool = False) -> jax.Array:
  """Rotary embedding.

  Args:
    x: ``[B, T, N, H]``.
    positions: ``[B, T]`` integer positions.
    base: RoPE base frequency.
    scale: Linear scaling factor (positions are divided by it).
    llama3: Llama 3.1's frequency scaling parameters (see :func:`llama3_frequencies`),
      or None.
    interleaved: Rotate adjacent pairs ``(x[2i], x[2i+1])`` (GPT-J, Cohere's
      ``repeat_interleave``) instead of the halves ``(x[i], x[i + H/2])`` of
      transformers' ``rotate_half``. Converting the checkpoint instead (permuting q/k
      rows) would reorder the q and k tap units away from the checkpoint's.

  Returns:
    ``[B, T, N, H]``, same dtype as ``x``.
  """
  half = x.shape[-1] // 2
  inv_freq = 1.0 / (base ** (jnp.arange(0, 2 * half, 2, dtype=jnp.float32) / (2 * half)))
  if llama3 is not None:
    inv_freq = llama3_frequencies(inv_freq, *llama3)
  inv_freq = inv_freq / scale
  angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, H/2]
  cos = jnp.cos(angles)[:, :, None, :].astype(x.dtype)
  sin = jnp.sin(angles)[:, :, None, :].astype(x.dtype)
  if interleaved:
    x1, x2 = x[..., 0::2], x[..., 1::2]  # [B, T, N, H/2] each
    return jnp.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).reshape(x.shape)
  x1, x2 = x[..., :half], x[..., half:]
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def attention_mask(q_positions: jax.Array, k_positions: jax.Array,
                   window: int | None) -> jax.Array:
  """Causal (and optionally sliding-window) mask.

  Args:
    q_positions: ``[B, T]``.
    k_positions: ``[B, S]``.
    window: Keys more than ``window - 1`` positions back are hidden; None for all.

  Returns:
    bool ``[B, T, S]``, True where the query may attend to the key.
  """
  q = q_positions[:, :, None]
  k = k_positions[:, None, :]
  mask = k <= q
  if window is not None:
    mask &= q - k < window
  return mask


def _dense(width: int, name: str, param_dtype, use_bias: bool = False) -> nn.Dense:
  """A projection; its kernel is ``[in, out]``."""
  return nn.Dense(width, use_bias=use_bias, name=name, param_dtype=param_dtype)


def _tap(site: str, h: jax.Array, edits: Edits) -> jax.Array:
  """Passes ``h`` through the tap of ``site`` (named ``tap_{site}``), editing if asked."""
  return Tap(site, name=f"tap_{site}")(h, edits.get(site))


class _LayerModule(nn.Module):
  """A module of one layer: the model's config, the layer's index, the parameter dtype."""

  config: DecoderConfig
  layer_index: int
  param_dtype: jnp.dtype = jnp.float32


class Attention(_LayerModule):
  """Grouped-query self-attention with taps on q, k, v and the output projection."""

  @nn.compact
  def __call__(self, x, positions, layer_cache, edits: Edits):
    cfg = self.config
    B, T, _ = x.shape
    N, K, H = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    dense = lambda width, name: _dense(width, name, self.param_dtype, cfg.attention_bias)
    tap = lambda site, h: _tap(site, h, edits)

    if cfg.fused_qkv:
      # BLOOM's checkpoint layout: [head][q, k, v][head_dim].
      qkv = tap("qkv", dense(3 * N * H, "qkv_proj")(x)).reshape(B, T, N, 3, H)
      q, k, v = qkv[..., 0, :], qkv[..., 1, :], qkv[..., 2, :]
    else:
      q = tap("q", dense(N * H, "q_proj")(x)).reshape(B, T, N, H)
      k = tap("k", dense(K * H, "k_proj")(x)).reshape(B, T, K, H)
      v = tap("v", dense(K * H, "v_proj")(x)).reshape(B, T, K, H)
    if cfg.qk_norm:
      # Over H, per head; one scale for all heads, or one per head (Cohere).
      axes = 2 if cfg.qk_norm_per_head else 1
      q = _norm(cfg, "q_norm", self.param_dtype, axes)(q)
      k = _norm(cfg, "k_norm", self.param_dtype, axes)(k)

    is_local = cfg.layer_kinds[self.layer_index] == "local"
    if is_local:
      base, scale, window = cfg.rope_base_local, cfg.rope_scale_local, cfg.sliding_window
    else:
      base, scale, window = cfg.rope_base_global, cfg.rope_scale_global, None
    if cfg.position_kind == "rope":
      q = rope(q, positions, base, scale, cfg.rope_llama3, cfg.rope_interleaved)
      k = rope(k, positions, base, scale, cfg.rope_llama3, cfg.rope_interleaved)

    if layer_cache is None:
      keys, values = k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)  # cache layouts
      k_positions = positions
      new_cache = None
    else:
      cache_k, cache_v = layer_cache
      rows = jnp.arange(B)[:, None]
      # Both index expressions select [B, T, K, H], the layout of k and v.
      keys = cache_k.at[rows, :, :, positions].set(k.astype(cache_k.dtype))  # [B, K, H, S]
      values = cache_v.at[rows, :, positions].set(v.astype(cache_v.dtype))  # [B, K, S, H]
      S = values.shape[2]
      k_positions = jnp.broadcast_to(jnp.arange(S), (B, S))
      new_cache = (keys, values)

    G = N // K
    q = q.reshape(B, T, K, G, H).transpose(0, 2, 3, 1, 4)  # [B, K, G, T, H]
    logits = jnp.einsum("BKGTH,BKHS->BKGTS", q, keys.astype(q.dtype),
                        preferred_element_type=jnp.float32) * cfg.query_scale
    if cfg.attn_logit_softcap is not None:
      logits = jnp.tanh(logits / cfg.attn_logit_softcap) * cfg.attn_logit_softcap
    if cfg.position_kind == "alibi":
      # slope × key position; softmax is shift-invariant per query, so this equals the
      # relative form slope × (key − query) that ALiBi describes.
      slopes = alibi_slopes(N).reshape(K, G)
      logits += slopes[None, :, :, None, None] * k_positions[:, None, None, None, :]
    mask = attention_mask(positions, k_positions, window)  # [B, T, S]
    logits = jnp.where(mask[:, None, None], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(x.dtype)
    out = jnp.einsum("BKGTS,BKSH->BKGTH", probs, values.astype(x.dtype))
    out = out.transpose(0, 3, 1, 2, 4).reshape(B, T, N * H)
    o_proj = _dense(cfg.width, "o_proj", self.param_dtype,
                    cfg.attention_bias and cfg.attention_out_bias)
    out = tap("o", o_proj(out))  # [B, T, D]
    return out, new_cache


class MLP(nn.Module):
  """Gated ``down(act(gate(x)) * up(x))`` or plain ``down(act(up(x)))`` MLP, with taps on
  every projection and on the activation."""

  config: DecoderConfig
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, edits: Edits):
    cfg = self.config
    dense = lambda width, name: _dense(width, name, self.param_dtype, cfg.mlp_bias)
    tap = lambda site, h: _tap(site, h, edits)
    activation = _ACTIVATIONS[cfg.activation]
    up = tap("up", dense(cfg.mlp_width, "up_proj")(x))  # [B, T, F]
    if cfg.mlp_kind == "gated":
      gate = tap("gate", dense(cfg.mlp_width, "gate_proj")(x))  # [B, T, F]
      act = tap("act", tap("gate_act", activation(gate)) * up)
    else:
      act = tap("act", activation(up))
    return tap("down", dense(cfg.width, "down_proj")(act))  # [B, T, D]


class Block(_LayerModule):
  """Pre-norm transformer block (with Gemma's extra post-norms when configured), or a
  parallel one (Cohere: attention and MLP read the same normed input)."""

  @nn.compact
  def __call__(self, x, positions, layer_cache, edits: Edits):
    cfg = self.config
    norm = lambda name: _norm(cfg, name, self.param_dtype)
    normed = norm("pre_attn_norm")(x)
    h, new_cache = Attention(cfg, self.layer_index, self.param_dtype, name="attn")(
        normed, positions, layer_cache, edits)
    if cfg.parallel_block:
      # Summed in transformers' order: (x + attn) + mlp.
      x = _tap("resid", x + h + MLP(cfg, self.param_dtype, name="mlp")(normed, edits), edits)
      return x, new_cache
    if cfg.sandwich_norms:
      h = norm("post_attn_norm")(h)
    x = x + h
    h = norm("pre_mlp_norm")(x)
    h = MLP(cfg, self.param_dtype, name="mlp")(h, edits)
    if cfg.sandwich_norms:
      h = norm("post_mlp_norm")(h)
    x = _tap("resid", x + h, edits)
    return x, new_cache


def output_logits(config: DecoderConfig, params, hidden: jax.Array) -> jax.Array:
  """The output head: final hidden states ``[..., D]`` to float32 logits ``[..., V]``.

  A plain function of the parameters, so callers that need logits at only some positions
  (the sampler's prefill) can run the decoder with ``compute_logits=False`` and project
  just those.
  """
  table = params["embed"]["embedding"] if config.tie_embeddings else params["lm_head"]
  out = jnp.einsum("...D,VD->...V", hidden, table.astype(hidden.dtype),
                   preferred_element_type=jnp.float32)
  # Keeps XLA:CPU from fusing the sampler's max and exp into this matmul, a slower kernel
  # than the matmul and a separate pass (benchmarks/generation.py; the figures are in
  # docs/performance.md). An optimization barrier does not (XLA:CPU removes barriers before
  # fusion); a reduce_precision to float32's own bits does and changes no bit
  # (tests/test_decoder.py checks both).
  out = jax.lax.reduce_precision(out, exponent_bits=8, mantissa_bits=23)
  if config.logit_scale != 1.0:
    out = out * config.logit_scale
  if config.final_logit_softcap is not None:
    out = jnp.tanh(out / config.final_logit_softcap) * config.final_logit_softcap
  return out


class Decoder(nn.Module):
  """Decoder-only language model.

  Attributes:
    config: The model's :class:`DecoderConfig`.
    param_dtype: dtype of freshly initialised parameters (loaded parameters keep
      theirs; computation follows the parameters' dtype).
  """

  config: DecoderConfig
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(
      self,
      input_ids: jax.Array,
      *,
      positions: jax.Array | None = None,
      cache: KVCache | None = None,
      intervention: Intervention | None = None,
      compute_logits: bool = True,
  ):
    """Runs the model.

    Args:
      input_ids: int ``[B, T]``.
      positions: int ``[B, T]``; defaults to ``0..T-1`` in every row. With a cache,
        the slots the new tokens are written to.
      cache: A :class:`KVCache`; when given, the updated cache is returned too.
      intervention: Edits applied at the tap sites, or None.
      compute_logits: False skips the output head (the analysis path needs only the
        taps; the sampler projects only the positions it samples from).

    Returns:
      A :class:`DecoderOutput`: logits (None without ``compute_logits``), final hidden
      states, and the updated cache when one was given.
    """
    cfg = self.config
    B, T = input_ids.shape
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    embed = nn.Embed(cfg.vocab_size, cfg.width, param_dtype=self.param_dtype, name="embed")
    x = embed(input_ids)  # [B, T, D]
    x = x * jnp.asarray(cfg.embed_scale, x.dtype)
    if cfg.position_kind == "sinusoidal":
      x = x + sinusoidal_positions(positions + cfg.position_offset, cfg.width).astype(x.dtype)
    if cfg.embed_norm:
      x = _norm(cfg, "embed_norm", self.param_dtype)(x)
    keys, values = [], []
    for i in range(cfg.num_layers):
      layer_cache = None if cache is None else (cache.keys[i], cache.values[i])
      edits = {} if intervention is None else intervention.for_layer(i)
      x, new_layer_cache = Block(cfg, i, self.param_dtype, name=f"layer_{i}")(
          x, positions, layer_cache, edits)
      if new_layer_cache is not None:
        keys.append(new_layer_cache[0])
        values.append(new_layer_cache[1])
    x = _norm(cfg, "final_norm", self.param_dtype)(x)
    if not cfg.tie_embeddings:
      self.param("lm_head", nn.initializers.normal(0.02), (cfg.vocab_size, cfg.width),
                 self.param_dtype)
    logits = output_logits(cfg, self.variables["params"], x) if compute_logits else None
    new_cache = None if cache is None else KVCache(keys=tuple(keys), values=tuple(values))
    return DecoderOutput(logits=logits, hidden=x, cache=new_cache)
