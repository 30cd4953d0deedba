"""LAPE neurons: language activation probability entropy (Tang et al., ACL 2024).

Follows ``identify.py`` of RUCAIBox/Language-Specific-Neurons (commit fdeca23), on the
MLP nonlinearity's output before it multiplies ``up`` (their ``activation.py`` hooks
``SiLU(gate)``; ``gelu(dense_h_to_4h)`` in BLOOM): the ``gate_act`` site in gated MLPs,
``act`` otherwise (``DecoderConfig.activation_site``).

1. ``p[k, l, i]``: the share of language ``k``'s tokens at which unit ``(l, i)`` is
   positive (their ``over_zero / n``, float32).
2. ``q = p / sum_k p`` (0 where a unit never fires); entropy ``H = -sum_k q ln q``.
3. ``tau``: the ``round(0.95 * K*L*I)``-th smallest of all ``p`` (``filter_rate``, torch
   ``kthvalue``, 1-based, Python's rounding). Units positive more often than ``tau`` in
   no language get ``H = inf``.
4. The ``round(top_rate * L*I)`` units of lowest ``H`` (``top_rate = 0.01``) are the
   candidates; ties go to the lowest flat index (torch's ``topk`` leaves them open).
5. A candidate belongs to every language ``k`` with ``p[k] > tau``
   (``activation_bar_ratio = 0.95``: the same quantile), so it may belong to several.

Differences, all forced by the corpora: they count every token of ~100M-token
Wikipedia streams cut into 4,096-token chunks; here every token of the study's texts,
BOS included, as the AP method pools. Their selection constant ``top_rate`` is this
method's strength (a comparison sweeps it around their 0.01).

Interventions (their ``ppl.py``/``generation.py`` deactivate: set to 0 at every
position; the paper's "activate" is not in the public code): ``"activate"`` (default)
fixes the target language's units to its mean activation over its tokens, at every
position; ``"deactivate_others"`` sets the units of every other language, except those
the target shares, to 0.
"""

from __future__ import annotations

import numpy as np

from lang_neuron_jax.methods.base import CorpusStatistics, Fitted, Method, Steer
from lang_neuron_jax.data.corpora import language_index
from lang_neuron_jax.errors import ConfigError

TOP_RATE = 0.01
FILTER_RATE = 0.95
ACTIVATION_BAR_RATIO = 0.95
INTERVENTIONS = ("activate", "deactivate_others")


def activation_probabilities(positive: np.ndarray, lengths: np.ndarray,
                             language_of_text: np.ndarray, num_languages: int) -> np.ndarray:
  """float32 ``[K, L, I]``: per language, the share of its tokens where a unit is > 0.

  Args:
    positive: ``[M, L, I]`` per text, tokens where the unit is positive.
    lengths: ``[M]`` tokens per text.
    language_of_text: ``[M]`` language indices.
    num_languages: K.
  """
  out = []
  for k in range(num_languages):
    inside = language_of_text == k
    over_zero = np.asarray(positive)[inside].sum(axis=0, dtype=np.float64)
    out.append(np.float32(over_zero) / np.float32(lengths[inside].sum()))
  return np.stack(out).astype(np.float32)


def entropy(probs: np.ndarray) -> np.ndarray:
  """float32 ``[L, I]``: entropy (natural log) of each unit's probabilities normalised
  over the languages ``[K, L, I]`` (a unit that never fires: 0)."""
  total = probs.sum(axis=0, keepdims=True)
  with np.errstate(invalid="ignore", divide="ignore"):
    q = np.where(total > 0, probs / total, 0.0).astype(np.float32)
    logs = np.where(q > 0, np.log(q), 0.0).astype(np.float32)
  return -(q * logs).sum(axis=0)


def kth_smallest(values: np.ndarray, rate: float) -> float:
  """torch's ``values.flatten().kthvalue(round(len * rate))``."""
  flat = np.ravel(values)
  k = round(flat.size * rate)
  return float(np.partition(flat, k - 1)[k - 1])


def select(probs: np.ndarray, top_rate: float = TOP_RATE) -> tuple[np.ndarray, np.ndarray]:
  """LAPE's selection.

  Args:
    probs: ``[K, L, I]`` activation probabilities.
    top_rate: Share of all units kept as candidates.

  Returns:
    ``(candidates int64 [n] flat indices l * I + i in selection order,
    member bool [K, n]: candidate j belongs to language k)``.
  """
  K, L, I = probs.shape
  ent = entropy(probs).ravel()
  tau = kth_smallest(probs, FILTER_RATE)
  ent[(probs > tau).sum(axis=0).ravel() == 0] = np.inf
  count = round(L * I * top_rate)
  candidates = np.argsort(ent, kind="stable")[:count]
  bar = kth_smallest(probs, ACTIVATION_BAR_RATIO)
  member = probs.reshape(K, L * I)[:, candidates] > bar
  return candidates.astype(np.int64), member


