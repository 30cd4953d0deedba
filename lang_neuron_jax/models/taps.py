"""Tap sites: where neurons are read and where interventions write.

A *neuron* is ``(site, layer, unit)``: one output unit of one linear projection in one
block. Every such output passes through a tiny identity :class:`Tap` module, so

* users read activations with Flax's own ``capture_intermediates`` and
  :func:`tap_filter` (see :func:`collect_taps`), and
* an :class:`Intervention` (a pytree of arrays passed to ``Decoder.__call__``) overrides
  chosen units at the same place. Because the intervention is an argument, not state,
  changing which neurons or which values never recompiles a jitted caller, and an
  all-False mask returns bitwise the input.

Sites (per layer; widths in terms of the config, see ``DecoderConfig.site_widths``):

========  ==========================================  ===========================
site      what it is                                   units per layer
========  ==========================================  ===========================
qkv       fused q/k/v projection output (BLOOM)        3*N*H
q         query projection output, before norm/RoPE    N*H
k         key projection output, before norm/RoPE      K*H
v         value projection output                      K*H
o         attention output projection output           D
gate      MLP gate projection output, before the act.  F
up        MLP up projection output                     F
down      MLP down projection output, before any norm  D
gate_act  act(gate), before it multiplies up (gated)  F
act       MLP activation, act(gate) * up (down's input) F
resid     residual stream after the block              D
========  ==========================================  ===========================

The first seven are the reference method's neurons (every linear layer of a block);
``gate_act`` (LAPE's neurons), ``act`` and ``resid`` (where steering vectors are added)
are extra views.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from lang_neuron_jax.errors import UserError

# The reference method's neurons in Gemma and Llama: outputs of every linear projection
# inside a block. Other families have other sets (``DecoderConfig.neuron_sites``): XGLM
# has no gate, BLOOM one fused "qkv" projection.
NEURON_SITES = ("q", "k", "v", "o", "gate", "up", "down")
# Every site name any family uses.
ALL_SITES = ("qkv",) + NEURON_SITES + ("gate_act", "act", "resid")

def identity_arrays(shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(mask, scale, shift)`` of the edit that changes nothing: mask False, scale 1, shift 0
  (numpy bool, float32, float32 of ``shape``). Every "no edit here" is built from this."""
  return np.zeros(shape, bool), np.ones(shape, np.float32), np.zeros(shape, np.float32)


@flax.struct.dataclass
class SiteEdit:
  """What an intervention does at one site, for every layer: ``h <- where(mask, scale * h +
  shift, h)`` per unit, at every position.

  One form covers every method as data: fixing a unit to ``v`` is ``scale=0, shift=v``
  (the paper), adding a direction ``v`` is ``scale=1, shift=v`` (steering vectors),
  multiplying by ``c`` is ``scale=c, shift=0``. Rows of one batch may mix them, and
  changing any of them never recompiles a jitted caller.

  Attributes:
    mask: bool ``[L, U]``, or ``[B, L, U]`` to give each batch row its own edit.
    scale: float ``[L, U]`` or ``[B, L, U]``, the same shape as ``mask``.
    shift: float, the same shape as ``mask``.
  """

  mask: jax.Array
  scale: jax.Array
  shift: jax.Array

  @classmethod
  def fix(cls, mask, value) -> "SiteEdit":
    """Masked units are replaced by ``value`` (the paper's intervention)."""
    value = jnp.asarray(value, jnp.float32)
    return cls(mask=jnp.asarray(mask), scale=jnp.zeros_like(value), shift=value)

  @classmethod
  def add(cls, mask, value) -> "SiteEdit":
    """``value`` is added to masked units (a steering vector)."""
    value = jnp.asarray(value, jnp.float32)
    return cls(mask=jnp.asarray(mask), scale=jnp.ones_like(value), shift=value)

  @classmethod
  def multiply(cls, mask, factor) -> "SiteEdit":
    """Masked units are multiplied by ``factor``."""
    factor = jnp.asarray(factor, jnp.float32)
    return cls(mask=jnp.asarray(mask), scale=factor, shift=jnp.zeros_like(factor))

  @classmethod
  def none(cls, shape) -> "SiteEdit":
    """An edit that changes nothing (an all-False mask), of ``shape``."""
    mask, scale, shift = identity_arrays(shape)
    return cls(mask=jnp.asarray(mask), scale=jnp.asarray(scale), shift=jnp.asarray(shift))


