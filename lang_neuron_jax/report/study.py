"""``report.md``: the find and control results of a run, as a human reads them."""

from __future__ import annotations

import collections
import json
import os
from typing import Sequence

from lang_neuron_jax.runtime import artifacts
from lang_neuron_jax.evaluation import cost, measures as evaluation
from lang_neuron_jax.control.conditions import TRANSLATION_PROMPT
from lang_neuron_jax.report.tables import percent, share, table


def _find_section(find: dict, images: dict) -> list[str]:
  a = find["analysis"]
  langs = a["languages"]
  lines = ["## Finding language-specific neurons", ""]
  run = find["run"]
  lines += [f"{run.get('neurons', '?')} neurons scored on {run.get('texts', '?')} distinct texts "
            f"({run.get('dropped_texts', 0)} dropped as too long); per language, a set of "
            f"N = {a['n']:,}: the top {a['n'] // 2:,} and the bottom {a['n'] // 2:,} by AP "
            "(the authors' limited_N_both).", ""]
  lines += ["### Highest-AP neurons", ""]
  rows = []
  for lang in langs:
    for t in a["top_neurons"][lang][:5]:
      rows.append([lang, t["site"], t["layer"], t["unit"], f"{t['ap']:.4f}",
                   f"{t['on_p50']:.4g}", f"{t['off_p50']:.4g}"])
  lines += table(["language", "site", "layer", "unit", "AP", "on_p50", "off_p50"], rows) + [""]
  mo = a["max_overlap_between_languages"]
  lines += ["### Overlap between languages", "",
            f"Largest overlap between two languages' sets: top {percent(mo['top'])}, "
            f"bottom {percent(mo['bottom'])} (the paper reports under 5%).", ""]
  rows = [[l] + [percent(v) for v in row] for l, row in zip(langs, a["overlap_top"])]
  lines += table([f"top {a['n'] // 2:,}"] + langs, rows) + [""]
  for key in ("overlap_top", "overlap_bottom", "layers", "sites", "ap_histograms"):
    if key in images:
      lines += [f"![{key}]({images[key]})", ""]
  layers = a["layers"]
  num_layers = len(next(iter(layers.values())))
  lines += ["### Where they sit", ""]
  rows = [[l] + [int(c) for c in layers[l]] for l in langs]
  lines += table(["layer"] + [str(i) for i in range(num_layers)], rows) + [""]
  s = a["sufficiency"]
  lines += ["### Sufficiency check", "",
            f"A logistic-regression language classifier on only the {s['neurons']} neurons "
            f"with the highest AP (a few per language) reaches {percent(s['selected'])} held-out "
            f"accuracy; on as many random neurons, {percent(s['random'])} "
            f"({s.get('texts', '?')} texts of known language).", ""]
  return lines


def _condition_label(kind: str, n: int) -> str:
  return {"both": f"N={n:,}", "top": f"top {n:,} only", "bottom": f"bottom {n:,} only",
          "random": f"random {n:,}"}[kind]


