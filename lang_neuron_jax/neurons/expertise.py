"""Neurons as data: the flat numbering of a model's neurons (:class:`NeuronIndex`) and every
language's scores over it (:class:`Expertise`), as the find stage writes them.

Neurons of all sites are numbered by one *flat index*: sites in the config's order, then
layer, then unit (``site_offset + layer * U_site + unit``). Axes: C languages, G neurons.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Mapping, Sequence

import numpy as np

from lang_neuron_jax.data.corpora import language_index


# What is kept of each neuron's responses besides AP (the reference's expertise.csv
# columns); on_p50, its median on the language's texts, is the value an intervention fixes.
STATISTICS = ("on_p50", "on_p90", "off_mean", "off_p50")
SCORES = ("ap",) + STATISTICS


@dataclasses.dataclass(frozen=True)
class NeuronIndex:
  """The flat numbering of a model's neurons.

  Attributes:
    sites: Site names, in order.
    num_layers: L.
    widths: Units per layer of each site, same order.
    model_id: Identity of the model (config fingerprint), so that sets from one model
      are not applied to another.
  """

  sites: tuple[str, ...]
  num_layers: int
  widths: tuple[int, ...]
  model_id: str = ""

  @property
  def offsets(self) -> np.ndarray:
    """Flat index of each site's first neuron, ``[len(sites) + 1]``."""
    return np.concatenate([[0], np.cumsum([self.num_layers * w for w in self.widths])])

  @property
  def size(self) -> int:
    return int(self.offsets[-1])

  def unflatten(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices ``[n]`` to ``(site, layer, unit)`` int32 arrays ``[n]``."""
    flat = np.asarray(flat, np.int64)
    site = np.searchsorted(self.offsets, flat, side="right") - 1
    within = flat - self.offsets[site]
    widths = np.asarray(self.widths)[site]
    return site.astype(np.int32), (within // widths).astype(np.int32), (within % widths).astype(np.int32)

  def flatten(self, site, layer, unit) -> np.ndarray:
    site = np.asarray(site, np.int64)
    return self.offsets[site] + np.asarray(layer) * np.asarray(self.widths)[site] + np.asarray(unit)

  def to_dict(self) -> dict:
    return {"sites": list(self.sites), "num_layers": self.num_layers,
            "widths": list(self.widths), "model_id": self.model_id}


def neuron_index(config, sites: Sequence[str], model_id: str = "") -> NeuronIndex:
  """The flat numbering of ``sites`` (in that order) of a model with ``config``."""
  return NeuronIndex(tuple(sites), config.num_layers,
                     tuple(config.site_widths[s] for s in sites), model_id)


@dataclasses.dataclass(frozen=True)
class Expertise:
  """Every language's scores over every neuron.

  Attributes:
    index: The flat numbering.
    languages: C language codes.
    ap: float32 ``[C, G]`` average precision of each neuron for each language.
    stats: ``{name: float32 [C, G]}`` for each name in :data:`STATISTICS`.
  """

  index: NeuronIndex
  languages: tuple[str, ...]
  ap: np.ndarray
  stats: Mapping[str, np.ndarray]

  def save(self, path) -> None:
    """Writes ``.npz`` to a path or binary file (no pickles: metadata as a JSON string)."""
    meta = json.dumps({"index": self.index.to_dict(), "languages": list(self.languages)})
    np.savez(path, meta=np.array(meta), ap=self.ap, **self.stats)

  @classmethod
  def load(cls, path: str) -> "Expertise":
    with np.load(path, allow_pickle=False) as z:
      meta = json.loads(str(z["meta"]))
      idx = meta["index"]
      index = NeuronIndex(tuple(idx["sites"]), idx["num_layers"], tuple(idx["widths"]),
                          idx["model_id"])
      return cls(index, tuple(meta["languages"]), z["ap"], {s: z[s] for s in STATISTICS})

  def language_row(self, language: str) -> int:
    return language_index(self.languages, language)
