"""Neuron scores per language, sets of N neurons (N counted as the paper does: the top
N/2 plus the bottom N/2), and interventions built from them.

Neurons of all sites are numbered by one *flat index*: sites in the config's order, then
layer, then unit (``site_offset + layer * U_site + unit``). :class:`Expertise` holds every
language's scores over all flat indices; a :class:`NeuronSet` holds chosen neurons as
``(site, layer, unit)`` integers with their scores; :func:`build_intervention` turns one
or several sets into an :class:`~lang_neuron_jax.Intervention`.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Mapping, Sequence

import jax
import numpy as np

from lang_neuron_jax.neurons.expertise import STATISTICS, Expertise, NeuronIndex
from lang_neuron_jax.methods.base import EDIT_MODES, Steer, merge, stack_steers
from lang_neuron_jax.models.taps import Intervention
from lang_neuron_jax.errors import UserError

SELECTION_KINDS = ("top", "bottom", "both", "random")


@dataclasses.dataclass(frozen=True)
class NeuronSet:
  """Chosen neurons of one language with their scores.

  Attributes:
    index: The flat numbering of the model the set belongs to.
    language: The language they were chosen for.
    kind: "top", "bottom", "both" or "random".
    flat: int64 ``[n]`` flat indices.
    site, layer, unit: int32 ``[n]``.
    ap: float32 ``[n]``.
    stats: ``{name: float32 [n]}``.
  """

  index: NeuronIndex
  language: str
  kind: str
  flat: np.ndarray
  site: np.ndarray
  layer: np.ndarray
  unit: np.ndarray
  ap: np.ndarray
  stats: Mapping[str, np.ndarray]

  def __len__(self) -> int:
    return int(self.flat.size)


def max_n(total: int, kind: str) -> int:
  """The largest N of ``kind`` on a model with ``total`` neurons: every neuron (an even
  count for "both", which takes half from each end)."""
  return total - total % 2 if kind == "both" else total


def cap_n(n: int, total: int, kind: str) -> int:
  """``n`` capped at :func:`max_n` (the paper's sweep reaches 200,000, more neurons than
  small models have: there its top point fixes every neuron)."""
  return min(n, max_n(total, kind))


def check_n(n, total: int, kind: str) -> None:
  """Raises a ValueError that says what to fix unless ``n`` is a valid N of ``kind``."""
  limit = max_n(total, kind)
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 or n > limit:
    raise UserError(
        f"N must be an integer from {2 if kind == 'both' else 1} to {limit} for kind {kind!r} "
        f"(the model has {total} neurons; N counts every neuron of the set), got {n!r}.")
  if kind == "both" and n % 2:
    raise UserError(f"N={n} is odd: 'both' fixes the top N/2 and the bottom N/2 neurons "
                     f"(the authors' expertise_limited_N_both), so give an even N.")


def random_generator(seed: int, language: str, n: int) -> np.random.Generator:
  """The generator of a random control: its own stream per (seed, language, N), so each
  language's control is an independent draw, yet the same in every run."""
  return np.random.default_rng([seed, zlib.crc32(language.encode("utf-8")), n])


def ranking(ap: np.ndarray, descending: bool) -> np.ndarray:
  """Flat indices ``[G]`` by AP, ties broken by flat index (lowest first) either way."""
  return np.argsort(-ap if descending else ap, kind="stable")


