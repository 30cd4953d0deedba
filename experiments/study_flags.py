"""Flags shared by the binaries, with their defaults taken from the configs.

Each default is written once, in the dataclasses (``find.FindConfig``,
``control_stage.ControlConfig``); a binary calls the definers of the flags it uses (so
its ``--help`` lists only those) and defines the ones that are its own (work directories,
its batch size, its switches).
"""

from absl import flags

import lang_neuron_jax as lnj
from lang_neuron_jax.errors import UserError
from lang_neuron_jax.control import stage as control_stage
from lang_neuron_jax.find import stage as find

_FIND = find.FindConfig()
_CONTROL = control_stage.ControlConfig()


def scale():
  """``--quick`` and ``--paper``, one spelling for both binaries; returns a function that
  gives the chosen scale: "quick", "default" or "paper" (a UserError if both are given)."""
  quick = flags.DEFINE_bool("quick", False, "Small settings, same code path (minutes on CPU).")
  paper = flags.DEFINE_bool("paper", False, "The paper's counts: 100 unconditional samples "
                            "per condition, 100 pairs per translation set (and, in the "
                            "comparison, every text and the wide sweeps).")

  def chosen() -> str:
    if quick.value and paper.value:
      raise UserError("Give --quick or --paper, not both.")
    return "quick" if quick.value else "paper" if paper.value else "default"

  return chosen


def model():
  """``--model``."""
  return flags.DEFINE_string("model", lnj.DEFAULT_MODEL, "Embedded preset, .gguf file or "
                             "transformers checkpoint directory.")


def dtype():
  """``--dtype``."""
  return flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Parameter dtype.")


def seed():
  """``--seed``."""
  return flags.DEFINE_integer("seed", _FIND.seed, "Seed (random controls, classifier split; "
                              "sample row r draws from fold_in(seed, r)).")


def n(help_text: str = "N, the total neurons of each language's set: the top N/2 + bottom "
      "N/2 by AP (the authors' limited_N_both; the paper's main condition is 2000). Even; "
      "capped at the model's neurons."):
  """``--n``."""
  return flags.DEFINE_integer("n", _FIND.n, help_text)


def languages(name: str, help_text: str):
  """A ``--{name}`` list of languages, by default the paper's six."""
  return flags.DEFINE_list(name, list(_FIND.languages), help_text)


def corpus(tfds: bool = True) -> dict:
  """``--corpus_dir`` (and ``--tfds_name``, ``--tfds_data_dir``), keyed by their
  ``FindConfig`` fields; read them with :func:`values`."""
  out = {"corpus_dir": flags.DEFINE_string("corpus_dir", _FIND.corpus_dir, "Directory of "
                                           "{lang}.json corpora (default: the paper's).")}
  if tfds:
    out["tfds_name"] = flags.DEFINE_string(
        "tfds_name", _FIND.tfds_name, "Or a TFDS dataset, one config per language (e.g. "
        "lang_neuron_sense, after lang_neuron_jax.data.tfds.prepare(data_dir)).")
    out["tfds_data_dir"] = flags.DEFINE_string("tfds_data_dir", _FIND.tfds_data_dir,
                                               "TFDS data directory.")
  return out


def control_counts() -> dict:
  """The control experiment's count flags (defaults: the paper's, from ``ControlConfig``),
  keyed by their fields; read them with :func:`values`."""
  return {
      "samples": flags.DEFINE_integer("samples", _CONTROL.samples,
                                      "Unconditional samples per condition."),
      "max_new_tokens": flags.DEFINE_integer("max_new_tokens", _CONTROL.max_new_tokens,
                                             "Unconditional new tokens."),
      "ns": flags.DEFINE_list("ns", [str(v) for v in _CONTROL.ns],
                              "N of the sweep, each the total of top N/2 + bottom N/2 neurons "
                              "(even; capped at the model's neuron count)."),
      "main_n": flags.DEFINE_integer("main_n", _CONTROL.main_n, "The main condition's N: its "
                                     "top half alone, bottom half alone and N random are the "
                                     "controls."),
      "translation_pairs": flags.DEFINE_integer("translation_pairs", _CONTROL.translation_pairs,
                                                "Pairs per translation set."),
      "translation_n": flags.DEFINE_integer("translation_n", _CONTROL.translation_n,
                                            "N (top N/2 + bottom N/2) fixed for translation."),
      "translation_tokens": flags.DEFINE_integer("translation_tokens",
                                                 _CONTROL.translation_tokens,
                                                 "Greedy new tokens."),
  }


def values(defined: dict) -> dict:
  """The values of a dict of flags, as config fields (``ns`` as a tuple of ints)."""
  out = {k: f.value for k, f in defined.items()}
  if "ns" in out:
    out["ns"] = tuple(int(v) for v in out["ns"])
  return out
