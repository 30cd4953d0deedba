"""AP neurons (Kojima et al., NAACL 2024; kojima-takeshi188/lang_neuron).

Every neuron is scored by average precision at telling a language's texts from the others
by its mean response (:mod:`lang_neuron_jax.find.scoring`, the find stage); steering towards
a language fixes its top N/2 and bottom N/2 neurons to their median response on that
language (``on_p50``) at every position: the authors' ``expertise_limited_{N}_both``
(``scripts/make_limited_expert.py``) with their generation's ``--on-value p50``.
"""

from __future__ import annotations

import numpy as np

from lang_neuron_jax.neurons import selection
from lang_neuron_jax.methods.base import CorpusStatistics, Fitted, Method, Steer
from lang_neuron_jax.errors import ConfigError


class FittedAP(Fitted):

  def __init__(self, expertise: selection.Expertise, shapes: dict[str, tuple[int, int]]):
    self.expertise = expertise
    self.shapes = shapes

  def _set(self, language: str, n) -> selection.NeuronSet:
    total = self.expertise.index.size
    return selection.select(self.expertise, language, selection.cap_n(int(n), total, "both"),
                            "both")

  def steer(self, language: str, strength) -> Steer:
    return selection.neuron_steer(self._set(language, strength), "on_p50")

  def layers(self, language: str, strength) -> np.ndarray:
    chosen = self._set(language, strength)
    return np.bincount(chosen.layer, minlength=self.expertise.index.num_layers)

  def neurons(self, language: str, strength) -> frozenset:
    chosen = self._set(language, strength)
    names = self.expertise.index.sites
    return frozenset(zip((names[s] for s in chosen.site), chosen.layer.tolist(),
                         chosen.unit.tolist()))

  def summary(self) -> dict:
    return {"neurons": int(self.expertise.index.size),
            "sites": list(self.expertise.index.sites)}


class APNeurons(Method):
  """The paper's method; its strength N counts every fixed neuron (N/2 + N/2), even,
  capped at the model's neuron count."""

  name = "ap"
  strength_name = "N"
  strengths = (200, 2_000, 20_000)

  def needs(self, model_config):
    return model_config.neuron_sites, ()

  def fit(self, stats: CorpusStatistics) -> FittedAP:
    if stats.expertise is None:
      raise ConfigError("AP neurons need the find stage's scores (CorpusStatistics.expertise).")
    return FittedAP(stats.expertise, {s: stats.shape(s) for s in stats.expertise.index.sites})

  def check_strength(self, strength) -> None:
    super().check_strength(strength)
    if strength != int(strength) or int(strength) < 2 or int(strength) % 2:
      raise ConfigError(f"ap: N must be an even integer of at least 2 (N/2 top + N/2 bottom "
                       f"neurons), got {strength!r}.")
