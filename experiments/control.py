"""Controls generation with the found neurons: unconditional and translation experiments.

  python experiments/control.py --find_workdir=workdir/find --workdir=workdir/control

Reads the expertise scores written by experiments/find_neurons.py (same --model), then
writes generations (.jsonl), metrics.json, figures and run.json into --workdir.
"""

from absl import flags

import lang_neuron_jax as lnj
from lang_neuron_jax.runtime import cli
import multihost_flags
import study_flags
from lang_neuron_jax.control import stage as control_stage
from lang_neuron_jax.runtime import distributed, locks
from lang_neuron_jax.find import stage as find
from lang_neuron_jax.neurons import selection

_FIND_WORKDIR = flags.DEFINE_string("find_workdir", "workdir/find",
                                    "Work directory of experiments/find_neurons.py.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/control", "Output directory.")
_LANGUAGES = study_flags.languages("languages", "Target languages (English has no "
                                   "translation sets).")
_COUNTS = study_flags.control_counts()
_BATCH = flags.DEFINE_integer("batch_size", control_stage.ControlConfig.batch_size,
                              "Unconditional generation rows per call.")
_MODEL, _DTYPE, _SEED = study_flags.model(), study_flags.dtype(), study_flags.seed()


def main(argv):
  del argv
  multihost_flags.initialize()
  exp, stamp = find.load_scores(_FIND_WORKDIR.value)
  config = control_stage.ControlConfig(
      languages=tuple(_LANGUAGES.value), batch_size=_BATCH.value, seed=_SEED.value,
      **study_flags.values(_COUNTS))
  config.validate(exp.index.size, exp.languages)  # Before loading weights.
  with locks.hold_workdir(_WORKDIR.value):  # Before the weights load: a second run stops here.
    lm = lnj.load_model(_MODEL.value, dtype=_DTYPE.value)
    selection.check_model_id(exp.index, lm.model_id)
    metrics = control_stage.run_control(lm, exp, config, _WORKDIR.value,
                                        expertise_stamp=stamp).metrics
  if not distributed.is_leader():
    return
  for name, m in metrics["unconditional"].items():
    if m["language"] is not None:
      lo, hi = m["target_share_ci"]
      print(f"{name:22s} target {m['target_share']:6.1%} [{lo:.0%}, {hi:.0%}]  valid "
            f"{m['valid_share']:6.1%}  degenerate {m['degenerate_share']:6.1%}  "
            f"incoherent {m['incoherent_share']:6.1%}  median ppl {m['median_perplexity']}")
  for key, t in metrics["translation"].items():
    print(key, {c: (round(v["bleu"], 1), f"{v['target_share']:.0%}") for c, v in t.items()})
  print(f"results in {_WORKDIR.value}")


if __name__ == "__main__":
  cli.run(main)
