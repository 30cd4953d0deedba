"""The whole study: its named settings, as data, and :func:`run_study`, which runs them
(``experiments/reproduce.py`` is its command line).

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
import os

from absl import logging

from lang_neuron_jax.models import loading
from lang_neuron_jax.compare import config as compare_config
from lang_neuron_jax.compare import stage as compare_stage
from lang_neuron_jax.compare.config import CompareConfig
from lang_neuron_jax.compare.stage import CompareResult
from lang_neuron_jax.report import comparison as comparison_report
from lang_neuron_jax.control import conditions
from lang_neuron_jax.control import stage as control_stage
from lang_neuron_jax.control.stage import ControlConfig, ControlResult
from lang_neuron_jax.find import stage as find_stage
from lang_neuron_jax.find.stage import FindConfig, FindResult
from lang_neuron_jax.report import study as report
from lang_neuron_jax.runtime import artifacts, distributed, locks, stages


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
# DEFAULT: 18 samples per condition (24 before issue 30): every sample is now scored under
# the unintervened model (about one more forward pass each); with 20 the default run took
# 20 min 28 s on a quiet 2-core Xeon, 18 keeps it within 20 minutes (docs/evaluation.md
# has the measurements).
DEFAULT = Study(FindConfig(), ControlConfig(samples=18, translation_pairs=12))
QUICK = Study(FindConfig(positives_per_language=30),
              ControlConfig(samples=6, max_new_tokens=32,
                            ns=(20, conditions.MAIN_N, 200_000), translation_pairs=3,
                            translation_tokens=48))
PRESETS = {"quick": QUICK, "default": DEFAULT, "paper": PAPER}


@dataclasses.dataclass(frozen=True)
class Comparison:
  """A method comparison: the find stage's config (every method's statistics are added
  to its forward pass by :func:`lang_neuron_jax.compare.config.find_config`) and the
  comparison's."""

  find: FindConfig
  compare: CompareConfig


# The default fits the budget on a 2-core CPU: 100 texts per language for the
# statistics (AP's scores and LAPE's probabilities from 600 texts), three strengths per
# method, each chosen on 10 samples per setting and reported on 41 held-out ones (the
# counts' reasoning: CompareConfig's docstring). FULL: every text, wider sweeps, the
# paper's 100 samples on each half.
COMPARE_DEFAULT = Comparison(FindConfig(positives_per_language=100), CompareConfig())
COMPARE_FULL = Comparison(FindConfig(), CompareConfig(
    samples=100, choose_samples=100, translation_pairs=100,
    strengths=(("ap", conditions.UNCONDITIONAL_NS), ("lape", (0.0025, 0.005, 0.01, 0.02, 0.04)),
               ("diffmean", (0.5, 1.0, 2.0, 4.0, 8.0)))))
COMPARE_QUICK = Comparison(FindConfig(positives_per_language=20), CompareConfig(
    samples=4, choose_samples=4, max_new_tokens=24, translation_pairs=2,
    translation_tokens=32,
    strengths=(("ap", (2_000,)), ("lape", (0.01,)), ("diffmean", (1.0, 4.0)))))
COMPARE_PRESETS = {"quick": COMPARE_QUICK, "default": COMPARE_DEFAULT, "full": COMPARE_FULL}


@dataclasses.dataclass(frozen=True)
class StudyResult:
  """What :func:`run_study` produced.

  Attributes:
    find: The find stage's result (scores, analyses, figures, stamp).
    control: The control stage's result (metrics, records, figures, stamps).
    report: Path of ``report.md`` (None in processes other than the leader).
    comparison: The method comparison's result, when one was asked for.
    comparison_report: Path of its ``comparison.md`` (leader only).
  """

  find: FindResult
  control: ControlResult
  report: str | None
  comparison: CompareResult | None = None
  comparison_report: str | None = None


def run_study(model: str, study: Study, workdir: str, *, dtype: str = "float32",
              compare: CompareConfig | None = None, setting: str = "custom") -> StudyResult:
  """Finds the neurons, runs the control experiments and writes ``report.md`` (and, with
  ``compare``, the method comparison on the same find stage).

  Every configuration is checked against the model's config before any weights load, and
  ``workdir`` is held (:func:`lang_neuron_jax.runtime.locks.hold_workdir`) before the model
  loads, so bad settings or a second run on the same directory are refused in seconds.
  Finished stages are reused and an interrupted one continues (``runtime/stages.py``).

  Args:
    model: A model source for :func:`lang_neuron_jax.models.loading.load_model`.
    study: The find and control configs (a preset of this module, maybe replaced).
    workdir: Output directory: ``find/``, ``control/``, ``report.md``, ``compare/``.
    dtype: Parameter dtype, "float32" or "bfloat16".
    compare: The comparison's config, or None for no comparison. Its methods' statistics
      are added to the study's find stage (one forward pass for every method).
    setting: The preset's name, recorded in the report.

  Returns:
    A :class:`StudyResult`.
  """
  model_config = loading.load_config(model)
  find_config, control_config = study.find, study.control
  if compare is not None:
    find_config = compare_config.find_config(find_config, model_config, compare.methods)
  find_config.validate(model_config)
  control_config.validate(find_config.num_neurons(model_config), find_config.languages)
  if compare is not None:
    compare.validate(find_config.languages, model_config.num_layers)
  with locks.hold_workdir(workdir):
    timings = artifacts.Timings()
    with timings.measure("load"):
      lm = loading.load_model(model, dtype=dtype)
    with timings.measure("find"):
      found = find_stage.find_neurons(lm, find_config, os.path.join(workdir, "find"))
    with timings.measure("control"):
      control = control_stage.run_control(lm, found.expertise, control_config,
                                          os.path.join(workdir, "control"),
                                          expertise_stamp=found.stamp)
    config = {"model": model, "dtype": dtype, "setting": setting, "find": find_config,
              "control": control_config, "command": artifacts.command_line(),
              "processes": distributed.process_count()}

    def write():  # Process 0 writes the report; the others only wait for it.
      path = report.write_report(workdir, find=found, control=control, config=config,
                                 timings=timings)
      artifacts.write_run_json(workdir, stage="reproduce", config=config, timings=timings)
      return path

    path = stages.Stage(workdir, "report", inputs=[found.stamp, *control.stamps]).commit(write)
    if compare is None:
      return StudyResult(found, control, path)
    compare_dir = os.path.join(workdir, "compare")
    compare_timings = artifacts.Timings()
    with compare_timings.measure("comparison"):
      compared = compare_stage.run_comparison(lm, found, compare, compare_dir)
    compare_path = None
    if distributed.is_leader():
      compare_path = comparison_report.write_report(
          compare_dir, compared, compare, model_id=lm.model_id,
          command=config["command"], timings=compare_timings)
    logging.info("Study finished in %s", workdir)
    return StudyResult(found, control, path, compared, compare_path)
