"""Controls generation with the found neurons: unconditional and translation experiments.

  python experiments/control.py --find_workdir=workdir/find --workdir=workdir/control

Reads the expertise scores written by experiments/find_neurons.py (same --model), then
writes generations (.jsonl), metrics.json, figures and run.json into --workdir.
"""

import os

from absl import flags

import lang_neuron_jax as lnj
from lang_neuron_jax import cli
import multihost_flags
from lang_neuron_jax import (artifacts, control, control_stage, data, distributed, responses,
                             selection)

_MODEL = flags.DEFINE_string("model", lnj.DEFAULT_MODEL,
                             "Embedded preset, .gguf file or transformers checkpoint directory.")
_FIND_WORKDIR = flags.DEFINE_string("find_workdir", "workdir/find",
                                    "Work directory of experiments/find_neurons.py.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/control", "Output directory.")
_LANGUAGES = flags.DEFINE_list("languages", list(data.PAPER_LANGUAGES),
                               "Target languages (English has no translation sets).")
_SAMPLES = flags.DEFINE_integer("samples", 100, "Unconditional samples per condition.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 64, "Unconditional new tokens.")
_NS = flags.DEFINE_list("ns", [str(n) for n in control.UNCONDITIONAL_NS],
                        "N of the sweep, each the total of top N/2 + bottom N/2 neurons "
                        "(even; capped at the model's neuron count).")
_MAIN_N = flags.DEFINE_integer("main_n", control.MAIN_N, "The main condition's N: its top "
                               "half alone, bottom half alone and N random are the controls.")
_PAIRS = flags.DEFINE_integer("translation_pairs", 100, "Pairs per translation set.")
_TRANSLATION_N = flags.DEFINE_integer("translation_n", control.MAIN_N,
                                      "N (top N/2 + bottom N/2) fixed for translation.")
_TRANSLATION_TOKENS = flags.DEFINE_integer("translation_tokens", 128, "Greedy new tokens.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Generation rows per call.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Parameter dtype.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")


def main(argv):
  del argv
  multihost_flags.initialize()
  exp_path = os.path.join(_FIND_WORKDIR.value, "expertise.npz")
  if not os.path.exists(exp_path):
    raise FileNotFoundError(f"{exp_path} does not exist; run experiments/find_neurons.py "
                            f"--workdir={_FIND_WORKDIR.value} first.")
  exp = selection.Expertise.load(exp_path)
  config = control_stage.ControlConfig(
      languages=tuple(_LANGUAGES.value), samples=_SAMPLES.value, max_new_tokens=_MAX_NEW.value,
      ns=tuple(int(n) for n in _NS.value), main_n=_MAIN_N.value,
      translation_pairs=_PAIRS.value, translation_n=_TRANSLATION_N.value,
      translation_tokens=_TRANSLATION_TOKENS.value, batch_size=_BATCH.value, seed=_SEED.value)
  config.validate(exp.index.size, exp.languages)  # Before loading weights.
  lm = lnj.load_model(_MODEL.value, dtype=_DTYPE.value)
  model_id = f"{_MODEL.value}|{_DTYPE.value}|" + responses.fingerprint(config=lm.config.to_dict())
  selection.check_model_id(exp.index, model_id)
  stamp = artifacts.read_json(os.path.join(_FIND_WORKDIR.value, "expertise.json"))
  metrics = control_stage.run_control(lm, exp, config, _WORKDIR.value, model_id=model_id,
                                      expertise_stamp=stamp)
  if not distributed.is_leader():
    return
  for name, m in metrics["unconditional"].items():
    if m["language"] is not None:
      lo, hi = m["target_share_ci"]
      print(f"{name:22s} target {m['target_share']:6.1%} [{lo:.0%}, {hi:.0%}]  valid "
            f"{m['valid_share']:6.1%}  degenerate {m['degenerate_share']:6.1%}  "
            f"median ppl {m['median_perplexity']}")
  for key, t in metrics["translation"].items():
    print(key, {c: (round(v["bleu"], 1), f"{v['target_share']:.0%}") for c, v in t.items()})
  print(f"results in {_WORKDIR.value}")


if __name__ == "__main__":
  cli.run(main)
