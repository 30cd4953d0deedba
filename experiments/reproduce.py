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

from absl import flags

import multihost_flags
import study_flags
from lang_neuron_jax import study as study_lib
from lang_neuron_jax.runtime import cli

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
_SCALE = study_flags.scale()
_COMPARE = flags.DEFINE_bool("compare", False, "Also compare the paper's AP neurons with LAPE "
                             "neurons and mean-difference directions on the study's texts "
                             "(the comparison preset of the same scale: quick, default, or "
                             "full with --paper).")
_BATCH = flags.DEFINE_integer("batch_size", study_lib.DEFAULT.control.batch_size,
                              "Unconditional generation rows per call.")


def main(argv):
  del argv
  multihost_flags.initialize()
  setting = _SCALE()
  study = study_lib.PRESETS[setting].replace(
      languages=tuple(_LANGUAGES.value), targets=tuple(_TARGETS.value or ()) or None,
      n=_N.value, seed=_SEED.value, batch_size=_BATCH.value, **study_flags.values(_CORPUS))
  compare_config = None
  if _COMPARE.value:
    preset = study_lib.COMPARE_PRESETS["full" if setting == "paper" else setting].compare
    compare_config = dataclasses.replace(preset, languages=study.control.languages,
                                         seed=_SEED.value)
  result = study_lib.run_study(_MODEL.value, study, _WORKDIR.value, dtype=_DTYPE.value,
                             compare=compare_config, setting=setting)
  if result.report:
    print(f"report: {result.report}")
  if result.comparison_report:
    print(f"comparison: {result.comparison_report}")


if __name__ == "__main__":
  cli.run(main)
