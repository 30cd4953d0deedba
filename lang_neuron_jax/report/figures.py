"""Figures (PNG) of the analyses.

Figures are drawn on ``matplotlib.figure.Figure`` objects and written with the Agg
canvas (savefig picks it for PNG), without pyplot: importing this module leaves the user's matplotlib backend
(e.g. a notebook's inline backend) untouched.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

from matplotlib.figure import Figure
import numpy as np


def existing(directory: str, names: Sequence[str]) -> dict[str, str]:
  """``{name: path}`` of the ``{name}.png`` figures that exist in ``directory``."""
  paths = {n: os.path.join(directory, f"{n}.png") for n in names}
  return {n: p for n, p in paths.items() if os.path.exists(p)}


def _save(fig, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  return path


def overlap_heatmap(matrix: np.ndarray, languages: Sequence[str], path: str, *,
                    title: str = "Overlap of language-specific neurons") -> str:
  """Heatmap of an ``[C, C]`` overlap matrix with the shares written in the cells."""
  fig = Figure(figsize=(1 + 0.8 * len(languages), 0.8 + 0.8 * len(languages)))
  ax = fig.subplots()
  im = ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
  ax.set_xticks(range(len(languages)), languages)
  ax.set_yticks(range(len(languages)), languages)
  for i in range(len(languages)):
    for j in range(len(languages)):
      ax.text(j, i, f"{matrix[i, j]:.1%}", ha="center", va="center", fontsize=8,
              color="white" if matrix[i, j] > 0.5 else "black")
  ax.set_title(title, fontsize=10)
  fig.colorbar(im, ax=ax, fraction=0.046)
  return _save(fig, path)


def layer_distribution(counts: Mapping[str, np.ndarray], path: str, *,
                       title: str = "Language-specific neurons per layer") -> str:
  """Lines of neuron counts per layer, one per language (``{language: [L]}``)."""
  fig = Figure(figsize=(6, 3.5))
  ax = fig.subplots()
  for lang, c in counts.items():
    ax.plot(np.arange(len(c)), c, marker="o", markersize=3, label=lang)
  ax.set_xlabel("layer")
  ax.set_ylabel("neurons")
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=8, ncol=3)
  return _save(fig, path)


def site_distribution(counts: Mapping[str, np.ndarray], sites: Sequence[str], path: str, *,
                      title: str = "Language-specific neurons per site") -> str:
  """Grouped bars of neuron counts per site, one group per language."""
  fig = Figure(figsize=(7, 3.5))
  ax = fig.subplots()
  width = 0.8 / max(len(counts), 1)
  for k, (lang, c) in enumerate(counts.items()):
    ax.bar(np.arange(len(sites)) + k * width, c, width, label=lang)
  ax.set_xticks(np.arange(len(sites)) + 0.4 - width / 2, sites)
  ax.set_ylabel("neurons")
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=8, ncol=3)
  return _save(fig, path)


def ap_histograms(ap: Mapping[str, np.ndarray], path: str) -> str:
  """Histogram (log counts) of every neuron's AP, one panel per language."""
  langs = list(ap)
  fig = Figure(figsize=(2.2 * len(langs), 2.5))
  axes = fig.subplots(1, len(langs), sharey=True, squeeze=False)[0]
  for ax, lang in zip(np.atleast_1d(axes), langs):
    ax.hist(ap[lang], bins=50, range=(0, 1), log=True)
    ax.set_title(lang, fontsize=9)
    ax.set_xlabel("AP", fontsize=8)
  return _save(fig, path)


def _error(value: float, interval) -> list[float]:
  """Matplotlib's asymmetric error of ``value`` within ``interval`` ([low, high])."""
  return [max(0.0, value - interval[0]), max(0.0, interval[1] - value)]