def _unconditional_tables(uncond: dict, definitions: dict) -> list[str]:
  base = uncond.get("baseline")
  by_lang = collections.defaultdict(dict)
  for c in uncond.values():
    if c["language"]:
      by_lang[c["language"]][(c["kind"], c["n"])] = c
  order = {"both": 0, "top": 1, "bottom": 2, "random": 3}
  columns = sorted({k for d in by_lang.values() for k in d}, key=lambda k: (order[k[0]], k[1]))
  header = ["target", "no intervention"] + [_condition_label(*k) for k in columns]
  lines = []
  for field, title in (("target", "Share of samples in the target language (language ID)"),
                       ("valid", "Share of **valid** target-language samples (in the target "
                                 "language *and* reading as text: not degenerate, not "
                                 "incoherent)")):
    rows = []
    for lang, d in sorted(by_lang.items()):
      b = base["by_language"].get(lang) if base else None
      row = [lang, share(b[f"{field}_share"], b[f"{field}_share_ci"]) if b else "n/a"]
      row += [share(d[k][f"{field}_share"], d[k][f"{field}_share_ci"],
                     d[k].get(f"significant_{field}")) if k in d else "" for k in columns]
      rows.append(row)
    lines += [f"{title}; 95% interval in brackets; * differs from no intervention "
              "(McNemar's exact test on the same samples, Holm-adjusted over the table, "
              "p < 0.05):", ""]
    lines += table(header, rows) + [""]
  rows = []
  for lang, d in sorted(by_lang.items()):
    row = [lang, percent(base["degenerate_share"]) if base else "n/a"]
    row += [percent(d[k]["degenerate_share"]) if k in d else "" for k in columns]
    rows.append(row)
  lines += ["Share of **degenerate** samples (fewer than half their character 4-grams "
            "distinct: loops of a character, word or line):", ""]
  lines += table(header, rows) + [""]
  lines += _share_table(
      by_lang, columns, header, base, "incoherent",
      "Share of **incoherent** samples (coherence under the unintervened model, the nats "
      "per token by which a text's own context makes its tokens likelier, below its "
      f"language's threshold: {_thresholds(definitions)}; word salad, which language ID and the loop "
      "rule both pass; benchmarks/incoherence.py derives the thresholds), 95% interval:")
  lines += _share_table(
      by_lang, columns, header, base, "broken",
      "Share of **broken** samples (not reading as text: empty, degenerate or incoherent, "
      "in any language), 95% interval; † over the fluency cost, more than "
      f"{100 * cost.MAX_EXTRA_BROKEN:g} points above no intervention "
      "(`evaluation.cost.within_cost`):",
      over_cost=True)
  lines += _best_within_cost(by_lang, base)
  rows = []
  for lang, d in sorted(by_lang.items()):
    row = [lang, _ppl(base) if base else "n/a"]
    row += [_ppl(d[k]) if k in d else "" for k in columns]
    rows.append(row)
  lines += ["Median perplexity of the samples (every one) under the unintervened model, "
            "with a bootstrap 95% interval (low values can mean repetition, not fluency: "
            "read it with the degenerate share):", ""]
  lines += table(header, rows) + [""]
  return lines


def _share_table(by_lang: dict, columns: list, header: list[str], base: dict | None,
                 field: str, title: str, over_cost: bool = False) -> list[str]:
  """A table of one per-sample share with its interval (no test); ``over_cost`` marks
  with † the conditions :func:`cost.within_cost` rejects."""
  rows = []
  for lang, d in sorted(by_lang.items()):
    row = [lang, share(base[f"{field}_share"], base[f"{field}_share_ci"]) if base else "n/a"]
    for k in columns:
      if k not in d:
        row.append("")
        continue
      cell = share(d[k][f"{field}_share"], d[k][f"{field}_share_ci"])
      if over_cost and base and not cost.within_cost(d[k], base):
        cell += " †"
      row.append(cell)
    rows.append(row)
  return [title, ""] + table(header, rows) + [""]


def _best_within_cost(by_lang: dict, base: dict | None) -> list[str]:
  """Per target, the N of the top N/2 + bottom N/2 sweep with the highest valid share
  among those within the fluency cost (ties: the smaller N), as the comparison chooses."""
  if not base:
    return []
  rows = []
  for lang, d in sorted(by_lang.items()):
    ok = [c for (kind, _), c in d.items() if kind == "both" and cost.within_cost(c, base)]
    best = max(ok, key=lambda c: (c["valid_share"], -c["n"]), default=None)
    rows.append([lang, "none within cost"] if best is None else
                [lang, f"N={best['n']:,}",
                 share(best["valid_share"], best["valid_share_ci"], best.get("significant_valid")),
                 share(best["broken_share"], best["broken_share_ci"])])
  rows = [r + [""] * (4 - len(r)) for r in rows]
  return (["Highest valid share within the fluency cost, per target, over the N sweep (ties: "
           "the smaller N):", ""]
          + table(["target", "N", "valid", "broken"], rows) + [""])


