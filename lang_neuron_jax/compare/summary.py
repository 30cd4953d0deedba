"""What the comparison's unconditional and translation records say, as ``comparison.json``:
each method's best setting within the fluency cost, the strengths it translates with,
overlaps of the neuron sets and where each method edits."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from lang_neuron_jax.compare.config import CompareConfig
from lang_neuron_jax.evaluation import metrics as metrics_lib
from lang_neuron_jax.methods import base

def translation_strengths(best: Mapping[str, dict], config: CompareConfig) -> dict:
  """``{method: {language: strength}}`` each method translates with: its best setting
  within the fluency cost (:func:`best_settings`), or its weakest strength (the smallest:
  every method's effect grows with its strength) where none is within the cost."""
  sweep = config.sweep()
  return {m: {lang: best[m][lang]["strength"] if best[m][lang] else min(sweep[m])
              for lang in config.languages} for m in config.methods}


def translation_role(record: dict) -> str:
  """Translation rows are summarized per method ("baseline": no intervention)."""
  return record["kind"] or "baseline"


def best_settings(metrics: Mapping[str, dict], config: CompareConfig) -> dict:
  """Per method and language, the strength of highest valid share among those whose
  median perplexity is within ``fluency_cost`` times the baseline's (None if none is)."""
  limit = config.fluency_cost * metrics["baseline"]["median_perplexity"]
  out = {}
  for m in config.methods:
    for lang in config.languages:
      rows = [v for v in metrics.values() if v["kind"] == m and v["language"] == lang]
      ok = [v for v in rows if v["median_perplexity"] is not None
            and v["median_perplexity"] <= limit]
      best = max(ok, key=lambda v: (v["valid_share"], -v["strength"]), default=None)
      out.setdefault(m, {})[lang] = None if best is None else {
          k: best[k] for k in ("strength", "valid_share", "valid_share_ci", "target_share",
                               "target_share_ci", "median_perplexity", "significant_valid")}
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


def summarize(by_condition: Mapping[str, dict], fits: Mapping[str, base.Fitted],
              config: CompareConfig, translations: Sequence[dict] = ()) -> dict:
  """``comparison.json``: conditions, best settings, translation per method, overlaps,
  layers, fits. ``by_condition``: ``metrics.summarize_unconditional`` of the records."""
  best = best_settings(by_condition, config)
  return {"conditions": by_condition, "best": best,
          "translation_strengths": translation_strengths(best, config),
          "translation": metrics_lib.summarize_translation(translations, seed=config.seed,
                                                           role=translation_role),
          "overlap": overlaps(fits, config), "layers": where_they_edit(fits, config),
          "fits": {m: f.summary() for m, f in fits.items()},
          "sweep": config.sweep(), "fluency_cost": config.fluency_cost}