@flax.struct.dataclass
class Intervention:
  """Per-site edits applied at the taps; a pytree of arrays, so it is an ordinary jit
  argument (only the set of sites and the shapes are static)."""

  edits: Mapping[str, SiteEdit]

  def __post_init__(self):
    unknown = set(self.edits) - set(ALL_SITES)
    if unknown:
      raise UserError(f"Unknown tap sites {sorted(unknown)}; sites are {ALL_SITES}.")
    for site, edit in self.edits.items():
      if not isinstance(edit, SiteEdit):
        raise UserError(f"The edit of site {site!r} must be a SiteEdit, got {type(edit).__name__}.")

  def for_layer(self, layer: int) -> dict[str, SiteEdit]:
    """``{site: SiteEdit}`` of one layer, each array ``[U]`` or ``[B, U]``."""
    return {site: jax.tree.map(lambda a: a[..., layer, :], edit)
            for site, edit in self.edits.items()}


def apply_edit(x: jax.Array, edit: SiteEdit) -> jax.Array:
  """Applies one layer's edit to activations ``x`` ``[B, T, U]``.

  The edit's arrays are ``[U]`` (all rows) or ``[B, U]`` (per row); they apply at every
  position. Masked-out units are returned bitwise unchanged.
  """
  expand = (lambda a: a[None, None, :]) if edit.mask.ndim == 1 else (lambda a: a[:, None, :])
  mask = expand(edit.mask)
  scale, shift = expand(edit.scale).astype(x.dtype), expand(edit.shift).astype(x.dtype)
  return jnp.where(mask, scale * x + shift, x)


class Tap(nn.Module):
  """Identity at a neuron site; applies an edit when one is given.

  Attributes:
    site: One of :data:`ALL_SITES`.
  """

  site: str

  @nn.compact
  def __call__(self, x: jax.Array, edit: SiteEdit | None = None) -> jax.Array:
    if edit is None:
      return x
    return apply_edit(x, edit)


def tap_filter(sites=ALL_SITES):
  """A ``capture_intermediates`` filter selecting the :class:`Tap` modules of ``sites``."""
  sites = frozenset(sites)

  def select(module: nn.Module, method_name: str) -> bool:
    return isinstance(module, Tap) and module.site in sites and method_name == "__call__"

  return select


def find_tap(tree: Mapping[str, Any], site: str):
  """Depth-first search of one layer's intermediates for the tap named ``tap_{site}``."""
  name = f"tap_{site}"
  for key, sub in tree.items():
    if key == name:
      return sub["__call__"][0]
    if isinstance(sub, Mapping):
      found = find_tap(sub, site)
      if found is not None:
        return found
  return None


def collect_taps(intermediates: Mapping[str, Any], num_layers: int,
                 sites) -> dict[str, jax.Array]:
  """Stacks captured tap outputs per site.

  Args:
    intermediates: The ``"intermediates"`` collection returned by
      ``module.apply(..., capture_intermediates=tap_filter(sites), mutable=["intermediates"])``.
    num_layers: L.
    sites: Which sites to return.

  Returns:
    ``{site: [B, T, L, U]}``.
  """
  out = {}
  for site in sites:
    per_layer = [find_tap(intermediates[f"layer_{i}"], site) for i in range(num_layers)]
    if any(a is None for a in per_layer):
      raise KeyError(f"Site {site!r} was not captured; pass tap_filter({site!r}) to apply.")
    out[site] = jnp.stack(per_layer, axis=2)
  return out
