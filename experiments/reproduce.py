"""The whole study in one command: find neurons, analyse them, control generation, report.

  python experiments/reproduce.py                       # embedded Gemma 3 270M, < 20 min on CPU
  python experiments/reproduce.py --quick               # fewer texts, samples and conditions
  python experiments/reproduce.py --paper               # the paper's sample and pair counts
  python experiments/reproduce.py --model=/ckpt/bloom-560m --languages=en,fr,es,zh
  python experiments/reproduce.py --n=2000                # N = top 1,000 + bottom 1,000

Writes --workdir/report.md with its figures, and the stages' outputs in find/ and
control/. Re-running skips finished stages (checked by configuration) and continues an
interrupted one.
"""

import os
import time

from absl import app
from absl import flags

import lang_neuron_jax as lnj
from lang_neuron_jax import cli
import multihost_flags
from lang_neuron_jax import (artifacts, control, control_stage, distributed, find, loading,
                             report, responses)

_MODEL = flags.DEFINE_string("model", lnj.DEFAULT_MODEL,
                             "Embedded preset, .gguf file or transformers checkpoint directory.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/reproduce", "Output directory.")
_LANGUAGES = flags.DEFINE_list("languages", list(find.data.PAPER_LANGUAGES),
                               "Languages to find neurons for (two or more).")
_TARGETS = flags.DEFINE_list("targets", None, "Languages to steer towards (default: every "
                             "--languages, English included, as the authors; English has no "
                             "translation sets, so translation skips it).")
_CORPUS_DIR = flags.DEFINE_string("corpus_dir", None, "Directory of {lang}.json corpora.")
_TFDS_NAME = flags.DEFINE_string(
    "tfds_name", None, "Or a TFDS dataset, one config per language (e.g. lang_neuron_sense, "
    "after lang_neuron_jax.tfds_datasets.prepare(data_dir)).")
_TFDS_DATA_DIR = flags.DEFINE_string("tfds_data_dir", None, "TFDS data directory.")
_QUICK = flags.DEFINE_bool("quick", False, "Small settings, same code path (minutes on CPU).")
_PAPER = flags.DEFINE_bool("paper", False, "The paper's counts: 100 unconditional samples per "
                           "condition and 100 pairs per translation set (the default uses "
                           "fewer; see the README for both times).")
_N = flags.DEFINE_integer("n", control.MAIN_N, "N, the total neurons of each language's "
                          "analysed and translation set: top N/2 + bottom N/2 (the paper's "
                          "main condition, limited_2000_both, is 2000). Even; capped at the "
                          "model's neurons.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Parameter dtype.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Rows per generation call.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")


# Counts of each setting: (texts per language, unconditional samples, perplexity samples,
# new tokens, sweep, translation pairs, translation tokens). The default keeps every text,
# neuron and condition of the paper with fewer samples and pairs, so that it fits in 20
# minutes on a 2-core CPU; --quick is the same code on a small scale.
SETTINGS = {
    "quick": (30, 6, 3, 32, (20, 2_000, 200_000), 3, 48),
    "default": (None, 24, 6, 64, control.UNCONDITIONAL_NS, 12, 128),
    "paper": (None, 100, 20, 64, control.UNCONDITIONAL_NS, 100, 128),
}


def main(argv):
  del argv
  multihost_flags.initialize()
  quick = _QUICK.value
  if quick and _PAPER.value:
    raise app.UsageError("Give --quick or --paper, not both.")
  setting = "quick" if quick else "paper" if _PAPER.value else "default"
  positives, samples, perplexity_samples, new_tokens, ns, pairs, translation_tokens = \
      SETTINGS[setting]
  find_config = find.FindConfig(
      languages=tuple(_LANGUAGES.value), corpus_dir=_CORPUS_DIR.value,
      tfds_name=_TFDS_NAME.value, tfds_data_dir=_TFDS_DATA_DIR.value, n=_N.value,
      seed=_SEED.value, positives_per_language=positives)
  targets = tuple(_TARGETS.value or _LANGUAGES.value)
  control_config = control_stage.ControlConfig(
      languages=targets, samples=samples, perplexity_samples=perplexity_samples,
      max_new_tokens=new_tokens, ns=ns, main_n=_N.value, translation_n=_N.value,
      translation_pairs=pairs, translation_tokens=translation_tokens,
      batch_size=_BATCH.value, seed=_SEED.value)
  # What the flags alone decide is checked before the weights load.
  model_config = loading.load_config(_MODEL.value)
  find_config.validate(model_config)
  control_config.validate(find_config.num_neurons(model_config), find_config.languages)
  timings = {}
  start = time.perf_counter()
  lm = lnj.load_model(_MODEL.value, dtype=_DTYPE.value)
  timings["load"] = time.perf_counter() - start
  model_id = f"{_MODEL.value}|{_DTYPE.value}|" + responses.fingerprint(config=lm.config.to_dict())
  find_dir = os.path.join(_WORKDIR.value, "find")
  control_dir = os.path.join(_WORKDIR.value, "control")

  start = time.perf_counter()
  result = find.find_neurons(lm, find_config, find_dir, model_id=model_id)
  timings["find"] = time.perf_counter() - start
  start = time.perf_counter()
  stamp = artifacts.read_json(os.path.join(find_dir, "expertise.json"))
  control_stage.run_control(lm, result.expertise, control_config, control_dir,
                            model_id=model_id, expertise_stamp=stamp)
  timings["control"] = time.perf_counter() - start
  config = {"model": _MODEL.value, "dtype": _DTYPE.value, "setting": setting,
            "find": find_config, "control": control_config,
            "command": ["python", "experiments/reproduce.py"] + [
                f for f in os.sys.argv[1:]]}
  if not distributed.is_leader():
    return  # Process 0 writes the report.
  config["processes"] = distributed.process_count()
  path = report.write_report(_WORKDIR.value, find_dir=find_dir, control_dir=control_dir,
                             config=config, timings=timings)
  artifacts.write_run_json(_WORKDIR.value, stage="reproduce", config=config, timings=timings)
  print(f"report: {path}")


if __name__ == "__main__":
  cli.run(main)
