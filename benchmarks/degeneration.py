"""Calibration of the degeneration rule on natural text (where the threshold comes from).

A text is degenerate when fewer than ``DEGENERATE_BELOW`` (0.5) of its character
``DEGENERATE_NGRAM``-grams (4) are distinct (lang_neuron_jax/evaluation/measures.py).
This script measures the distinct 4-gram ratio of natural text cut into sample-sized
windows: the paper's corpora (the shipped positive sentences of each language, in file
order, joined by spaces) cut into consecutive, non-overlapping windows of about 64
tokens' worth of characters (250 characters; 80 for Chinese and Japanese, whose
characters carry more per token). Two corpus definitions: the first 200 sentences per
language (what tests/test_metrics.py checks) and all 500.

Run it with ``python benchmarks/degeneration.py``; the numbers quoted in measures.py's
comment are its output. No model is needed.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lang_neuron_jax.data import corpora as data  # noqa: E402
from lang_neuron_jax.evaluation import measures  # noqa: E402

WIDTHS = {"zh": 80, "ja": 80}  # characters per window; others DEFAULT_WIDTH
DEFAULT_WIDTH = 250


def windows(language: str, sentences: int | None = None) -> list[str]:
  """Consecutive non-overlapping windows of the first ``sentences`` positive sentences
  (all when None) of ``language``'s shipped corpus, joined by spaces; the last, shorter
  remainder is left out."""
  with open(os.path.join(data.SENSE_DIR, f"{language}.json")) as f:
    texts = json.load(f)["sentences"]["positive"][:sentences]
  text = " ".join(texts)
  width = WIDTHS.get(language, DEFAULT_WIDTH)
  return [text[i:i + width] for i in range(0, len(text) - width, width)]


def calibration(sentences: int | None = None,
                languages=data.PAPER_LANGUAGES) -> dict[str, dict]:
  """Per language: windows, lowest ratio, 1st percentile, and windows the rule flags."""
  out = {}
  for lang in languages:
    ratios = np.array([measures.distinct_ngram_ratio(w) for w in windows(lang, sentences)])
    out[lang] = {"windows": int(ratios.size), "lowest": float(ratios.min()),
                 "p1": float(np.percentile(ratios, 1)),
                 "flagged": int(sum(measures.is_degenerate(w)
                                    for w in windows(lang, sentences)))}
  return out


def main() -> None:
  for sentences in (200, None):
    result = calibration(sentences)
    total = sum(r["windows"] for r in result.values())
    lowest = min(r["lowest"] for r in result.values())
    p1 = [r["p1"] for r in result.values()]
    flagged = sum(r["flagged"] for r in result.values())
    print(f"first {sentences or 'all'} positive sentences per language: {total} windows, "
          f"lowest ratio {lowest:.2f}, 1st percentile {min(p1):.2f}-{max(p1):.2f} per "
          f"language, {flagged} flagged as degenerate")
    for lang, r in result.items():
      print(f"  {lang}: {r['windows']} windows, lowest {r['lowest']:.3f}, "
            f"1st percentile {r['p1']:.3f}, flagged {r['flagged']}")
  for name, text in (("a sentence said twice", "Die Stadt liegt am Fluss und hat viele "
                      "alte Brücken aus Stein. " * 2),
                     ("said three times", "Die Stadt liegt am Fluss und hat viele alte "
                      "Brücken aus Stein. " * 3)):
    print(f"{name}: ratio {measures.distinct_ngram_ratio(text):.3f}, "
          f"degenerate: {measures.is_degenerate(text)}")


if __name__ == "__main__":
  main()
