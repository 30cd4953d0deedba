"""The interface every method of finding and steering a language implements.

A method turns what one forward pass over the corpora measured (:class:`CorpusStatistics`)
into a fitted object that, for a target language and a strength (N neurons, or a
multiplier ``alpha`` of a direction), gives a :class:`Steer`: the edit of one generation
row, as arrays. Rows of different methods, languages and strengths stack into one
batched :class:`~lang_neuron_jax.Intervention` (:func:`stack_steers`), so one compiled
sampler runs them side by side. Nothing downstream branches on a method's name.

Axes: M texts, L layers, U units of a site, D model width.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from lang_neuron_jax.models.taps import Intervention, SiteEdit, identity_arrays
from lang_neuron_jax.data.corpora import language_index
from lang_neuron_jax.errors import ConfigError


# What a value does to the units it edits: replace them ("set", the paper), be added to them
# ("add", steering vectors) or multiply them ("scale").
EDIT_MODES = ("set", "add", "scale")


@dataclasses.dataclass(frozen=True)
class Steer:
  """The edit of one row: ``h <- where(mask, scale * h + shift, h)`` per site.

  Attributes:
    edits: ``{site: (mask bool [L, U], scale float32 [L, U], shift float32 [L, U])}``.
  """

  edits: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]

  @classmethod
  def units(cls, site: str, shape: tuple[int, int], layer: np.ndarray, unit: np.ndarray,
            value: np.ndarray, mode: str = "set") -> "Steer":
    """Units ``(layer[i], unit[i])`` of ``site`` edited by ``value[i]`` in one of
    :data:`EDIT_MODES` (set: ``h <- v``; add: ``h <- h + v``; scale: ``h <- v * h``)."""
    if mode not in EDIT_MODES:
      raise ConfigError(f"Unknown edit mode {mode!r}; use one of {EDIT_MODES}.")
    mask, scale, shift = identity_arrays(shape)
    mask[layer, unit] = True
    if mode == "set":
      scale[layer, unit], shift[layer, unit] = 0.0, value
    elif mode == "add":
      shift[layer, unit] = value
    else:
      scale[layer, unit] = value
    return cls({site: (mask, scale, shift)})

  @classmethod
  def fix(cls, site: str, shape: tuple[int, int], layer: np.ndarray, unit: np.ndarray,
          value: np.ndarray) -> "Steer":
    """Units ``(layer[i], unit[i])`` of ``site`` fixed to ``value[i]``."""
    return cls.units(site, shape, layer, unit, value, "set")

  @classmethod
  def add(cls, site: str, shape: tuple[int, int], layer: int, vector: np.ndarray) -> "Steer":
    """``vector`` ``[U]`` added to every unit of ``site`` in ``layer``."""
    mask, scale, shift = identity_arrays(shape)
    mask[layer], shift[layer] = True, vector
    return cls({site: (mask, scale, shift)})

  def sites(self) -> tuple[str, ...]:
    return tuple(self.edits)


def merge(steers: Sequence[Steer]) -> Steer:
  """One row's edits from several steers at different sites."""
  edits = {}
  for s in steers:
    overlap = set(edits) & set(s.edits)
    if overlap:
      raise ValueError(f"Steers edit the same sites {sorted(overlap)}; merge them per site first.")
    edits.update(s.edits)
  return Steer(edits)


def stack_steers(steers: Sequence[Steer | None], shapes: Mapping[str, tuple[int, int]]
                 ) -> Intervention:
  """A batched intervention: row ``r`` does ``steers[r]`` (None: nothing).

  Args:
    steers: One per batch row.
    shapes: ``{site: (L, U)}`` of every site the intervention holds. Give the same sites
      for every batch of an experiment (the union over its rows), so every batch has one
      pytree structure and shares one compilation.

  Returns:
    An :class:`Intervention` with ``[B, L, U]`` arrays per site.
  """
  edits = {}
  for site, shape in shapes.items():
    mask, scale, shift = (np.stack(a) for a in zip(*(
        s.edits[site] if s is not None and site in s.edits else identity_arrays(shape)
        for s in steers)))
    edits[site] = SiteEdit(mask=jnp.asarray(mask), scale=jnp.asarray(scale),
                           shift=jnp.asarray(shift))
  for s in steers:
    missing = set(() if s is None else s.edits) - set(shapes)
    if missing:
      raise ValueError(f"A row edits sites {sorted(missing)} that are not in {sorted(shapes)}.")
  return Intervention(edits)


