"""What the comparison's unconditional and translation records say, as ``comparison.json``:
each method's setting chosen on the choosing half of the samples and its figures on the
held-out half (:mod:`~lang_neuron_jax.compare.choice`), the strengths it translates with,
overlaps of the neuron sets and where each method edits."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from lang_neuron_jax.compare import choice
from lang_neuron_jax.compare.config import CompareConfig
from lang_neuron_jax.control import conditions
from lang_neuron_jax.evaluation import cost, metrics as metrics_lib
from lang_neuron_jax.methods import base


def translation_strengths(best: Mapping[str, dict], config: CompareConfig) -> dict:
  """``{method: {language: strength}}`` each method translates with: its setting chosen
  on the choosing half (:func:`best_settings`), or its weakest strength (the smallest:
  every method's effect grows with its strength) where none is within the cost."""
  sweep = config.sweep()
  return {m: {lang: best[m][lang]["strength"] if best[m][lang] else min(sweep[m])
              for lang in config.languages} for m in config.methods}


def translation_role(record: dict) -> str:
  """Translation rows are summarized per method ("baseline": no intervention)."""
  return record["kind"] or "baseline"


def best_settings(metrics: Mapping[str, dict], config: CompareConfig) -> dict:
  """Per method and language, the setting :func:`~lang_neuron_jax.compare.choice.choose`
  picks from ``metrics`` (the choosing half's ``summarize_unconditional``): the highest
  valid share within the fluency cost (None if no setting is within it)."""
  return choice.best_settings(metrics, config.methods, config.languages,
                              config.max_extra_broken)


def held_out_figures(chosen: Mapping[str, dict], held_out: Mapping[str, dict],
                     config: CompareConfig) -> dict:
  """``{method: {language: fields | None}}``: each chosen setting's figures on the held-out
  half (``held_out``: its ``summarize_unconditional``, tests Holm-adjusted within each
  method), with ``within_cost``: whether it is within the fluency cost there too (at the
  config's ``max_extra_broken``, against the held-out baseline)."""
  out = {}
  for m in config.methods:
    for lang in config.languages:
      c = chosen[m][lang]
      v = None if c is None else held_out[conditions.method_condition(lang, m, c["strength"]).name]
      out.setdefault(m, {})[lang] = None if v is None else {
          **{k: v[k] for k in choice.FIELDS},
          "within_cost": cost.within_cost(v, held_out["baseline"],
                                          max_extra_broken=config.max_extra_broken)}
  return out


def overlaps(fits: Mapping[str, base.Fitted], config: CompareConfig) -> dict:
  """Per language, how much every two neuron methods' sets share, each method at the
  middle of its sweep: Jaccard (intersection over union) and the overlap coefficient
  (intersection over the smaller set: the share of the smaller set the other holds)."""
  sweep = config.sweep()
  middle = {m: sweep[m][len(sweep[m]) // 2] for m in fits}
  sets = {m: {lang: fits[m].neurons(lang, middle[m]) for lang in config.languages}
          for m in fits}
  neuron_methods = [m for m in fits if all(s is not None for s in sets[m].values())]
  out = {}
  for i, a in enumerate(neuron_methods):
    for b in neuron_methods[i + 1:]:
      pair = {}
      for lang in config.languages:
        x, y = sets[a][lang], sets[b][lang]
        pair[lang] = {"jaccard": len(x & y) / max(len(x | y), 1),
                      "overlap": len(x & y) / max(min(len(x), len(y)), 1),
                      "sizes": [len(x), len(y)]}
      out[f"{a}@{middle[a]:g} vs {b}@{middle[b]:g}"] = pair
  return out


def where_they_edit(fits: Mapping[str, base.Fitted], config: CompareConfig) -> dict:
  """Per method, units edited per layer (summed over languages) at the middle strength."""
  sweep = config.sweep()
  return {m: np.sum([fits[m].layers(lang, sweep[m][len(sweep[m]) // 2])
                     for lang in config.languages], axis=0).tolist() for m in fits}


def summarize(choosing: Mapping[str, dict], held_out: Mapping[str, dict],
              fits: Mapping[str, base.Fitted], config: CompareConfig,
              translations: Sequence[dict] = ()) -> dict:
  """``comparison.json``.

  Args:
    choosing: ``metrics.summarize_unconditional`` of the choosing half (every setting).
    held_out: The same of the held-out half (the baseline and the chosen settings).
    fits: The fitted methods (for overlaps, layers and their summaries).
    translations: The evaluated translation records.

  Returns:
    ``conditions`` (the choosing half) and ``held_out``, their tests Holm-adjusted within
    each method; ``chosen_on`` (each method's chosen setting on the choosing half) and
    ``best`` (the same settings on the held-out half: the figures to report);
    translation per method (tests Holm-adjusted within each method); the split,
    overlaps, layers, fits, sweeps and the fluency cost's bound (``max_extra_broken``).
  """
  choosing = choice.holm_within_methods(choosing)
  held_out = choice.holm_within_methods(held_out)
  chosen = best_settings(choosing, config)
  choosing_indices, held_out_indices = config.split()
  return {"conditions": choosing, "held_out": held_out, "chosen_on": chosen,
          "best": held_out_figures(chosen, held_out, config),
          "translation_strengths": translation_strengths(chosen, config),
          "translation": choice.holm_within_roles(metrics_lib.summarize_translation(
              translations, seed=config.seed, role=translation_role)),
          "split": {"seed": config.seed, "choosing": list(choosing_indices),
                    "held_out": list(held_out_indices)},
          "tests": "McNemar's exact test against the baseline on the same samples, "
                   "Holm-adjusted within each method's own tests of the table",
          "overlap": overlaps(fits, config), "layers": where_they_edit(fits, config),
          "fits": {m: f.summary() for m, f in fits.items()},
          "sweep": config.sweep(), "max_extra_broken": config.max_extra_broken}