def mean_activations(means: np.ndarray, lengths: np.ndarray, language_of_text: np.ndarray,
                     num_languages: int) -> np.ndarray:
  """float32 ``[K, L, I]``: each unit's mean over every token of each language, from the
  per-text means ``[M, L, I]`` weighted by the texts' lengths."""
  out = []
  for k in range(num_languages):
    inside = language_of_text == k
    w = lengths[inside].astype(np.float64)
    out.append(np.einsum("mli,m->li", np.asarray(means)[inside], w,
                         dtype=np.float64) / w.sum())
  return np.stack(out).astype(np.float32)


class FittedLAPE(Fitted):

  def __init__(self, site: str, languages, probs: np.ndarray, means: np.ndarray,
               intervention: str):
    self.site = site
    self.languages = tuple(languages)
    self.probs = probs
    self.means = means
    self.intervention = intervention
    self._selections: dict[float, tuple[np.ndarray, np.ndarray]] = {}

  def selection(self, top_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Cached :func:`select` at ``top_rate``."""
    if top_rate not in self._selections:
      self._selections[top_rate] = select(self.probs, top_rate)
    return self._selections[top_rate]

  def units(self, language: str, top_rate: float) -> np.ndarray:
    """int64 flat indices ``l * I + i`` of ``language``'s neurons at ``top_rate``."""
    row = language_index(self.languages, language, what="fitted")
    candidates, member = self.selection(top_rate)
    return np.sort(candidates[member[row]])

  def steer(self, language: str, strength) -> Steer:
    _, L, I = self.probs.shape
    own = self.units(language, strength)  # Raises for an unknown language.
    if self.intervention == "activate":
      layer, unit = np.divmod(own, I)
      return Steer.fix(self.site, (L, I), layer, unit,
                       self.means[self.languages.index(language), layer, unit])
    others = np.setdiff1d(np.concatenate(
        [self.units(l, strength) for l in self.languages if l != language]), own)
    layer, unit = np.divmod(others, I)
    return Steer.fix(self.site, (L, I), layer, unit, np.zeros(others.size, np.float32))

  def layers(self, language: str, strength) -> np.ndarray:
    return np.bincount(self.units(language, strength) // self.probs.shape[2],
                       minlength=self.probs.shape[1])

  def neurons(self, language: str, strength) -> frozenset:
    """As ``(site, layer, unit)`` of the projection whose output the unit transforms
    (``gate`` for ``gate_act``, ``up`` for ``act``), so overlaps with AP neurons count."""
    I, site = self.probs.shape[2], "gate" if self.site == "gate_act" else "up"
    return frozenset((site, int(f // I), int(f % I)) for f in self.units(language, strength))

  def summary(self) -> dict:
    candidates, member = self.selection(TOP_RATE)
    return {"site": self.site, "intervention": self.intervention,
            "candidates_at_top_rate_0.01": int(candidates.size),
            "neurons_per_language_at_top_rate_0.01": dict(zip(self.languages,
                                                              member.sum(axis=1).tolist()))}


class LAPE(Method):
  """LAPE neurons; strength: ``top_rate``, the share of all MLP units kept as candidates
  (their 0.01).

  Args:
    intervention: "activate" or "deactivate_others" (see the module docstring).
  """

  name = "lape"
  strength_name = "top_rate"
  strengths = (0.005, 0.01, 0.02)

  def __init__(self, intervention: str = "activate"):
    if intervention not in INTERVENTIONS:
      raise ConfigError(f"lape: unknown intervention {intervention!r}; use one of {INTERVENTIONS}.")
    self.intervention = intervention

  def needs(self, model_config):
    site = model_config.activation_site
    return (site,), (site,)

  def fit(self, stats: CorpusStatistics) -> FittedLAPE:
    site = "gate_act" if "gate_act" in stats.site_widths else "act"
    if site not in stats.positive or site not in stats.responses:
      raise ConfigError(f"lape needs the {site!r} site's means and positive counts; record them "
                       f"in the responses (positive_sites=({site!r},)).")
    K = len(stats.languages)
    probs = activation_probabilities(stats.positive[site], stats.lengths,
                                     stats.language_of_text, K)
    means = mean_activations(stats.responses[site], stats.lengths, stats.language_of_text, K)
    return FittedLAPE(site, stats.languages, probs, means, self.intervention)

  def check_strength(self, strength) -> None:
    super().check_strength(strength)
    if not 0 < strength <= 1:
      raise ConfigError(f"lape: top_rate must be in (0, 1], got {strength!r}.")