def select(expertise: Expertise, language: str, n: int, kind: str = "both", *,
           seed: int = 0) -> NeuronSet:
  """A set of N neurons of one language; N counts every neuron in the set, as the paper's.

  Follows the authors' ``scripts/make_limited_expert.py`` (kojima-takeshi188/lang_neuron):

  - "both": the N/2 highest-AP plus the N/2 lowest-AP neurons, top rows first (their
    ``expertise_limited_{N}_both.csv``: ``limited_2000_both`` is 1,000 + 1,000, the
    paper's main condition). N must be even.
  - "top" / "bottom": the N highest / lowest (their ``expertise_limited_{N}_top.csv`` and
    ``_bottom.csv``; the paper's top-only control of its main condition is N=1,000).
  - "random": N neurons uniformly without replacement (their ``--top-n 0``), drawn from
    :func:`random_generator` (seed, language, N), so languages get independent sets.

  Ties: the authors rank with pandas' ``sort_values`` (quicksort, not stable), so the
  order inside a group of equal AP is unspecified there; here it is the flat index,
  lowest first, at both ends, so a selection is deterministic.

  Raises:
    ValueError: unknown language or kind; N not an integer in range, or odd for "both".
  """
  if kind not in SELECTION_KINDS:
    raise UserError(f"Unknown selection kind {kind!r}; use one of {SELECTION_KINDS}.")
  row = expertise.language_row(language)
  total = expertise.index.size
  check_n(n, total, kind)
  ap = expertise.ap[row]
  if kind == "top":
    flat = ranking(ap, True)[:n]
  elif kind == "bottom":
    flat = ranking(ap, False)[:n]
  elif kind == "both":
    flat = np.concatenate([ranking(ap, True)[:n // 2], ranking(ap, False)[:n // 2]])
  else:
    flat = random_generator(seed, language, n).choice(total, size=n, replace=False)
  flat = np.asarray(flat, np.int64)
  site, layer, unit = expertise.index.unflatten(flat)
  return NeuronSet(expertise.index, language, kind, flat, site, layer, unit, ap[flat],
                   {k: v[row][flat] for k, v in expertise.stats.items()})


def neuron_steer(neurons: NeuronSet, statistic: str = "on_p50", *, multiplier: float = 1.0,
                 mode: str = "set") -> Steer:
  """The edit of one generation row that sets every neuron of ``neurons`` to a statistic of
  its responses: the paper's intervention, and the one place a neuron set becomes arrays
  (:func:`build_intervention`, the control stage and the AP method all use it).

  Args:
    neurons: The set.
    statistic: One of :data:`STATISTICS` (``on_p50``, the paper's choice) or "zero".
    multiplier: Scales the value (e.g. 2 × on_p50).
    mode: What the value does (:data:`~lang_neuron_jax.methods.base.EDIT_MODES`): "set"
      replaces the neuron (the paper), "add" adds to it, "scale" multiplies it.

  Returns:
    A :class:`~lang_neuron_jax.methods.base.Steer` editing the sites the set touches.
  """
  if statistic not in STATISTICS + ("zero",):
    raise UserError(f"Unknown statistic {statistic!r}; use one of {STATISTICS + ('zero',)}.")
  index, steers = neurons.index, []
  for site_id, (site, width) in enumerate(zip(index.sites, index.widths)):
    sel = neurons.site == site_id
    if sel.any():
      value = (np.zeros(sel.sum(), np.float32) if statistic == "zero"
               else neurons.stats[statistic][sel] * np.float32(multiplier))
      steers.append(Steer.units(site, (index.num_layers, width), neurons.layer[sel],
                                neurons.unit[sel], value, mode))
  return merge(steers)


def build_intervention(sets: Sequence[NeuronSet | None], *, statistic: str = "on_p50",
                       multiplier: float = 1.0, mode: str = "set",
                       batched: bool | None = None,
                       index: NeuronIndex | None = None) -> Intervention:
  """An intervention fixing each set's neurons to a statistic of their responses
  (:func:`neuron_steer` per row).

  Args:
    sets: One set (an intervention shared by every row), or one per batch row; None
      rows get no intervention (a baseline in the same batch).
    statistic, multiplier, mode: As :func:`neuron_steer`.
    batched: Force a leading batch axis (default: when more than one set is given).
    index: The model's neurons; needed only when every set is None (an intervention
      that changes nothing, for a batch of baseline rows among intervened ones).

  Returns:
    An :class:`Intervention` with ``[L, U]`` or ``[B, L, U]`` masks and values per site,
    for every site of the index.
  """
  if mode not in EDIT_MODES:
    raise UserError(f"Unknown mode {mode!r}; use one of {EDIT_MODES}.")
  present = [s for s in sets if s is not None]
  if not present and index is None:
    raise UserError("Give at least one NeuronSet, or the index of an empty intervention.")
  index = present[0].index if index is None else index
  for s in present:
    if s.index != index:
      raise UserError("Neuron sets come from different models; build one intervention per model.")
  steers = [None if s is None else neuron_steer(s, statistic, multiplier=multiplier, mode=mode)
            for s in sets]
  shapes = {site: (index.num_layers, width) for site, width in zip(index.sites, index.widths)}
  intervention = stack_steers(steers, shapes)
  batched = len(sets) > 1 if batched is None else batched
  if batched:
    return intervention
  return Intervention({site: jax.tree.map(lambda a: a[0], edit)
                       for site, edit in intervention.edits.items()})


def check_same_model(neurons: NeuronSet, index: NeuronIndex) -> None:
  """Raises if a neuron set was found on another model than ``index`` describes."""
  if neurons.index != index:
    raise UserError(
        f"This neuron set belongs to model {neurons.index.model_id or neurons.index.to_dict()}, "
        f"not {index.model_id or index.to_dict()}; find neurons on this model first.")


def union(sets: Sequence[NeuronSet], *, language: str = "all") -> NeuronSet:
  """Neurons in any of ``sets`` (sorted by flat index); scores are not carried over."""
  index = sets[0].index
  flat = np.unique(np.concatenate([s.flat for s in sets]))
  site, layer, unit = index.unflatten(flat)
  return NeuronSet(index, language, "union", flat, site, layer, unit,
                   np.full(flat.size, np.nan, np.float32), {})


def random_like(neurons: NeuronSet, *, seed: int = 0) -> NeuronSet:
  """A uniformly random set of the same size and model, as a control."""
  index = neurons.index
  flat = np.sort(np.random.default_rng(seed).choice(index.size, size=len(neurons), replace=False))
  site, layer, unit = index.unflatten(flat)
  return NeuronSet(index, neurons.language, "random", flat, site, layer, unit,
                   np.full(flat.size, np.nan, np.float32), {})


def check_model_id(index: NeuronIndex, model_id: str) -> None:
  """Raises if scores were computed on another model than ``model_id``."""
  if index.model_id and model_id and index.model_id != model_id:
    raise UserError(f"These neuron scores were computed on {index.model_id!r}, not on "
                     f"{model_id!r}; run the find stage on this model (and dtype) first.")
