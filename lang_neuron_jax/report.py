"""``report.md``: the find and control results of a run, as a human reads them."""

from __future__ import annotations

import collections
import os
import shutil
from typing import Sequence

from lang_neuron_jax import artifacts


def _pct(x) -> str:
  return "n/a" if x is None else f"{x:.1%}"


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
  out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
  return out


def _find_section(find: dict, images: dict) -> list[str]:
  a = find["analysis"]
  langs = a["languages"]
  lines = ["## Finding language-specific neurons", ""]
  run = find["run"]
  lines += [f"{run.get('neurons', '?')} neurons scored on {run.get('texts', '?')} distinct texts "
            f"({run.get('dropped_texts', 0)} dropped as too long); top-{a['top_n']} and "
            f"bottom-{a['top_n']} kept per language.", ""]
  lines += ["### Highest-AP neurons", ""]
  rows = []
  for lang in langs:
    for t in a["top_neurons"][lang][:5]:
      rows.append([lang, t["site"], t["layer"], t["unit"], f"{t['ap']:.4f}",
                   f"{t['on_p50']:.4g}", f"{t['off_p50']:.4g}"])
  lines += _table(["language", "site", "layer", "unit", "AP", "on_p50", "off_p50"], rows) + [""]
  mo = a["max_overlap_between_languages"]
  lines += ["### Overlap between languages", "",
            f"Largest overlap between two languages' sets: top {_pct(mo['top'])}, "
            f"bottom {_pct(mo['bottom'])} (the paper reports under 5%).", ""]
  rows = [[l] + [_pct(v) for v in row] for l, row in zip(langs, a["overlap_top"])]
  lines += _table(["top-N"] + langs, rows) + [""]
  for key in ("overlap_top", "overlap_bottom", "layers", "sites", "ap_histograms"):
    if key in images:
      lines += [f"![{key}]({images[key]})", ""]
  layers = a["layers"]
  num_layers = len(next(iter(layers.values())))
  lines += ["### Where they sit", ""]
  rows = [[l] + [int(c) for c in layers[l]] for l in langs]
  lines += _table(["layer"] + [str(i) for i in range(num_layers)], rows) + [""]
  s = a["sufficiency"]
  lines += ["### Sufficiency check", "",
            f"A logistic-regression language classifier on only the {s['neurons']} neurons "
            f"with the highest AP (a few per language) reaches {_pct(s['selected'])} held-out "
            f"accuracy; on as many random neurons, {_pct(s['random'])} "
            f"({s.get('texts', '?')} texts of known language).", ""]
  return lines


