"""AP and statistics of all units × all languages, against per-unit scikit-learn, in one run.

Times every method of ``score_units`` (the default on CPU is "host": numpy kernels in
threads; "device" is the jitted XLA function that runs sharded on GPU and TPU).
Data shaped like the real task: the six languages' 3,000-text lists (repeats included)
over the 5,873 distinct sentences, as index weights; responses with ties (rounded, as
activations of repeated and near-identical texts tie). Times our ``score_units`` on
every unit and every language, and sklearn's ``average_precision_score`` (with
``sample_weight``) on a sample of units, extrapolated per unit; checks agreement on the
sample.

  python benchmarks/expertise.py [--units=20000] [--sklearn_units=200]
"""

import time

from absl import flags
import jax
import numpy as np
from sklearn.metrics import average_precision_score

from lang_neuron_jax.runtime import cli
from lang_neuron_jax.find import scoring as expertise

_UNITS = flags.DEFINE_integer("units", 20_000, "Units to score.")
_SKLEARN_UNITS = flags.DEFINE_integer("sklearn_units", 200, "Units timed with sklearn.")


def synthetic(units, texts=5873, languages=6, seed=0):
  rng = np.random.default_rng(seed)
  x = np.round(rng.normal(size=(texts, units)), 2).astype(np.float32)
  # Each language: 500 positives of its own, 2,500 negatives, about half shared sentences.
  weights = np.zeros((languages, texts), np.float32)
  labels = np.zeros((languages, texts), bool)
  own = np.array_split(rng.permutation(texts), languages)
  for c in range(languages):
    pos = rng.choice(own[c], 500, replace=True)  # a few repeats, as in the data
    others = np.concatenate([own[k] for k in range(languages) if k != c])
    neg = rng.choice(others, 2500, replace=True)
    np.add.at(weights[c], pos, 1)
    np.add.at(weights[c], neg, 1)
    labels[c, own[c]] = True
  return x, labels, weights


def main(argv):
  del argv
  cli.require_positive(_UNITS, _SKLEARN_UNITS)
  x, labels, weights = synthetic(_UNITS.value)
  times, results = {}, {}
  for method in expertise.BACKENDS:
    expertise.score_units(x[:, :512], labels, weights, method=method)  # compile, warm up
    start = time.perf_counter()
    results[method] = expertise.score_units(x, labels, weights, method=method)
    times[method] = time.perf_counter() - start
  default = "host" if jax.default_backend() == "cpu" else "device"
  ours, t_ours = results[default], times[default]
  sample = np.linspace(0, _UNITS.value - 1, _SKLEARN_UNITS.value).astype(int)
  keep = [w > 0 for w in weights]
  start = time.perf_counter()
  ref = np.array([[average_precision_score(labels[c][keep[c]], x[keep[c], u],
                                           sample_weight=weights[c][keep[c]])
                   for u in sample] for c in range(len(labels))])
  t_sklearn = (time.perf_counter() - start) / len(sample) * _UNITS.value
  diff = np.abs(ours["ap"][:, sample] - ref).max()
  print(f"units: {_UNITS.value}, languages: {len(labels)}, texts: {x.shape[0]} distinct, "
        f"devices: {jax.devices()}")
  for method, t in times.items():
    same = max(np.abs(results[method][k] - ours[k]).max() for k in ours)
    print(f"ours, method={method!r:20s} (AP + 4 statistics, all units × languages): "
          f"{t:7.2f} s{'  <- default here' if method == default else ''}"
          f"  (max |diff| to default {same:.1e})")
  print(f"sklearn average_precision_score, extrapolated:   {t_sklearn:8.2f} s "
        f"({t_sklearn / _UNITS.value / len(labels) * 1e3:.2f} ms per unit and language)")
  print(f"speed-up of the default method: {t_sklearn / t_ours:.1f}x; max |AP ours - sklearn| = "
        f"{diff:.2e}; of the jitted device method on this backend: "
        f"{t_sklearn / times['device']:.1f}x")


if __name__ == "__main__":
  cli.run(main)
