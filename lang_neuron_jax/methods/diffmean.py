"""Mean-difference directions ("DiffMean" steering vectors).

For a language ``c`` and a layer ``l``, the direction is the mean residual stream over
``c``'s texts minus the mean over every other text::

    v[c, l] = mean_{i in c} r[i, l] - mean_{i not in c} r[i, l]          # [D]

where ``r[i, l]`` is text ``i``'s residual stream after block ``l`` (the ``resid`` tap),
mean-pooled over its tokens, BOS included, as the AP method pools its neurons (each text
weighs the same; the "difference of means" of Marks & Tegmark 2023 and of the steering
literature, e.g. Rimsky et al. 2024's contrastive activation addition, over texts).

Steering towards ``c`` adds ``alpha * v[c, l*]`` to the residual stream after block
``l*`` at every position (prompt and new tokens, as the paper's neurons). ``alpha = 1``
moves the other languages' mean onto ``c``'s.

Layer rule, from the corpora alone: ``l*`` is the layer whose direction separates ``c``'s
texts from the others best, by the standardized difference of the texts' projections on
``v[c, l]`` (``d' = (mean_in - mean_out) / sqrt((var_in + var_out) / 2)``); ties go to
the lower layer. Every layer's ``d'`` is in :meth:`FittedDiffMean.summary`.
"""

from __future__ import annotations

import numpy as np

from lang_neuron_jax.methods.base import CorpusStatistics, DirectionMethod, FittedDirection
from lang_neuron_jax.errors import UserError

SITE = FittedDirection.site


def mean_differences(resid: np.ndarray, language_of_text: np.ndarray,
                     num_languages: int) -> np.ndarray:
  """float32 ``[C, L, D]`` directions from pooled residuals ``[M, L, D]`` (float64 sums)."""
  out = []
  for c in range(num_languages):
    inside = language_of_text == c
    if not inside.any() or inside.all():
      raise UserError(f"Language {c} needs texts of its own and texts of others.")
    out.append(resid[inside].mean(axis=0, dtype=np.float64)
               - resid[~inside].mean(axis=0, dtype=np.float64))
  return np.stack(out).astype(np.float32)


def separation(resid: np.ndarray, language_of_text: np.ndarray,
               directions: np.ndarray) -> np.ndarray:
  """float64 ``[C, L]``: d' of the texts' projections on each direction."""
  C, L, _ = directions.shape
  out = np.zeros((C, L))
  for c in range(C):
    inside = language_of_text == c
    for l in range(L):
      v = directions[c, l].astype(np.float64)
      proj = resid[:, l].astype(np.float64) @ (v / max(np.linalg.norm(v), 1e-30))
      a, b = proj[inside], proj[~inside]
      spread = np.sqrt((a.var() + b.var()) / 2)
      out[c, l] = (a.mean() - b.mean()) / spread if spread > 0 else 0.0
  return out


class FittedDiffMean(FittedDirection):
  """Directions ``[C, L, D]``, their d' ``[C, L]``, and each language's layer (the rule's,
  or the one given); strength ``alpha`` adds ``alpha * directions[c, layer]``."""

  def __init__(self, languages, directions: np.ndarray, dprime: np.ndarray,
               layer: int | None = None):
    super().__init__(languages, directions, {
        lang: int(np.argmax(dprime[c])) if layer is None else layer
        for c, lang in enumerate(languages)})
    self.dprime = dprime

  def summary(self) -> dict:
    return {"layer": self.layer,
            "norm": {l: float(np.linalg.norm(self.directions[c, self.layer[l]]))
                     for c, l in enumerate(self.languages)},
            "dprime": {l: self.dprime[c].round(4).tolist() for c, l in enumerate(self.languages)}}


class DiffMean(DirectionMethod):
  """Mean-difference directions added to one layer's residual stream; strength ``alpha``.

  Args:
    layer: Steer at this layer for every language instead of the layer rule's choice.
  """

  name = "diffmean"
  strengths = (1.0, 2.0, 4.0)

  def fit(self, stats: CorpusStatistics) -> FittedDiffMean:
    self.check_layers(stats.num_layers)
    resid = np.asarray(stats.responses[SITE])
    directions = mean_differences(resid, stats.language_of_text, len(stats.languages))
    return FittedDiffMean(stats.languages, directions,
                          separation(resid, stats.language_of_text, directions), self.layer)
