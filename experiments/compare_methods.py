"""Compares ways to find and steer a language on one model, corpus and evaluator: AP
neurons (the paper), LAPE neurons, mean-difference directions and linear-probe (ITI)
directions.

  python experiments/compare_methods.py                      # embedded Gemma 3 270M
  python experiments/compare_methods.py --paper              # every text, wide sweeps, 100+100
  python experiments/compare_methods.py --quick              # minutes, for a check
  python experiments/compare_methods.py --methods=ap,diffmean --diffmean=1,2,4,8
  python experiments/compare_methods.py --methods=ap,lape,diffmean,probe   # with probes

Each method's strength is chosen on one half of the samples and reported on the other
(lang_neuron_jax/compare/choice.py). Writes into --workdir (find/ and the comparison; see
lang_neuron_jax/compare/stage.py) and ends with comparison.md; a re-run resumes where it
stopped.
"""

import dataclasses

from absl import flags

import lang_neuron_jax as lnj
import multihost_flags
import study_flags
from lang_neuron_jax.runtime import artifacts, cli, distributed, locks
from lang_neuron_jax import compare
from lang_neuron_jax.find import stage as find
from lang_neuron_jax.models import loading
from lang_neuron_jax import study as presets
from lang_neuron_jax.errors import UserError

_MODEL, _DTYPE, _SEED = study_flags.model(), study_flags.dtype(), study_flags.seed()
_WORKDIR = flags.DEFINE_string("workdir", "workdir/compare", "Output directory.")
_LANGUAGES = study_flags.languages("languages", "Languages to find and steer towards.")
_SCALE = study_flags.scale()
_METHODS = flags.DEFINE_list("methods", list(compare.DEFAULT_METHODS),
                             f"Methods to compare, of {list(compare.METHODS)}.")
_STRENGTHS = {m: flags.DEFINE_list(m, None, f"Strengths of {m} "
                                   f"({compare.METHODS[m].strength_name}; default: the preset's).")
              for m in compare.METHODS}
_SAMPLES = flags.DEFINE_integer("samples", None, "Held-out samples of each chosen setting and of "
                                "the baseline, which the report's figures come from (default: "
                                "the preset's).")
_CHOOSE_SAMPLES = flags.DEFINE_integer("choose_samples", None, "Samples of every setting on which "
                                       "each method's strength is chosen (default: the preset's).")
_PAIRS = flags.DEFINE_integer("translation_pairs", None, "English->X pairs per translation set, "
                              "each method at its chosen strength (0: no translation; "
                              "default: the preset's).")
_MAX_EXTRA_BROKEN = flags.DEFINE_float(
    "max_extra_broken", None, "The fluency cost: a setting is within it when its broken "
    "share (empty, degenerate or incoherent samples) is at most this share above the "
    "baseline's, in [0, 1] (default: the preset's, evaluation.cost.MAX_EXTRA_BROKEN).")
_CORPUS = study_flags.corpus()
_DIFFMEAN_LAYER = flags.DEFINE_integer("diffmean_layer", None, "Steer with mean-difference "
                                       "directions at this layer (default: the d' rule's).")
_PROBE_LAYER = flags.DEFINE_integer("probe_layer", None, "Steer with linear-probe directions "
                                    "at this layer (default: the validation-accuracy rule's).")
_LAPE_INTERVENTION = flags.DEFINE_enum("lape_intervention", "activate",
                                       ["activate", "deactivate_others"],
                                       "What LAPE's steering does to its neurons.")


def configs(model_config) -> tuple[find.FindConfig, compare.CompareConfig]:
  preset = presets.COMPARE_PRESETS[{"paper": "full"}.get(_SCALE(), _SCALE())]
  strengths = dict(preset.compare.strengths)
  for m, flag in _STRENGTHS.items():
    if flag.value is not None:
      try:
        strengths[m] = tuple(float(v) for v in flag.value)
      except ValueError:
        raise UserError(f"--{m} takes numbers, got {flag.value}.") from None
  methods = tuple(_METHODS.value)
  for m in methods:
    compare.make_method(m)  # An unknown method's error names the known ones.
  for m, flag in (("diffmean", _DIFFMEAN_LAYER), ("probe", _PROBE_LAYER)):
    if flag.value is not None and m not in methods:
      raise UserError(f"--{m}_layer is given but {m} is not among --methods={','.join(methods)}.")
  options = {"diffmean": {"layer": _DIFFMEAN_LAYER.value}, "probe": {"layer": _PROBE_LAYER.value},
             "lape": {"intervention": _LAPE_INTERVENTION.value}}
  compare_config = dataclasses.replace(
      preset.compare, languages=tuple(_LANGUAGES.value), methods=methods, seed=_SEED.value,
      strengths=tuple((m, v) for m, v in strengths.items() if m in methods),
      options=tuple((m, o) for m, o in options.items() if m in methods),
      **{k: flag.value for k, flag in (("samples", _SAMPLES), ("choose_samples", _CHOOSE_SAMPLES),
                                       ("translation_pairs", _PAIRS),
                                       ("max_extra_broken", _MAX_EXTRA_BROKEN))
         if flag.value is not None})
  find_config = compare.find_config(
      dataclasses.replace(preset.find, languages=tuple(_LANGUAGES.value), seed=_SEED.value,
                          **study_flags.values(_CORPUS)),
      model_config, methods)
  find_config.validate(model_config)
  compare_config.validate(find_config.languages, model_config.num_layers)
  return find_config, compare_config


def main(argv):
  del argv
  multihost_flags.initialize()
  timings = artifacts.Timings()
  with timings.measure("total"):
    find_config, compare_config = configs(loading.load_config(_MODEL.value))  # Before weights.
    with locks.hold_workdir(_WORKDIR.value):  # Before the weights load: a second run stops here.
      with timings.measure("load"):
        lm = lnj.load_model(_MODEL.value, dtype=_DTYPE.value)
      with timings.measure("find"):
        found = find.find_neurons(lm, find_config, f"{_WORKDIR.value}/find")
      with timings.measure("comparison"):
        result = compare.run_comparison(lm, found, compare_config, _WORKDIR.value)
  if distributed.is_leader():
    path = compare.write_report(_WORKDIR.value, result, compare_config, model_id=lm.model_id,
                                command=artifacts.command_line(), timings=timings)
    print(f"report: {path}")


if __name__ == "__main__":
  cli.run(main)