@dataclasses.dataclass(frozen=True)
class CorpusStatistics:
  """What one forward pass over the corpora measured, for every method.

  Attributes:
    languages: The corpus's languages, in order.
    language_of_text: int ``[M]``, each text's language (an index into ``languages``).
    responses: ``{site: float32 [M, L, U]}`` mean responses per text (BOS included).
    positive: ``{site: float32 [M, L, U]}`` per text, tokens at which a unit is positive.
    lengths: int ``[M]`` tokens per text (BOS included).
    site_widths: ``{site: U}`` of the model.
    num_layers: L.
    expertise: Every neuron's AP and statistics (:class:`~lang_neuron_jax.Expertise`), if
      the find stage scored them.
  """

  languages: tuple[str, ...]
  language_of_text: np.ndarray
  responses: Mapping[str, np.ndarray]
  positive: Mapping[str, np.ndarray]
  lengths: np.ndarray
  site_widths: Mapping[str, int]
  num_layers: int
  expertise: object | None = None

  def language_row(self, language: str) -> int:
    return language_index(self.languages, language, what="measured")

  def shape(self, site: str) -> tuple[int, int]:
    return (self.num_layers, self.site_widths[site])


class Fitted(abc.ABC):
  """A method fitted to the corpora: steers per target language and strength."""

  @abc.abstractmethod
  def steer(self, language: str, strength: float) -> Steer:
    """The edit that steers generation towards ``language`` at ``strength``."""

  @abc.abstractmethod
  def layers(self, language: str, strength: float) -> np.ndarray:
    """int ``[L]``: how many units the edit touches in each layer (where it sits)."""

  def neurons(self, language: str, strength: float) -> frozenset | None:
    """The edited neurons as ``(site, layer, unit)`` triples, for overlaps between
    methods; None for methods that edit directions, not neurons."""
    return None

  @abc.abstractmethod
  def summary(self) -> dict:
    """JSON-serialisable facts about the fit (sizes, chosen layers...)."""


class FittedDirection(Fitted):
  """A vector per language added to the residual stream after one layer: steering
  towards ``c`` at ``strength`` adds ``strength * scale[c, l] * directions[c, l]``
  (``l = layer[c]``) at every position (prompt and new tokens).

  Args:
    languages: The languages, in the order of ``directions``' first axis.
    directions: ``[C, L, D]`` a direction per language and layer.
    layer: ``{language: layer}`` each language is steered at.
    scale: ``[C, L]`` the length of strength 1 in units of ``directions`` (None: 1).
  """

  site = "resid"

  def __init__(self, languages, directions: np.ndarray, layer: Mapping[str, int],
               scale: np.ndarray | None = None):
    self.languages, self.directions, self.layer = tuple(languages), directions, dict(layer)
    self.scale = scale

  def row(self, language: str) -> int:
    """``language``'s index, or a UserError naming the fitted languages."""
    return language_index(self.languages, language, what="fitted")

  def steer(self, language: str, strength) -> Steer:
    c = self.row(language)
    _, L, D = self.directions.shape
    layer = self.layer[language]
    size = np.float32(strength) if self.scale is None else (
        np.float32(strength) * self.scale[c, layer])
    return Steer.add(self.site, (L, D), layer, size * self.directions[c, layer])

  def layers(self, language: str, strength) -> np.ndarray:
    self.row(language)
    out = np.zeros(self.directions.shape[1], np.int64)
    out[self.layer[language]] = self.directions.shape[2]
    return out


class Method(abc.ABC):
  """A way to find and steer a language.

  Attributes:
    name: Short name ("ap", "lape", "diffmean").
    strength_name: What its strength counts ("N" or "alpha").
    strengths: The strengths a comparison sweeps by default.
  """

  name: str
  strength_name: str
  strengths: tuple[float, ...]

  @abc.abstractmethod
  def needs(self, model_config) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(sites, positive_sites)`` the forward pass must record for this method."""

  @abc.abstractmethod
  def fit(self, stats: CorpusStatistics) -> Fitted:
    """Fits the method to the corpora's statistics."""

  def check_layers(self, num_layers: int) -> None:
    """Raises a ValueError saying what to fix if the method's options do not fit a model
    of ``num_layers`` layers (checked before any forward pass)."""

  def check_strength(self, strength) -> None:
    """Raises a ValueError saying what to fix unless ``strength`` is valid."""
    if not np.isfinite(strength):
      raise ConfigError(f"{self.name}: {self.strength_name} must be finite, got {strength!r}.")


class DirectionMethod(Method):
  """A method that steers with one residual-stream vector per language at one layer
  (a :class:`FittedDirection`); strength ``alpha``.

  Args:
    layer: Steer at this layer for every language instead of the method's layer rule.
  """

  strength_name = "alpha"

  def __init__(self, layer: int | None = None):
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, (int, np.integer))):
      raise ConfigError(f"{self.name}: layer must be an integer, got {layer!r}.")
    self.layer = layer

  def needs(self, model_config):
    return (FittedDirection.site,), ()

  def check_layers(self, num_layers: int) -> None:
    if self.layer is not None and not 0 <= self.layer < num_layers:
      raise ConfigError(f"{self.name}: layer {self.layer} is out of range; the model has "
                       f"layers 0 to {num_layers - 1}.")
