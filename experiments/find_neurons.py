"""Finds language-specific neurons: responses, AP scores, top/bottom-N sets, analyses.

  python experiments/find_neurons.py --workdir=workdir/find            # embedded Gemma 3 270M
  python experiments/find_neurons.py --model=/ckpt/xglm-564M --languages=en,de,fr \\
      --n=2000 --workdir=workdir/xglm
  python experiments/find_neurons.py --model=llama2-13b --dtype=bfloat16 --dry_run \\
      --mesh_devices=8 --device_memory_gb=16             # memory plan only

Writes into --workdir (see lang_neuron_jax/find/stage.py for the layout); a re-run resumes.
"""

from absl import flags
from absl import logging

import lang_neuron_jax as lnj
from lang_neuron_jax.runtime import cli
import multihost_flags
import study_flags
from lang_neuron_jax.data import corpora as data
from lang_neuron_jax.runtime import distributed, locks, sharding
from lang_neuron_jax.find import stage as find
from lang_neuron_jax.models import loading, planning

_MODEL, _DTYPE, _SEED, _N = (study_flags.model(), study_flags.dtype(), study_flags.seed(),
                             study_flags.n())
_WORKDIR = flags.DEFINE_string("workdir", "workdir/find", "Output directory.")
_LANGUAGES = study_flags.languages("languages", "Languages to score (two or more).")
_CORPUS = study_flags.corpus()
_BATCH = flags.DEFINE_integer("batch_size", find.FindConfig.batch_size, "Texts per forward pass.")
_MAX_LENGTH = flags.DEFINE_integer("max_length", find.FindConfig.max_length,
                                   "Texts with more tokens are dropped.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the memory plan (parameters and "
                             "activations per device, response files) and exit; reads no "
                             "weights, so it works for presets without embedded weights.")
_MESH_DEVICES = flags.DEFINE_integer("mesh_devices", None, "Devices to plan for (default: "
                                     "the local device count).")
_DEVICE_MEMORY_GB = flags.DEFINE_float("device_memory_gb", None,
                                       "Memory per device, for the plan's verdict (default: "
                                       "the device's limit; on CPU, the host's available "
                                       "memory shared by its devices).")
_LAYOUT = flags.DEFINE_enum("layout", "data", ["data", "model"], "With several devices, "
                            "where a batch's texts go: split over them (data) or seen whole "
                            "by each, the weights never moving (model: for a sharded model "
                            "on one host's CPU devices). See lang_neuron_jax.runtime.sharding.")


def plan(config, texts: int, devices: int):
  """The memory plan of this run's forward on ``devices`` devices."""
  return planning.plan_memory(config, devices=devices, dtype=_DTYPE.value, texts=texts,
                              max_length=_MAX_LENGTH.value,
                              batch_per_device=max(1, _BATCH.value // devices),
                              layout=_LAYOUT.value)


def dry_run():
  import jax  # pylint: disable=g-import-not-at-top

  config = loading.load_config(_MODEL.value)
  devices = _MESH_DEVICES.value or jax.local_device_count()
  corpus = data.load_corpus(_LANGUAGES.value, **study_flags.values(_CORPUS))
  memory_plan = plan(config, len(corpus.texts), devices)
  print(f"{_MODEL.value}, {_DTYPE.value}, {devices} devices, {len(corpus.texts)} texts, "
        f"{memory_plan.neurons:,} neurons per text")
  print(memory_plan.table(_DEVICE_MEMORY_GB.value))


def check_fits(config) -> None:
  """With several local devices or ``--device_memory_gb``: stops (one line) before any
  weight is read when the plan does not fit. A single device with no stated memory
  skips the plan: its compilation costs seconds a small model's run need not pay."""
  import jax  # pylint: disable=g-import-not-at-top

  devices = jax.local_device_count()
  if devices == 1 and _DEVICE_MEMORY_GB.value is None:
    return
  memory_gb = _DEVICE_MEMORY_GB.value or planning.device_memory_gb(devices)[0]
  corpus = data.load_corpus(_LANGUAGES.value, **study_flags.values(_CORPUS))
  planning.check_fits(plan(config, len(corpus.texts), devices), memory_gb,
                      what=f"{_MODEL.value} in {_DTYPE.value}")


def main(argv):
  del argv
  multihost_flags.initialize()
  if _DRY_RUN.value:
    dry_run()
    return
  config = find.FindConfig(languages=tuple(_LANGUAGES.value), max_length=_MAX_LENGTH.value,
                           batch_size=_BATCH.value, n=_N.value, seed=_SEED.value,
                           **study_flags.values(_CORPUS))
  model_config = loading.load_config(_MODEL.value)
  config.validate(model_config)  # Before loading weights.
  check_fits(model_config)
  with locks.hold_workdir(_WORKDIR.value):  # Before the weights load: a second run stops here.
    # Several devices: each weight is split over them as it is read (sharding.py).
    mesh = sharding.local_mesh()
    lm = lnj.load_model(_MODEL.value, dtype=_DTYPE.value,
                        mesh=mesh if mesh.devices.size > 1 else None, layout=_LAYOUT.value)
    result = find.find_neurons(lm, config, _WORKDIR.value)
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
