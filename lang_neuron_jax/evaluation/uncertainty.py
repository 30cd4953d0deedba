"""Uncertainty of measured shares and scores: intervals, a paired exact test, Holm.

Every share the control stage reports (a proportion of samples) carries a Wilson score
interval; medians and corpus scores (BLEU, chrF) carry percentile-bootstrap intervals over
samples. An intervened condition is compared with the baseline by McNemar's exact test:
sample ``i`` of every condition is drawn with the same random key (common random numbers,
see :mod:`lang_neuron_jax.control.rows`), and translation pair ``i`` has the same source in both
conditions, so the outcomes are *paired*, and only the discordant pairs carry information
about the difference. Holm's step-down adjustment controls the family-wise error over all
comparisons of a table.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from lang_neuron_jax.errors import UserError

Z95 = 1.959963984540054  # The standard normal's 97.5% quantile.
ALPHA = 0.05


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
  """The Wilson score interval of a proportion (95% by default).

  Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or n
  successes: 0 of 32 gives [0, 0.107].

  Raises:
    ValueError: ``trials < 1`` or ``successes`` outside ``[0, trials]``.
  """
  if trials < 1 or not 0 <= successes <= trials:
    raise UserError(f"Need 0 <= successes <= trials and trials >= 1, got {successes}/{trials}.")
  p = successes / trials
  denominator = 1 + z * z / trials
  centre = (p + z * z / (2 * trials)) / denominator
  half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
  # Exact at the ends: rounding would otherwise leave 0 successes a lower bound of 1e-17.
  low = 0.0 if successes == 0 else max(0.0, centre - half)
  high = 1.0 if successes == trials else min(1.0, centre + half)
  return low, high


def mcnemar_exact(baseline: Sequence[bool], treated: Sequence[bool]) -> float:
  """Two-sided p-value of McNemar's exact test on paired binary outcomes.

  Under the null hypothesis (the intervention does not change the outcome's probability)
  each discordant pair (exactly one of the two is a success) is equally likely to go
  either way, so the smaller discordant count is Binomial(discordant, 1/2).

  Args:
    baseline: bool ``[n]``, outcome of pair ``i`` without intervention.
    treated: bool ``[n]``, outcome of pair ``i`` with it.

  Returns:
    The p-value (1.0 when no pair is discordant).
  """
  a, b = np.asarray(baseline, bool), np.asarray(treated, bool)
  if a.shape != b.shape:
    raise UserError(f"Paired outcomes need equal lengths, got {a.shape} and {b.shape}.")
  gained, lost = int(np.sum(~a & b)), int(np.sum(a & ~b))
  discordant = gained + lost
  if discordant == 0:
    return 1.0
  tail = sum(math.comb(discordant, k) for k in range(min(gained, lost) + 1)) / 2 ** discordant
  return min(1.0, 2 * tail)


def holm(pvalues: Sequence[float]) -> np.ndarray:
  """Holm's step-down adjusted p-values (same order as given).

  Raises:
    ValueError: a p-value is NaN (a test that did not run must be left out, not counted
      as p = 1, which would still raise every other adjustment).
  """
  p = np.asarray(pvalues, float)
  if np.isnan(p).any():
    raise ValueError(f"Holm's adjustment got NaN p-values at {np.flatnonzero(np.isnan(p)).tolist()}; "
                     "leave untested comparisons out.")
  order = np.argsort(p, kind="stable")
  adjusted = np.empty_like(p)
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (len(p) - rank) * p[i]))
    adjusted[i] = running
  return adjusted


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n: int, *,
                       resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
  """Percentile-bootstrap interval of ``statistic(indices)`` over ``n`` samples.

  Args:
    statistic: Takes int ``[n]`` indices drawn with replacement and returns a float
      (for example the median of those samples, or a corpus BLEU from their sufficient
      statistics).
    n: Number of samples (at least 1).
    resamples: Bootstrap replicates.
    seed: Seed of the resampling (an interval is the same in every run).
    level: Coverage.

  Returns:
    ``(low, high)``.
  """
  if n < 1:
    raise UserError("Need at least one sample to bootstrap.")
  rng = np.random.default_rng(seed)
  values = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)])
  tail = (1 - level) / 2 * 100
  low, high = np.percentile(values, [tail, 100 - tail])
  return float(low), float(high)


def median_interval(values: Sequence[float], **kwargs) -> tuple[float, float] | None:
  """Bootstrap interval of the median of ``values`` (None when there are none)."""
  x = np.asarray(values, float)
  if x.size == 0:
    return None
  return bootstrap_interval(lambda idx: float(np.median(x[idx])), x.size, **kwargs)


def share_summary(outcomes: Sequence[bool]) -> dict:
  """``{"share", "ci", "successes", "trials"}`` of binary outcomes, with a Wilson CI."""
  x = np.asarray(outcomes, bool)
  k = int(x.sum())
  return {"share": k / x.size, "ci": list(wilson_interval(k, x.size)), "successes": k,
          "trials": int(x.size)}
