"""The comparison's figures and ``comparison.md``, from ``comparison.json``'s summary."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from lang_neuron_jax.compare import choice
from lang_neuron_jax.evaluation import cost
from lang_neuron_jax.report import figures
from lang_neuron_jax.report.tables import share
from lang_neuron_jax.runtime import artifacts


def _share(v: dict, key: str) -> str:
  """A share cell of ``v`` (``key`` "valid_share" or "target_share") with its interval and
  its test's mark (:func:`~lang_neuron_jax.report.tables.share`)."""
  return share(v[key], v[f"{key}_ci"], v.get(f"significant_{key.removesuffix('_share')}", False))


def draw(summary: dict, workdir: str) -> None:
  """pareto.png, method_layers.png and the translation figures.

  pareto.png plots what the fluency cost bounds: each setting's broken share (x) against
  its valid share (y), on the choosing half the choice was made on, with the bound (the
  baseline's broken share plus ``max_extra_broken``) as a vertical line, so a point left
  of it is exactly a setting :func:`lang_neuron_jax.evaluation.cost.within_cost` accepts.
  """
  by_condition = summary["conditions"]
  base = by_condition["baseline"]
  curves = {}
  for v in by_condition.values():
    if v["kind"] is None:
      continue
    curves.setdefault(v["language"], {}).setdefault(v["kind"], []).append(
        (v["broken_share"], v["valid_share"], v["valid_share_ci"], v["strength"]))
  baseline_valid = {l: b["valid_share"] for l, b in base["by_language"].items()}
  figures.pareto(curves, os.path.join(workdir, "pareto.png"),
                 max_broken=base["broken_share"] + summary["max_extra_broken"],
                 baseline=baseline_valid, baseline_broken=base["broken_share"])
  figures.layer_distribution({m: np.asarray(c) for m, c in summary["layers"].items()},
                             os.path.join(workdir, "method_layers.png"),
                             title="Units edited per layer, all target languages, middle strength")
  for key, label in (("bleu", "BLEU"), ("valid_share", "valid share in target language")):
    if summary["translation"]:
      figures.paired_bars({k: {m: (v[key], v[f"{key}_ci"]) for m, v in t.items()}
                           for k, t in summary["translation"].items()},
                          os.path.join(workdir, f"translation_{key}.png"), ylabel=label,
                          title=f"Translation: {label} per method (95% CI)")


def translation_lines(summary: dict, config) -> list[str]:
  """The report's translation section: per set, each method's valid share, BLEU and chrF
  next to no intervention's."""
  if not summary["translation"]:
    return []
  roles = ["baseline", *config.methods]
  strengths = summary["translation_strengths"]
  lines = ["", "## Translation", "",
           f"English->X, greedy, the first {config.translation_pairs} pairs of each set; each "
           "method at its setting chosen on the unconditional choosing half (its weakest "
           "where none is within the cost), so no pair took part in the choice: "
           + "; ".join(f"`{m}` " + ", ".join(f"{l} {v:g}" for l, v in strengths[m].items()
                                             if any(k.endswith(f'_en_{l}') for k in summary['translation']))
                       for m in config.methods) + ". Cells: valid share [95% interval] "
           "(`*`: differs from no intervention, McNemar, Holm within each method's sets), BLEU, chrF.", "",
           "| set | " + " | ".join("none" if r == "baseline" else r for r in roles) + " |",
           "|---|" + "---|" * len(roles)]
  for key, by_role in summary["translation"].items():
    cells = []
    for r in roles:
      v = by_role.get(r)
      cells.append("-" if v is None else
                   f"{_share(v, 'valid_share')}, "
                   f"BLEU {v['bleu']:.1f}, chrF {v['chrf']:.1f}")
    lines.append(f"| {key} | " + " | ".join(cells) + " |")
  lines += ["", "![translation BLEU](translation_bleu.png)"]
  return lines


def _best_cell(b: dict | None) -> str:
  """A best-setting cell: its valid share, interval and mark, "@ strength"."""
  return "none within cost" if b is None else f"{_share(b, 'valid_share')} @ {b['strength']:g}"


def _broken_cell(b: dict | None) -> str:
  """The held-out broken share of a chosen setting with its interval, flagged where it is
  over the cost there (the choice saw only the choosing half)."""
  if b is None:
    return "-"
  return share(b["broken_share"], b["broken_share_ci"]) + (
      "" if b["within_cost"] else " (over the cost)")