def _ppl(c: dict) -> str:
  if not c.get("median_perplexity"):
    return "n/a"
  lo, hi = c["median_perplexity_ci"]
  return f"{c['median_perplexity']:.1f} [{lo:.1f}–{hi:.1f}]"


def _control_section(control: dict, images: dict) -> list[str]:
  m = control["metrics"]
  lines = ["## Controlling the output language", ""]
  uncond = m["unconditional"]
  base = uncond.get("baseline")
  counts = control.get("counts", {})
  if counts:
    lines += [f"Counts used: {counts['samples']} unconditional samples per condition "
              f"({counts['max_new_tokens']} new tokens, temperature {counts['temperature']}; "
              "every sample's perplexity under the unintervened model), "
              f"{counts['translation_pairs']} pairs per translation set (greedy, "
              f"{counts['translation_tokens']} new tokens at most). The paper: 100 and 100.", ""]
  if base:
    mix = ", ".join(f"{l} {percent(v)}" for l, v in base["share"].items())
    lines += [f"Without intervention, {base['samples']} unconditional samples are: {mix}; "
              f"{percent(base['empty_share'])} empty, {percent(base['degenerate_share'])} "
              f"degenerate (median distinct 4-gram ratio {base['median_distinct4']:.2f}; "
              f"the degeneration threshold is {evaluation.DEGENERATE_BELOW}), "
              f"{percent(base['incoherent_share'])} incoherent (coherence below "
              f"{_thresholds(m.get('definitions', {}))} nats per token); median perplexity "
              f"{base['median_perplexity'] and round(base['median_perplexity'], 1)}.", ""]
  lines += _unconditional_tables(uncond, m.get("definitions", {}))
  if "share_vs_n" in images:
    lines += [f"![share vs N]({images['share_vs_n']})", ""]
  trans = m["translation"]
  if trans:
    lines += ["### Translation", "",
              "Prompt: `" + TRANSLATION_PROMPT.replace("\n", "\\n") + "`; greedy; the output "
              "is the first non-empty line. "
              "BLEU and chrF with bootstrap 95% intervals over pairs; shares with Wilson "
              "intervals; * differs from no intervention (McNemar's exact test on the same "
              "sources, Holm-adjusted over the sets, p < 0.05).", ""]
    rows = []
    for key, t in trans.items():
      b, i = t.get("baseline", {}), t.get("intervention", {})
      rows.append([key, _score(b, "bleu"), _score(i, "bleu"), _score(b, "chrf"),
                   _score(i, "chrf"),
                   share(b.get("target_share"), b.get("target_share_ci")),
                   share(i.get("target_share"), i.get("target_share_ci"),
                          i.get("significant_target")),
                   share(b.get("valid_share"), b.get("valid_share_ci")),
                   share(i.get("valid_share"), i.get("valid_share_ci"),
                          i.get("significant_valid"))])
    lines += table(["set", "BLEU", "BLEU (intervention)", "chrF", "chrF (intervention)",
                     "in target", "in target (intervention)", "valid", "valid (intervention)"],
                    rows) + [""]
    for key in ("translation_bleu", "translation_target_share", "translation_valid_share"):
      if key in images:
        lines += [f"![{key}]({images[key]})", ""]
  examples = control.get("examples", [])
  if examples:
    lines += ["### Example generations", ""]
    rows = [[e["condition"], e["detected"] or "(empty)",
             "yes" if evaluation.is_degenerate(e["text"]) else "no", _incoherent_cell(e),
             e["text"].replace("\n", " ").replace("|", "\\|")[:150]] for e in examples]
    lines += table(["condition", "detected", "degenerate", "incoherent (coherence)", "text"],
                   rows) + [""]
  return lines


