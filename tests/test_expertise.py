"""AP and statistics against scikit-learn and numpy, with heavy ties, repeats and weights."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from lang_neuron_jax.find import scoring as expertise


def tied_data(n=300, u=37, c=3, seed=0):
  rng = np.random.default_rng(seed)
  x = np.round(rng.normal(size=(n, u)), 1).astype(np.float32)  # Heavy ties.
  x[:, 0] = 1.0  # A constant unit.
  x[:, 1] = np.round(x[:, 1] * 0.1, 0)  # Almost constant.
  labels = rng.random((c, n)) < 0.2
  labels[:, 0] = True
  weights = rng.integers(0, 4, size=(c, n)).astype(np.float32)  # Repeats, and absent texts.
  weights[:, :2] = 1
  return x, labels, weights


def expand(x, labels, w):
  rows = np.repeat(np.arange(len(w)), w.astype(int))
  return x[rows], labels[rows]


@pytest.mark.parametrize("method", expertise.BACKENDS)
def test_ap_and_statistics_equal_sklearn_and_numpy(method):
  x, labels, weights = tied_data()
  got = expertise.score_units(x, labels, weights, chunk_size=16, method=method)
  for c in range(labels.shape[0]):
    xe, le = expand(x, labels[c], weights[c])
    for u in range(x.shape[1]):
      ref = average_precision_score(labels[c], x[:, u], sample_weight=weights[c])
      assert abs(got["ap"][c, u] - ref) <= 1e-6, (c, u)
      assert abs(got["ap"][c, u] - average_precision_score(le, xe[:, u])) <= 1e-6
      pos, neg = xe[le, u], xe[~le, u]
      for key, ref_v in (("on_p50", np.percentile(pos, 50)), ("on_p90", np.percentile(pos, 90)),
                         ("off_p50", np.percentile(neg, 50)), ("off_mean", neg.mean())):
        assert abs(got[key][c, u] - ref_v) <= 1e-6 * max(1, abs(ref_v)), (key, c, u)


def test_average_precision_single_label_vector_and_single_positive():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(50, 5)).astype(np.float32)
  y = np.zeros(50, bool)
  y[7] = True
  got = expertise.average_precision(x, y)
  ref = [average_precision_score(y, x[:, u]) for u in range(5)]
  np.testing.assert_allclose(got, ref, atol=1e-6)


def test_descending_order_is_stable():
  x = np.array([[1.0], [3.0], [1.0], [-2.0], [3.0], [-0.5]], np.float32)
  assert expertise.descending_order(x)[:, 0].tolist() == [1, 4, 0, 2, 5, 3]


def test_errors_name_what_to_fix():
  x = np.zeros((4, 2), np.float32)
  with pytest.raises(ValueError, match="no positive"):
    expertise.average_precision(x, np.zeros(4, bool))
  with pytest.raises(ValueError, match="no negative"):
    expertise.average_precision(x, np.ones(4, bool))
  with pytest.raises(ValueError, match="labels have 3 texts"):
    expertise.average_precision(x, np.ones(3, bool))
  bad = x.copy()
  bad[1, 1] = np.nan
  with pytest.raises(ValueError, match="Non-finite responses at unit 1"):
    expertise.average_precision(bad, np.array([1, 0, 0, 1], bool))
  with pytest.raises(ValueError, match="non-negative"):
    expertise.average_precision(x, np.array([1, 0, 0, 1], bool), -np.ones(4))