def best_lines(s: dict, config) -> list[str]:
  """The chosen settings: on the held-out half (the figures to quote), on the choosing
  half (optimistic), and their held-out broken share (what the fluency cost bounds)."""
  cond, held = s["conditions"], s["held_out"]
  languages = " | ".join(config.languages)
  rule = "|---|" + "---|" * len(config.languages)
  lines = [
      f"## Best setting per method within the fluency cost "
      f"({choice.describe_cost(cond['baseline'], config.max_extra_broken)}, on the choosing "
      "half)",
      "",
      f"Each method's strength per language is chosen on the choosing half "
      f"({config.choose_samples} samples per setting): the highest valid share within the "
      f"fluency cost. The table shows the chosen setting on the held-out half "
      f"({config.samples} other samples, never used to choose), with `*` from McNemar "
      f"against the baseline's held-out samples, Holm-adjusted within the method's row.",
      "", f"| method | {languages} |", rule]
  lines += [f"| {m} | " + " | ".join(_best_cell(s["best"][m][l]) for l in config.languages)
            + " |" for m in config.methods]
  base_valid = held["baseline"]["by_language"]
  lines += ["| none | " + " | ".join(
      share(base_valid[l]["valid_share"], base_valid[l]["valid_share_ci"]) if l in base_valid
      else "-" for l in config.languages) + " |", "",
            "The same settings on the choosing half: the maximum over each sweep, on the "
            "samples it was chosen on (optimistic, the more so the more settings a method "
            "has; `*` Holm-adjusted within each method's conditions):", "",
            f"| method, choosing half | {languages} |", rule]
  lines += [f"| {m} | " + " | ".join(_best_cell(s["chosen_on"][m][l]) for l in config.languages)
            + " |" for m in config.methods]
  lines += ["", "Broken share (empty, degenerate or incoherent samples) of the chosen "
            "settings on the held-out half, \"(over the cost)\" where it is more than "
            f"{100 * config.max_extra_broken:g} points above the baseline's there "
            f"({share(held['baseline']['broken_share'], held['baseline']['broken_share_ci'])}):",
            "", f"| method, held-out broken share | {languages} |", rule]
  lines += [f"| {m} | " + " | ".join(_broken_cell(s["best"][m][l]) for l in config.languages)
            + " |" for m in config.methods]
  return lines


def write_report(workdir: str, result, config, *,
                 model_id: str, command: str = "", timings: Mapping[str, float] | None = None
                 ) -> str:
  """``comparison.md``: each method's setting per language chosen on one half of the
  samples and reported on the other, every condition, overlaps and where each method
  edits.

  Args:
    result: The :class:`~lang_neuron_jax.compare.stage.CompareResult`.
    config: Its :class:`~lang_neuron_jax.compare.config.CompareConfig`.
  """
  s = result.summary
  names = {m: method.strength_name for m, method in config.methods_built().items()}
  cond = s["conditions"]
  lines = [
      "# Finding and steering a language: AP neurons, LAPE neurons, mean-difference directions",
      "",
      f"Model `{model_id}`; unconditional samples of {config.max_new_tokens} tokens at "
      f"temperature {config.temperature}, the same random numbers in every condition, split "
      f"by a permutation of the sample indices fixed by the seed ({config.seed}): "
      f"{config.choose_samples} per setting to choose each method's strength, "
      f"{config.samples} held out to report the chosen settings and the baseline on. "
      "Every sample's perplexity and coherence under the unintervened model.",
      "",
      "Methods and strengths: " + "; ".join(
          f"`{m}` {names[m]} in {list(v)}" for m, v in s["sweep"].items()),
      "",
      "*Valid*: in the target language (language ID) and reads as text. *Broken*: does "
      "not read as text, in any language: empty, degenerate or incoherent "
      "(lang_neuron_jax/evaluation/metrics.py). "
      "Intervals: 95% Wilson; `*`: differs from no intervention by McNemar's exact test on "
      "the same samples, Holm-adjusted within each method's own tests of the table (its "
      "conditions, languages or sets), so a method's marks do not change with the other "
      "methods compared.",
      "",
      *best_lines(s, config), "",
      "![pareto](pareto.png)", "", "## Every condition (choosing half)", "",
      f"† over the fluency cost (broken share more than {100 * config.max_extra_broken:g} "
      f"points above the baseline's {cond['baseline']['broken_share']:.0%}).", "",
      "| condition | target share | valid share | degenerate | broken | median perplexity |",
      "|---|---|---|---|---|---|"]
  for name, v in cond.items():
    if v["kind"] is None:
      continue
    ppl = "-" if v["median_perplexity"] is None else f"{v['median_perplexity']:.1f}"
    over = not cost.within_cost(v, cond["baseline"], max_extra_broken=config.max_extra_broken)
    lines.append(f"| {name} | {_share(v, 'target_share')}"
                 f" | {_share(v, 'valid_share')}"
                 f" | {v['degenerate_share']:.0%} | {v['broken_share']:.0%}{'†' if over else ''}"
                 f" | {ppl} |")
  lines += translation_lines(s, config)
  lines += ["", "## Overlap of the neuron sets", "",
            "LAPE's units are the MLP nonlinearity's outputs; they are matched to the "
            "projection they transform (`gate`), where AP scores the projection's output.", ""]
  for pair, by_lang in s["overlap"].items():
    lines.append(f"- {pair}: " + ", ".join(
        f"{l} Jaccard {v['jaccard']:.1%}, overlap {v['overlap']:.1%} (sizes {v['sizes'][0]}, "
        f"{v['sizes'][1]})" for l, v in by_lang.items()))
  lines += ["", "## Where each method edits", "",
            "Units edited per layer, summed over the target languages, at the middle strength:",
            ""]
  for m, counts in s["layers"].items():
    lines.append(f"- {m}: {counts}")
  lines += ["", "![layers](method_layers.png)", ""]
  for m, f in s["fits"].items():
    lines.append(f"- `{m}` fit: `{f}`")
  if timings:
    lines += ["", "Timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())]
  if command:
    lines += ["", f"Command: `{command}`"]
  path = os.path.join(workdir, "comparison.md")
  artifacts.write_text(path, "\n".join(lines) + "\n")
  return path
