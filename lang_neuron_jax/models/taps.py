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
act       MLP activation, act(gate) * up (down's input) F
resid     residual stream after the block              D
========  ==========================================  ===========================

The first seven are the reference method's neurons (every linear layer of a block);
``act`` and ``resid`` are extra views for users.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

# The reference method's neurons in Gemma and Llama: outputs of every linear projection
# inside a block. Other families have other sets (``DecoderConfig.neuron_sites``): XGLM
# has no gate, BLOOM one fused "qkv" projection.
NEURON_SITES = ("q", "k", "v", "o", "gate", "up", "down")
# Every site name any family uses.
ALL_SITES = ("qkv",) + NEURON_SITES + ("act", "resid")

INTERVENTION_MODES = ("set", "add", "scale")


@flax.struct.dataclass
class SiteEdit:
  """What an intervention does at one site, for every layer.

  Attributes:
    mask: bool ``[L, U]``, or ``[B, L, U]`` to give each batch row its own edit.
    value: float ``[L, U]`` or ``[B, L, U]``, the same shape as ``mask``.
  """

  mask: jax.Array
  value: jax.Array


@flax.struct.dataclass
class Intervention:
  """Per-site edits applied at the taps; a pytree, so it is an ordinary jit argument.

  ``mode`` is static (changing it recompiles): "set" replaces masked units by
  ``value`` (the paper), "add" adds ``value``, "scale" multiplies by ``value``.
  """

  edits: Mapping[str, SiteEdit]
  mode: str = flax.struct.field(pytree_node=False, default="set")

  def __post_init__(self):
    if self.mode not in INTERVENTION_MODES:
      raise ValueError(f"Unknown intervention mode {self.mode!r}; use one of {INTERVENTION_MODES}.")
    unknown = set(self.edits) - set(ALL_SITES)
    if unknown:
      raise ValueError(f"Unknown tap sites {sorted(unknown)}; sites are {ALL_SITES}.")

  def for_layer(self, layer: int) -> dict[str, tuple[jax.Array, jax.Array]]:
    """``{site: (mask, value)}`` of one layer, each ``[U]`` or ``[B, U]``."""
    return {
        site: (edit.mask[..., layer, :], edit.value[..., layer, :])
        for site, edit in self.edits.items()
    }


def apply_edit(x: jax.Array, mask: jax.Array, value: jax.Array, mode: str) -> jax.Array:
  """Applies one site's edit to activations ``x`` ``[B, T, U]``.

  ``mask``/``value`` are ``[U]`` (all rows) or ``[B, U]`` (per row); they apply at
  every position.
  """
  if mask.ndim == 1:
    mask, value = mask[None, None, :], value[None, None, :]
  else:
    mask, value = mask[:, None, :], value[:, None, :]
  value = value.astype(x.dtype)
  if mode == "set":
    return jnp.where(mask, value, x)
  if mode == "add":
    return jnp.where(mask, x + value, x)
  return jnp.where(mask, x * value, x)


class Tap(nn.Module):
  """Identity at a neuron site; applies an edit when one is given.

  Attributes:
    site: One of :data:`ALL_SITES`.
  """

  site: str

  @nn.compact
  def __call__(self, x: jax.Array, edit: tuple[jax.Array, jax.Array] | None = None,
               mode: str = "set") -> jax.Array:
    if edit is None:
      return x
    return apply_edit(x, edit[0], edit[1], mode)


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
