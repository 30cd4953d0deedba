"""The whole study in one command: find neurons, analyse them, control generation, report.

  python experiments/reproduce.py                       # embedded Gemma 3 270M, < 20 min on CPU
  python experiments/reproduce.py --quick               # fewer texts, samples and conditions
  python experiments/reproduce.py --paper               # the paper's sample and pair counts
  python experiments/reproduce.py --model=/ckpt/bloom-560m --languages=en,fr,es,zh
  python experiments/reproduce.py --n=2000                # N = top 1,000 + bottom 1,000
  python experiments/reproduce.py --compare             # and AP vs LAPE vs DiffMean

Writes --workdir/report.md with its figures, and the stages' outputs in find/ and
control/; with --compare also compare/comparison.md (experiments/compare_methods.py's
comparison, on the study's find stage: one forward pass over the corpora for every
method). Re-running skips finished stages (checked by configuration) and continues an
interrupted one.
"""

import dataclasses
import os
import time

from absl import app
from absl import flags

import lang_neuron_jax as lnj
from lang_neuron_jax.runtime import cli
import multihost_flags
import study_flags
from lang_neuron_jax.runtime import artifacts, distributed, stages
from lang_neuron_jax.compare import stage as compare
from lang_neuron_jax.control import stage as control_stage
from lang_neuron_jax.find import stage as find
from lang_neuron_jax import loading, study as presets
from lang_neuron_jax.report import study as report

_MODEL, _DTYPE, _SEED = study_flags.model(), study_flags.dtype(), study_flags.seed()
_N = study_flags.n("N, the total neurons of each language's analysed and translation set, "
                   "and the main condition's: top N/2 + bottom N/2 (the paper's main "
                   "condition, limited_2000_both, is 2000). Even; capped at the model's "
                   "neurons.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/reproduce", "Output directory.")
_LANGUAGES = study_flags.languages("languages", "Languages to find neurons for (two or more).")
_TARGETS = flags.DEFINE_list("targets", None, "Languages to steer towards (default: every "
                             "--languages, English included, as the authors; English has no "
                             "translation sets, so translation skips it).")
_CORPUS = study_flags.corpus()
_QUICK = flags.DEFINE_bool("quick", False, "Small settings, same code path (minutes on CPU).")
_PAPER = flags.DEFINE_bool("paper", False, "The paper's counts: 100 unconditional samples per "
                           "condition and 100 pairs per translation set (the default uses "
                           "fewer; see the README for both times).")
_COMPARE = flags.DEFINE_bool("compare", False, "Also compare the paper's AP neurons with LAPE "
                             "neurons and mean-difference directions on the study's texts "
                             "(the comparison preset of the same scale: quick, default, or "
                             "full with --paper).")
_BATCH = flags.DEFINE_integer("batch_size", presets.DEFAULT.control.batch_size,
                              "Unconditional generation rows per call.")


def main(argv):
  del argv
  multihost_flags.initialize()
  quick = _QUICK.value
  if quick and _PAPER.value:
    raise app.UsageError("Give --quick or --paper, not both.")
  setting = "quick" if quick else "paper" if _PAPER.value else "default"
  study = presets.PRESETS[setting].replace(
      languages=tuple(_LANGUAGES.value), targets=tuple(_TARGETS.value or ()) or None,
      n=_N.value, seed=_SEED.value, batch_size=_BATCH.value, **study_flags.values(_CORPUS))
  find_config, control_config = study.find, study.control
  # What the flags alone decide is checked before the weights load.
  model_config = loading.load_config(_MODEL.value)
  compare_config = None
  if _COMPARE.value:
    preset = presets.COMPARE_PRESETS["full" if setting == "paper" else setting].compare
    compare_config = dataclasses.replace(preset, languages=control_config.languages,
                                         seed=_SEED.value)
    find_config = compare.find_config(find_config, model_config, compare_config.methods)
  find_config.validate(model_config)
  control_config.validate(find_config.num_neurons(model_config), find_config.languages)
  if compare_config:
    compare_config.validate(find_config.languages, model_config.num_layers)
  timings = {}
  start = time.perf_counter()
  lm = lnj.load_model(_MODEL.value, dtype=_DTYPE.value)
  timings["load"] = time.perf_counter() - start
  find_dir = os.path.join(_WORKDIR.value, "find")
  control_dir = os.path.join(_WORKDIR.value, "control")

  start = time.perf_counter()
  result = find.find_neurons(lm, find_config, find_dir)
  timings["find"] = time.perf_counter() - start
  start = time.perf_counter()
  control = control_stage.run_control(lm, result.expertise, control_config, control_dir,
                                      expertise_stamp=result.stamp)
  timings["control"] = time.perf_counter() - start
  config = {"model": _MODEL.value, "dtype": _DTYPE.value, "setting": setting,
            "find": find_config, "control": control_config,
            "command": ["python", "experiments/reproduce.py"] + [
                f for f in os.sys.argv[1:]]}
  config["processes"] = distributed.process_count()

  def write():  # Process 0 writes the report; the others only wait for it.
    path = report.write_report(_WORKDIR.value, find=result, control=control, config=config,
                               timings=timings)
    artifacts.write_run_json(_WORKDIR.value, stage="reproduce", config=config, timings=timings)
    return path

  path = stages.Stage(_WORKDIR.value, "report", inputs=[result.stamp, *control.stamps]).commit(write)
  if path:
    print(f"report: {path}")
  if compare_config:
    compare_dir = os.path.join(_WORKDIR.value, "compare")
    start = time.perf_counter()
    compared = compare.run_comparison(lm, result, compare_config, compare_dir)
    if distributed.is_leader():
      path = compare.write_report(compare_dir, compared, compare_config, model_id=lm.model_id,
                                  command=" ".join(config["command"]),
                                  timings={"comparison": time.perf_counter() - start})
      print(f"comparison: {path}")


if __name__ == "__main__":
  cli.run(main)