def share_vs_n(target: Mapping[str, Mapping[int, tuple[float, Sequence[float]]]],
               valid: Mapping[str, Mapping[int, tuple[float, Sequence[float]]]], path: str, *,
               baseline: Mapping[str, tuple[float, float]] | None = None) -> str:
  """Target-language share (left) and valid target-language share (right) against N
  (log x), one line per language with 95% error bars; dotted: the baseline's shares.

  Args:
    target, valid: ``{language: {N: (share, [low, high])}}``.
    path: PNG to write.
    baseline: ``{language: (target share, valid share)}`` without intervention.
  """
  fig = Figure(figsize=(11, 3.8))
  axes = fig.subplots(1, 2, sharey=True)
  for panel, (ax, curves, title) in enumerate(
      zip(axes, (target, valid), ("in the target language", "valid: target language, "
                                  "reads as text (no loop, no salad)"))):
    for k, (lang, by_n) in enumerate(curves.items()):
      ns = sorted(by_n)
      shares = [by_n[n][0] for n in ns]
      # Languages are offset a little along x so that their error bars do not overlap.
      x = [n * 1.06 ** (k - len(curves) / 2) for n in ns]
      errors = np.array([_error(*by_n[n]) for n in ns]).T
      line = ax.errorbar(x, shares, yerr=errors, marker="o", markersize=3, capsize=2,
                         linewidth=1, label=lang)
      if baseline and lang in baseline:
        ax.axhline(baseline[lang][panel], color=line[0].get_color(), linestyle=":",
                   linewidth=1)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("N (top N/2 + bottom N/2 neurons fixed)")
    ax.set_title(f"Share {title}", fontsize=10)
  axes[0].set_ylabel("share of samples (95% CI)")
  axes[0].legend(fontsize=8, ncol=3)
  return _save(fig, path)


def paired_bars(values: Mapping[str, Mapping[str, tuple[float, Sequence[float]]]], path: str,
                *, ylabel: str, title: str) -> str:
  """Bars per group (e.g. translation set) for each condition (e.g. with/without), each
  with its 95% interval: ``{group: {condition: (value, [low, high])}}``."""
  groups = list(values)
  conditions = sorted({c for v in values.values() for c in v})
  fig = Figure(figsize=(max(5, 0.9 * len(groups)), 3.5))
  ax = fig.subplots()
  width = 0.8 / max(len(conditions), 1)
  for k, cond in enumerate(conditions):
    present = [g for g in groups if cond in values[g]]
    x = np.array([groups.index(g) for g in present]) + k * width
    heights = [values[g][cond][0] for g in present]
    errors = np.array([_error(*values[g][cond]) for g in present]).T.reshape(2, -1)
    ax.bar(x, heights, width, yerr=errors, capsize=2, label=cond)
  ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups, rotation=30, ha="right",
                fontsize=8)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=8)
  return _save(fig, path)


def pareto(curves: Mapping[str, Mapping[str, Sequence[tuple]]], path: str, *,
           max_broken: float, baseline: Mapping[str, float] | None = None,
           baseline_broken: float | None = None) -> str:
  """Valid target-language share against broken share (what the fluency cost bounds:
  :func:`lang_neuron_jax.evaluation.cost.within_cost`), one panel per language and one
  curve per method over its strengths.

  Args:
    curves: ``{language: {method: [(broken share, valid share, [low, high], strength),
      ...]}}``.
    path: PNG to write.
    max_broken: The highest broken share within the cost (the baseline's plus the
      bound): a vertical dashed line; points on or left of it are within the cost.
    baseline: ``{language: valid share}`` without intervention (dotted line).
    baseline_broken: The baseline's broken share (a dotted vertical line).
  """
  languages = list(curves)
  cols = min(3, max(len(languages), 1))
  rows = -(-len(languages) // cols)
  fig = Figure(figsize=(4 * cols, 3.2 * rows))
  axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
  for ax, lang in zip(axes, languages):
    for method, points in sorted(curves[lang].items()):
      points = sorted(points, key=lambda p: p[3])
      x = [p[0] for p in points]
      y = [p[1] for p in points]
      errors = np.array([_error(p[1], p[2]) for p in points]).T
      line = ax.errorbar(x, y, yerr=errors, marker="o", markersize=3, capsize=2, linewidth=1,
                         label=method)
      for p in points:
        ax.annotate(f"{p[3]:g}", (p[0], p[1]), fontsize=6, color=line[0].get_color(),
                    xytext=(3, 3), textcoords="offset points")
    if baseline and lang in baseline:
      ax.axhline(baseline[lang], color="grey", linestyle=":", linewidth=1)
    if baseline_broken is not None:
      ax.axvline(baseline_broken, color="grey", linestyle=":", linewidth=1)
    # A bound of 1 or more admits every setting; the line then sits on the right edge.
    ax.axvline(min(max_broken, 1.0), color="grey", linestyle="--", linewidth=1)
    # Shares on both axes: the same fixed range, so panels and runs read alike.
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"towards {lang}", fontsize=10)
    ax.set_xlabel("broken share (empty, degenerate or incoherent)", fontsize=8)
  for ax in axes[len(languages):]:
    ax.set_visible(False)
  axes[0].set_ylabel("valid target share (95% CI)")
  axes[0].legend(fontsize=7)
  return _save(fig, path)