def _control_section(control: dict, images: dict) -> list[str]:
  m = control["metrics"]
  lines = ["## Controlling the output language", ""]
  uncond = m["unconditional"]
  base = uncond.get("baseline")
  if base:
    mix = ", ".join(f"{l} {_pct(v)}" for l, v in base["share"].items())
    lines += [f"Without intervention, {base['samples']} unconditional samples are: {mix}; "
              f"{_pct(base['empty_share'])} empty; median perplexity "
              f"{base['median_perplexity'] and round(base['median_perplexity'], 1)}.", ""]
  by_lang = collections.defaultdict(dict)
  for name, c in uncond.items():
    if c["language"]:
      by_lang[c["language"]][(c["kind"], c["n"])] = c
  ns = sorted({n for d in by_lang.values() for (k, n) in d if k == "both"})
  rows = []
  for lang, d in sorted(by_lang.items()):
    row = [lang, _pct(base["share"].get(lang)) if base else "n/a"]
    row += [_pct(d[("both", n)]["target_share"]) if ("both", n) in d else "" for n in ns]
    extra = [(k, n) for (k, n) in d if k != "both"]
    row += [f"{k} {n}: {_pct(d[(k, n)]['target_share'])}" for (k, n) in sorted(extra)]
    rows.append(row)
  lines += ["Share of unconditional samples in the target language, by N (top-N + bottom-N "
            "neurons fixed to their median response on the language):", ""]
  lines += _table(["language", "no intervention"] + [f"N={n}" for n in ns] + ["controls"] * (
      len(rows[0]) - 2 - len(ns) if rows else 0), rows) + [""]
  ppl_rows = [[lang] + [round(d[("both", n)]["median_perplexity"], 1)
                        if ("both", n) in d and d[("both", n)]["median_perplexity"] else ""
                        for n in ns] for lang, d in sorted(by_lang.items())]
  lines += ["Median perplexity of the samples under the unintervened model (fluency):", ""]
  lines += _table(["language"] + [f"N={n}" for n in ns], ppl_rows) + [""]
  if "share_vs_n" in images:
    lines += [f"![share vs N]({images['share_vs_n']})", ""]
  trans = m["translation"]
  if trans:
    lines += ["### Translation", "",
              "Prompt: `Translate an English sentence into a target language.\\nEnglish: "
              "{source}\\nTarget Language:`; greedy; the output is the first non-empty line.", ""]
    rows = []
    for key, t in trans.items():
      b, i = t.get("baseline", {}), t.get("intervention", {})
      rows.append([key, f"{b.get('bleu', float('nan')):.1f}", f"{i.get('bleu', float('nan')):.1f}",
                   f"{b.get('chrf', float('nan')):.1f}", f"{i.get('chrf', float('nan')):.1f}",
                   _pct(b.get("target_share")), _pct(i.get("target_share"))])
    lines += _table(["set", "BLEU", "BLEU (intervention)", "chrF", "chrF (intervention)",
                     "in target", "in target (intervention)"], rows) + [""]
    for key in ("translation_bleu", "translation_target_share"):
      if key in images:
        lines += [f"![{key}]({images[key]})", ""]
  examples = control.get("examples", [])
  if examples:
    lines += ["### Example generations", ""]
    rows = [[e["condition"], e["detected"] or "(empty)",
             e["text"].replace("\n", " ").replace("|", "\\|")[:150]] for e in examples]
    lines += _table(["condition", "detected", "text"], rows) + [""]
  return lines


def pick_examples(records: Sequence[dict], per_condition: int = 2) -> list[dict]:
  """The first samples of the baseline and of each language's largest-effect conditions."""
  seen = collections.Counter()
  out = []
  for r in records:
    if r["kind"] in (None, "both") and seen[r["condition"]] < per_condition:
      seen[r["condition"]] += 1
      out.append(r)
  return out


def write_report(workdir: str, *, find_dir: str, control_dir: str | None,
                 config: dict, timings: dict) -> str:
  """Writes ``{workdir}/report.md`` and copies the figures beside it."""
  images = {}
  for directory, names in ((find_dir, ("overlap_top", "overlap_bottom", "layers", "sites",
                                       "ap_histograms")),
                           (control_dir, ("share_vs_n", "translation_bleu",
                                          "translation_target_share"))):
    for name in names:
      src = os.path.join(directory, f"{name}.png") if directory else ""
      if src and os.path.exists(src):
        dst = os.path.join(workdir, f"{name}.png")
        if os.path.abspath(src) != os.path.abspath(dst):
          shutil.copyfile(src, dst)
        images[name] = f"{name}.png"
  find = {"analysis": artifacts.read_json(os.path.join(find_dir, "analysis.json")),
          "run": artifacts.read_json(os.path.join(find_dir, "run.json"))}
  lines = ["# Language-specific neurons: report", "",
           f"Model: `{config.get('model')}`. Generated by `{' '.join(config.get('command', []))}`.",
           ""]
  lines += _find_section(find, images)
  if control_dir:
    metrics = artifacts.read_json(os.path.join(control_dir, "metrics.json"))
    records = artifacts.read_jsonl(os.path.join(control_dir, "unconditional.jsonl"))
    lines += _control_section({"metrics": metrics, "examples": pick_examples(records)}, images)
  lines += ["## Run", "", "Timings (seconds):", ""]
  lines += _table(["stage", "seconds"], [[k, f"{v:.0f}"] for k, v in timings.items()]) + [""]
  lines += ["Configuration:", "", "```json",
            __import__("json").dumps(artifacts.to_jsonable(config), indent=1,
                                     ensure_ascii=False), "```", ""]
  path = os.path.join(workdir, "report.md")
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
  os.replace(tmp, path)
  return path
