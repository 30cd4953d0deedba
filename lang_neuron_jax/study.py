"""The study's named settings, as data: what ``experiments/reproduce.py`` runs.

A :class:`Study` is the find stage's and the control stage's configs together. The
presets differ only in counts: ``DEFAULT`` keeps every text, neuron and condition of the
paper with fewer unconditional samples and translation pairs (so that the report can
tell the paper's main claims from noise in minutes on a CPU), ``PAPER`` has the paper's
100 samples and 100 pairs, and ``QUICK`` is the same code path on a small scale. Change
one with ``dataclasses.replace`` (the binaries apply their flags that way)::

  study = presets.DEFAULT.replace(n=1000, languages=("en", "de", "ja"))
"""

from __future__ import annotations

import dataclasses

from lang_neuron_jax.control import conditions
from lang_neuron_jax.compare.stage import CompareConfig
from lang_neuron_jax.control.stage import ControlConfig
from lang_neuron_jax.find.stage import FindConfig


@dataclasses.dataclass(frozen=True)
class Study:
  """A whole study: the find stage's config and the control stage's."""

  find: FindConfig
  control: ControlConfig

  def replace(self, *, languages=None, targets=None, n=None, seed=None, batch_size=None,
              **find_fields) -> "Study":
    """A copy with the settings the binaries expose changed (None keeps a setting).

    Args:
      languages: Languages to find neurons for; also the targets unless ``targets``.
      targets: Languages to steer towards.
      n: N of the analysed sets, the control's main condition and translation.
      seed, batch_size: Seed of both stages; generation rows per call.
      **find_fields: Other :class:`FindConfig` fields (``corpus_dir``, ``tfds_name``...).
    """
    find_changes = {k: v for k, v in dict(languages=languages, n=n, seed=seed,
                                          **find_fields).items() if v is not None}
    control_changes = {k: v for k, v in dict(
        languages=targets or languages, main_n=n, translation_n=n, seed=seed,
        batch_size=batch_size).items() if v is not None}
    return Study(dataclasses.replace(self.find, **find_changes),
                 dataclasses.replace(self.control, **control_changes))


PAPER = Study(FindConfig(), ControlConfig())
DEFAULT = Study(FindConfig(), ControlConfig(samples=24, perplexity_samples=6,
                                            translation_pairs=12))
QUICK = Study(FindConfig(positives_per_language=30),
              ControlConfig(samples=6, perplexity_samples=3, max_new_tokens=32,
                            ns=(20, conditions.MAIN_N, 200_000), translation_pairs=3,
                            translation_tokens=48))
PRESETS = {"quick": QUICK, "default": DEFAULT, "paper": PAPER}


@dataclasses.dataclass(frozen=True)
class Comparison:
  """A method comparison: the find stage's config (every method's statistics are added
  to its forward pass by :func:`lang_neuron_jax.compare.stage.find_config`) and the
  comparison's."""

  find: FindConfig
  compare: CompareConfig


# The default fits the budget on a 2-core CPU: 100 texts per language for the
# statistics (AP's scores and LAPE's probabilities from 600 texts), three strengths per
# method and 16 samples per condition. FULL: every text, wider sweeps, the paper's 100
# samples.
COMPARE_DEFAULT = Comparison(FindConfig(positives_per_language=100), CompareConfig())
COMPARE_FULL = Comparison(FindConfig(), CompareConfig(
    samples=100, perplexity_samples=20, translation_pairs=100,
    strengths=(("ap", conditions.UNCONDITIONAL_NS), ("lape", (0.0025, 0.005, 0.01, 0.02, 0.04)),
               ("diffmean", (0.5, 1.0, 2.0, 4.0, 8.0)))))
COMPARE_QUICK = Comparison(FindConfig(positives_per_language=20), CompareConfig(
    samples=4, perplexity_samples=4, max_new_tokens=24, translation_pairs=2,
    translation_tokens=32,
    strengths=(("ap", (2_000,)), ("lape", (0.01,)), ("diffmean", (1.0, 4.0)))))
COMPARE_PRESETS = {"quick": COMPARE_QUICK, "default": COMPARE_DEFAULT, "full": COMPARE_FULL}
