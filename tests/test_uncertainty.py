"""Intervals and the paired exact test, against SciPy and known values."""

import numpy as np
import pytest
from scipy import stats

from lang_neuron_jax.evaluation import uncertainty


@pytest.mark.parametrize("k,n,expected", [(5, 10, (0.2366, 0.7634)), (0, 32, (0.0, 0.1072)),
                                          (32, 32, (0.8928, 1.0)), (1, 3, (0.0615, 0.7923))])
def test_wilson_interval_known_values(k, n, expected):
  assert uncertainty.wilson_interval(k, n) == pytest.approx(expected, abs=1e-4)


def test_wilson_interval_matches_scipy():
  for k, n in [(3, 17), (40, 100), (99, 100)]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert uncertainty.wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


@pytest.mark.parametrize("k,n", [(-1, 3), (4, 3), (0, 0)])
def test_wilson_interval_refuses_impossible_counts(k, n):
  with pytest.raises(ValueError, match="successes"):
    uncertainty.wilson_interval(k, n)


def test_mcnemar_exact_matches_a_binomial_test_on_discordant_pairs():
  rng = np.random.default_rng(0)
  for _ in range(20):
    a = rng.random(40) < 0.3
    b = rng.random(40) < rng.uniform(0.1, 0.9)
    gained, lost = int(np.sum(~a & b)), int(np.sum(a & ~b))
    expected = 1.0 if gained + lost == 0 else stats.binomtest(gained, gained + lost).pvalue
    assert uncertainty.mcnemar_exact(a, b) == pytest.approx(expected, rel=1e-9)
  # Concordant pairs carry no information: same p whatever their number.
  assert uncertainty.mcnemar_exact([0] * 6, [1] * 6) == pytest.approx(2 / 64)
  assert uncertainty.mcnemar_exact([0] * 6 + [1] * 50, [1] * 6 + [1] * 50) == pytest.approx(2 / 64)
  assert uncertainty.mcnemar_exact([1, 0], [1, 0]) == 1.0
  with pytest.raises(ValueError, match="equal lengths"):
    uncertainty.mcnemar_exact([1, 0], [1])


def test_holm_adjustment():
  # Sorted p 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04 (monotone), returned in input order.
  np.testing.assert_allclose(uncertainty.holm([0.04, 0.01, 0.02]), [0.04, 0.03, 0.04])
  np.testing.assert_allclose(uncertainty.holm([0.5, 0.9]), [1.0, 1.0])


def test_bootstrap_interval_is_deterministic_and_covers_the_median():
  x = np.random.default_rng(1).lognormal(size=50)
  ci = uncertainty.median_interval(x, seed=3)
  assert ci == uncertainty.median_interval(x, seed=3)
  assert ci[0] < np.median(x) < ci[1]
  assert uncertainty.median_interval([]) is None
  assert uncertainty.median_interval([2.0]) == (2.0, 2.0)


def test_holm_refuses_nan():
  """A NaN p-value is a bug upstream; Holm must not turn it into 1 and count it."""
  assert uncertainty.holm([0.01, 0.04]) == pytest.approx([0.02, 0.04])
  with pytest.raises(ValueError, match="NaN"):
    uncertainty.holm([0.01, float("nan")])
