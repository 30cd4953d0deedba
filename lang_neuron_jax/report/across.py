"""The same study on several models, side by side: does a finding hold on each?

Reads finished ``reproduce.py`` work directories (``find/analysis.json``,
``control/metrics.json``, ``run.json``) and writes one Markdown section: overlap between
languages' sets, where the neurons sit as a fraction of depth (so an 18-layer and a
24-layer model compare), target and valid shares at the paper's main condition and
along N, the random control, translation and sufficiency, each share with its 95%
interval as the study's own report gives it. Nothing is recomputed: the figures are
the runs' own.

  python experiments/across_models.py --run=gemma3-270m=workdir/gemma \\
      --run=qwen2.5-coder-0.5b=workdir/qwen --out=across.md
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import numpy as np

from lang_neuron_jax.errors import ConfigError, MissingFileError, StageMismatchError
from lang_neuron_jax.report import tables

# Depth bands, as fractions of the layer stack (a layer's centre, (l + 0.5) / L): the
# paper's "first and last layers" against the middle.
BANDS = (("first fifth", 0.0, 0.2), ("middle", 0.2, 0.6), ("last two fifths", 0.6, 1.0))


@dataclasses.dataclass(frozen=True)
class StudyRun:
  """One finished study.

  Attributes:
    name: What the tables call it.
    model: The model it ran (``run.json``).
    setting: quick, default or paper.
    analysis: ``find/analysis.json``.
    metrics: ``control/metrics.json``.
    neurons: Neurons scored per text.
    texts: Distinct texts of the find stage.
    seconds: The stages' wall times (``run.json`` ``timings_s``), where recorded.
  """

  name: str
  model: str
  setting: str
  analysis: dict
  metrics: dict
  neurons: int
  texts: int
  seconds: dict

  @property
  def layers(self) -> int:
    return len(next(iter(self.analysis["layers"].values())))


def _json(path: str) -> dict:
  if not os.path.exists(path):
    raise MissingFileError(f"{path} is missing: is this a finished reproduce.py work "
                           "directory? Run experiments/reproduce.py into it first.")
  with open(path) as f:
    return json.load(f)


def load_run(name: str, workdir: str) -> StudyRun:
  """Reads a finished ``reproduce.py`` work directory."""
  run = _json(os.path.join(workdir, "run.json"))
  find_run = _json(os.path.join(workdir, "find", "run.json"))
  return StudyRun(name=name, model=run["config"]["model"], setting=run["config"]["setting"],
                  analysis=_json(os.path.join(workdir, "find", "analysis.json")),
                  metrics=_json(os.path.join(workdir, "control", "metrics.json")),
                  neurons=int(find_run["neurons"]), texts=int(find_run["texts"]),
                  seconds=dict(run.get("timings_s") or {}))


def depth_bands(counts: Sequence[int]) -> list[float]:
  """Share of a language's neurons in each of :data:`BANDS`.

  Args:
    counts: [L] neurons of the set per layer.

  Returns:
    One share per band (summing to 1).
  """
  counts = np.asarray(counts, np.float64)
  centre = (np.arange(len(counts)) + 0.5) / len(counts)
  total = max(counts.sum(), 1.0)
  return [float(counts[(centre >= lo) & (centre < hi)].sum() / total)
          for _, lo, hi in BANDS]


def _conditions(run: StudyRun) -> dict[tuple[str, str, int], dict]:
  """Unconditional conditions by (language, kind, N)."""
  out = {}
  for key, value in run.metrics["unconditional"].items():
    if key != "baseline":
      out[(value["language"], value["kind"], int(value["n"]))] = value
  return out


def _share(entry: dict | None, which: str, *, tested: bool = True) -> str:
  """A condition's share with its interval and test mark (``tested=False``: a baseline,
  which is not tested against itself)."""
  if entry is None:
    return "n/a"
  return tables.share(entry[f"{which}_share"], entry[f"{which}_share_ci"],
                      entry.get(f"significant_{which}") if tested else False)


def _baseline(run: StudyRun, language: str, which: str) -> str:
  entry = run.metrics["unconditional"]["baseline"]["by_language"][language]
  return tables.share(entry[f"{which}_share"], entry[f"{which}_share_ci"])


def check_comparable(runs: Sequence[StudyRun]) -> list[str]:
  """The languages every run shares; refuses runs of different scales (their samples,
  and so their intervals, would differ for reasons other than the model)."""
  settings = {r.setting for r in runs}
  if len(settings) > 1:
    raise StageMismatchError(f"The runs have different scales ({sorted(settings)}); "
                             "compare runs of the same setting (quick, default or paper).")
  languages = [l for l in runs[0].analysis["languages"]
               if all(l in r.analysis["languages"] for r in runs)]
  if not languages:
    raise StageMismatchError("The runs share no language.")
  return languages


def report(runs: Sequence[StudyRun]) -> str:
  """The side-by-side Markdown (see the module docstring)."""
  languages = check_comparable(runs)
  lines = ["| model | layers | neurons per text | texts | setting |", "|---|---|---|---|---|"]
  lines += [f"| {r.name} | {r.layers} | {r.neurons:,} | {r.texts:,} | {r.setting} |"
            for r in runs]

  lines += ["", "**Overlap** between two languages' sets (largest over the pairs; "
            "the paper: under 5%):", ""]
  rows = [[r.name, tables.percent(r.analysis["max_overlap_between_languages"]["top"]),
           tables.percent(r.analysis["max_overlap_between_languages"]["bottom"])]
          for r in runs]
  half = runs[0].analysis["n"] // 2
  lines += tables.table(["model", f"top {half:,} sets", f"bottom {half:,} sets"], rows)

  lines += ["", "**Where they sit**: share of each language's N = "
            f"{runs[0].analysis['n']:,} neurons by depth (a layer's centre as a fraction of "
            "the stack):", ""]
  header = ["model", "band"] + languages
  rows = []
  for r in runs:
    bands = {l: depth_bands(r.analysis["layers"][l]) for l in languages}
    for b, (label, lo, hi) in enumerate(BANDS):
      rows.append([r.name, f"{label} ({lo:.0%}–{hi:.0%})".replace("%–", "–")] +
                  [f"{bands[l][b]:.0%}" for l in languages])
  lines += tables.table(header, rows)

  # The run's own N (the paper's main condition, 2,000 = top 1,000 + bottom 1,000, unless
  # --n said otherwise), and its random control of the same size.
  kind, n = "both", runs[0].analysis["n"]
  if any(r.analysis["n"] != n for r in runs):
    raise StageMismatchError(f"The runs selected different N ({[r.analysis['n'] for r in runs]}).")
  lines += ["", f"**Unconditional generation at the run's N** (N = {n:,}, "
            "top + bottom): target-language share and valid share (target language and "
            "reads as text: not degenerate, not incoherent by the run's own calibration), "
            "95% Wilson intervals, `*` differs from no intervention "
            "(McNemar, Holm within each run):", ""]
  rows = []
  for r in runs:
    cond = _conditions(r)
    for l in languages:
      rows.append([r.name, l, _baseline(r, l, "target"), _share(cond.get((l, kind, n)), "target"),
                   _baseline(r, l, "valid"), _share(cond.get((l, kind, n)), "valid"),
                   _share(cond.get((l, "random", n)), "target"),
                   _share(cond.get((l, "random", n)), "valid")])
  lines += tables.table(["model", "target", "target: none", f"target: N={n:,}",
                         "valid: none", f"valid: N={n:,}", f"target: random {n:,}",
                         f"valid: random {n:,}"], rows)

  lines += ["", "**Along N** (top + bottom): the median over the languages of the target "
            "and valid shares, with their range over the languages:", ""]
  rows = []
  for r in runs:
    cond = _conditions(r)
    for size in sorted({k[2] for k in cond if k[1] == "both"}):
      entries = [cond[(l, "both", size)] for l in languages if (l, "both", size) in cond]
      target = [e["target_share"] for e in entries]
      valid = [e["valid_share"] for e in entries]
      rows.append([r.name, f"{size:,}", _median_range(target), _median_range(valid)])
  lines += tables.table(["model", "N", "target share", "valid share"], rows)

  lines += ["", "**Translation** (English source, target language's N = "
            f"{n:,} fixed): share of outputs in the target language and BLEU, without → with:",
            ""]
  rows = []
  for r in runs:
    for name, sets in sorted(r.metrics["translation"].items()):
      base, steered = sets["baseline"], sets["intervention"]
      rows.append([r.name, name, base["pairs"],
                   f"{_share(base, 'target', tested=False)} → {_share(steered, 'target')}",
                   f"{base['bleu']:.1f} → {steered['bleu']:.1f}"])
  lines += tables.table(["model", "set", "pairs", "target share", "BLEU"], rows)

  lines += ["", "**Sufficiency**: language ID of held-out texts from the highest-AP neurons "
            "against as many random ones:", ""]
  rows = [[r.name, r.analysis["sufficiency"]["neurons"],
           tables.percent(r.analysis["sufficiency"]["selected"]),
           tables.percent(r.analysis["sufficiency"]["random"])] for r in runs]
  lines += tables.table(["model", "neurons", "selected", "random"], rows)
  return "\n".join(lines) + "\n"


def _median_range(values: Sequence[float]) -> str:
  if not values:
    return "n/a"
  return f"{np.median(values):.0%} ({min(values):.0%}–{max(values):.0%})".replace("%–", "–")


def layer_figure(runs: Sequence[StudyRun], path: str) -> str:
  """Neurons per layer against depth (fraction of the stack), one line per model
  (summed over its languages, as a density: 1 everywhere would be uniform), so models
  of different depths overlay."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(6, 3.5))
  for r in runs:
    counts = np.sum([r.analysis["layers"][l] for l in r.analysis["languages"]], axis=0)
    depth = (np.arange(len(counts)) + 0.5) / len(counts)
    # Share per unit of depth, so a deeper model's thinner layers do not look emptier.
    ax.plot(depth, counts / counts.sum() * len(counts), marker="o",
            label=f"{r.name} ({len(counts)} layers)")
  ax.set_xlabel("depth (layer centre / layers)")
  ax.set_ylabel("selected neurons per unit depth")
  ax.legend()
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def runs_from_flags(specs: Sequence[str]) -> list[StudyRun]:
  """``["name=workdir", ...]`` to runs (a :class:`ConfigError` for a bad spec)."""
  runs = []
  for spec in specs:
    name, sep, workdir = spec.partition("=")
    if not sep or not name or not workdir:
      raise ConfigError(f"--run={spec!r}: give it as NAME=WORKDIR.")
    runs.append(load_run(name, workdir))
  if len(runs) < 2:
    raise ConfigError("Give two or more --run=NAME=WORKDIR to compare.")
  return runs