def _thresholds(definitions: dict) -> str:
  """"8 for de, fr, es, zh, ja; 5 for en and other languages (calibrated for
  gemma3-270m)": the incoherence thresholds ``metrics.json``'s definitions name (the
  embedded model's for metrics written before thresholds were per model)."""
  table = definitions.get("incoherent_below", evaluation.INCOHERENT_BELOW)
  by_value = collections.defaultdict(list)
  for lang, t in table.items():
    by_value[t].append(lang)
  other = min(table.values())
  text = "; ".join(f"{t:g} for {', '.join(langs)}" + (" and other languages" if t == other else "")
                   for t, langs in sorted(by_value.items(), reverse=True))
  calibration = definitions.get("incoherence_calibration")
  return f"{text} ({calibration})" if calibration else text


def _incoherent_cell(record: dict) -> str:
  """"yes (0.8)" / "no (9.4)": the rule (in the detected language) and the sample's
  coherence; "n/a" for a sample without one (empty or one token)."""
  coherence = record.get("coherence")
  if coherence is None:
    return "n/a"
  flag = evaluation.is_incoherent(coherence, record["detected"],
                                  below=evaluation.record_threshold(record))
  return f"{'yes' if flag else 'no'} ({coherence:.1f})"


def _score(c: dict, metric: str) -> str:
  if metric not in c:
    return "n/a"
  lo, hi = c[f"{metric}_ci"]
  return f"{c[metric]:.1f} [{lo:.1f}–{hi:.1f}]"


def pick_examples(records: Sequence[dict], ns: Sequence[int], per_condition: int = 2) -> list[dict]:
  """The first samples of the baseline and of each language's top+bottom sets of the
  given sizes (e.g. the main condition and the sweep's largest)."""
  seen = collections.Counter()
  out = []
  for r in records:
    chosen = r["kind"] is None or (r["kind"] == "both" and r["n"] in ns)
    if chosen and seen[r["condition"]] < per_condition:
      seen[r["condition"]] += 1
      out.append(r)
  return out


def write_report(workdir: str, *, find, control=None, config: dict, timings: dict) -> str:
  """Writes ``{workdir}/report.md``, linking the figures where their stages drew them
  (``find/overlap_top.png``, ``control/share_vs_n.png``, ...): one copy of each PNG.

  Args:
    find: The find stage's :class:`~lang_neuron_jax.find.stage.FindResult`.
    control: The control stage's :class:`~lang_neuron_jax.control.stage.ControlResult`,
      or None for a report of the find stage alone.
    config: The run's settings (shown, and the counts the control section states).
    timings: Seconds per stage.
  """
  images = {name: os.path.relpath(path, workdir) for name, path in
            {**find.figures, **(control.figures if control else {})}.items()}
  lines = ["# Language-specific neurons: report", "",
           f"Model: `{config.get('model')}`. Generated by `{config.get('command', '')}`.",
           ""]
  lines += _find_section({"analysis": find.analysis, "run": {
      "neurons": find.expertise.index.size, "texts": len(find.corpus.texts),
      "dropped_texts": find.dropped_texts}}, images)
  if control:
    metrics = control.metrics
    counts = artifacts.to_jsonable(control.config)
    both = [c["n"] for c in metrics["unconditional"].values() if c["kind"] == "both"]
    shown = {max(both, default=0), control.config.main_n}
    lines += _control_section({"metrics": metrics, "counts": counts, "examples": pick_examples(
        control.records["unconditional"], shown)}, images)
  lines += ["## Run", "", "Timings (seconds):", ""]
  lines += table(["stage", "seconds"], [[k, f"{v:.0f}"] for k, v in timings.items()]) + [""]
  lines += ["Configuration:", "", "```json",
            json.dumps(artifacts.to_jsonable(config), indent=1, ensure_ascii=False), "```", ""]
  path = os.path.join(workdir, "report.md")
  artifacts.write_text(path, "\n".join(lines))
  return path
