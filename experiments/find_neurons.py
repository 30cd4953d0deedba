"""Finds language-specific neurons: responses, AP scores, top/bottom-N sets, analyses.

  python experiments/find_neurons.py --workdir=workdir/find            # embedded Gemma 3 270M
  python experiments/find_neurons.py --model=/ckpt/xglm-564M --languages=en,de,fr \\
      --n=2000 --workdir=workdir/xglm
  python experiments/find_neurons.py --model=llama2-13b --dtype=bfloat16 --dry_run \\
      --mesh_devices=8 --device_memory_gb=16             # memory plan only

Writes into --workdir (see lang_neuron_jax/find.py for the layout); a re-run resumes.
"""

from absl import flags
from absl import logging

import lang_neuron_jax as lnj
from lang_neuron_jax import cli
import multihost_flags
from lang_neuron_jax import data, distributed, find, loading, planning, responses

_MODEL = flags.DEFINE_string("model", lnj.DEFAULT_MODEL,
                             "Embedded preset, .gguf file or transformers checkpoint directory.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/find", "Output directory.")
_LANGUAGES = flags.DEFINE_list("languages", list(find.data.PAPER_LANGUAGES),
                               "Languages to score (two or more).")
_CORPUS_DIR = flags.DEFINE_string("corpus_dir", None,
                                  "Directory of {lang}.json corpora (default: the paper's).")
_TFDS_NAME = flags.DEFINE_string(
    "tfds_name", None, "Or a TFDS dataset, one config per language (e.g. lang_neuron_sense, "
    "after lang_neuron_jax.tfds_datasets.prepare(data_dir)).")
_TFDS_DATA_DIR = flags.DEFINE_string("tfds_data_dir", None, "TFDS data directory.")
_N = flags.DEFINE_integer("n", 2000, "N, the total neurons of each language's set: the top "
                         "N/2 + bottom N/2 by AP (the authors' limited_N_both; the paper's "
                         "main condition is 2000). Even; capped at the model's neurons.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Texts per forward pass.")
_MAX_LENGTH = flags.DEFINE_integer("max_length", 256, "Texts with more tokens are dropped.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Parameter dtype.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of random controls.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the memory plan (parameters and "
                             "activations per device, response files) and exit; reads no "
                             "weights, so it works for presets without embedded weights.")
_MESH_DEVICES = flags.DEFINE_integer("mesh_devices", None, "Devices to plan for (default: "
                                     "the local device count).")
_DEVICE_MEMORY_GB = flags.DEFINE_float("device_memory_gb", None,
                                       "Memory per device, for the plan's verdict.")


def dry_run():
  import jax  # pylint: disable=g-import-not-at-top

  config = loading.load_config(_MODEL.value)
  devices = _MESH_DEVICES.value or jax.local_device_count()
  corpus = data.load_corpus(_LANGUAGES.value, corpus_dir=_CORPUS_DIR.value,
                            tfds_name=_TFDS_NAME.value, tfds_data_dir=_TFDS_DATA_DIR.value)
  plan = planning.plan_memory(config, devices=devices, dtype=_DTYPE.value,
                              texts=len(corpus.texts), max_length=_MAX_LENGTH.value,
                              batch_per_device=max(1, _BATCH.value // devices))
  print(f"{_MODEL.value}, {_DTYPE.value}, {devices} devices, {len(corpus.texts)} texts, "
        f"{plan.neurons:,} neurons per text")
  print(plan.table(_DEVICE_MEMORY_GB.value))


def main(argv):
  del argv
  multihost_flags.initialize()
  if _DRY_RUN.value:
    dry_run()
    return
  config = find.FindConfig(languages=tuple(_LANGUAGES.value), corpus_dir=_CORPUS_DIR.value,
                           tfds_name=_TFDS_NAME.value, tfds_data_dir=_TFDS_DATA_DIR.value,
                           max_length=_MAX_LENGTH.value, batch_size=_BATCH.value,
                           n=_N.value, seed=_SEED.value)
  config.validate(loading.load_config(_MODEL.value))  # Before loading weights.
  lm = lnj.load_model(_MODEL.value, dtype=_DTYPE.value)
  model_id = f"{_MODEL.value}|{_DTYPE.value}|" + responses.fingerprint(config=lm.config.to_dict())
  result = find.find_neurons(lm, config, _WORKDIR.value, model_id=model_id)
  if not distributed.is_leader():
    return
  a = result.analysis
  logging.info("Dropped %d texts over %d tokens.", result.dropped_texts, _MAX_LENGTH.value)
  print(f"neurons scored: {result.expertise.index.size}; texts: {len(result.corpus.texts)}")
  print(f"max overlap between languages: top {a['max_overlap_between_languages']['top']:.1%}, "
        f"bottom {a['max_overlap_between_languages']['bottom']:.1%}")
  print(f"sufficiency: language ID from the {a['sufficiency']['neurons']} selected neurons "
        f"{a['sufficiency']['selected']:.1%}, random {a['sufficiency']['random']:.1%}")
  print(f"results in {_WORKDIR.value}")


if __name__ == "__main__":
  cli.run(main)
