"""experiments/reproduce.py --quick --compare end to end on a tiny model: every report
section, and the method comparison on the study's find stage."""

import json
import os
import subprocess
import sys

import numpy as np

from tests import report_cells
from tests.conftest import write_small_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_reproduce_quick_writes_every_report_section(tiny_gemma3_with_tokenizer, tmp_path):
  corpus = write_small_corpus(str(tmp_path / "corpus"), languages=("en", "de", "ja"))
  work = str(tmp_path / "work")
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), "--quick",
         f"--model={tiny_gemma3_with_tokenizer}", f"--workdir={work}", "--languages=en,de,ja",
         f"--corpus_dir={corpus}", "--n=20", "--batch_size=32", "--compare"]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  with open(os.path.join(work, "report.md")) as f:
    text = f.read()
  for section in ("## Finding language-specific neurons", "### Highest-AP neurons",
                  "### Overlap between languages", "### Where they sit", "### Sufficiency check",
                  "## Controlling the output language", "### Translation",
                  "### Example generations", "## Run", "Median perplexity"):
    assert section in text, section
  assert "{_" not in text and "{s[" not in text  # every f-string was formatted
  # The tables' cells (copied into the README) are metrics.json's numbers and marks.
  with open(os.path.join(work, "control", "metrics.json")) as f:
    assert report_cells.check_study_report(text, json.load(f)) >= 2 * 3 * 4
  # Figures are linked where their stage drew them, not copied beside the report.
  for image in ("find/overlap_top.png", "find/layers.png", "control/share_vs_n.png",
                "control/translation_bleu.png"):
    assert f"]({image})" in text and os.path.exists(os.path.join(work, image)), image
    assert not os.path.exists(os.path.join(work, os.path.basename(image))), image
  # The comparison ran on the study's find stage, which recorded every method's statistics.
  assert os.path.exists(os.path.join(work, "find", "responses", "gate_act.positive.npy"))
  assert not os.path.exists(os.path.join(work, "compare", "find"))
  with open(os.path.join(work, "compare", "comparison.md")) as f:
    comparison = f.read()
  assert "## Best setting per method" in comparison and "## Translation" in comparison
  with open(os.path.join(work, "compare", "comparison.json")) as f:
    summary = json.load(f)
  assert report_cells.check_comparison_report(
      comparison, summary, list(summary["sweep"]), ["en", "de", "ja"]) > 0
  check_across_models(work, tmp_path)
  again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "Reusing the finished 'responses' stage" in again.stderr
  # responses, scores, both generation sets, the comparison's two generation stages
  assert again.stderr.count("Reusing") >= 6, again.stderr


def check_across_models(work, tmp_path):
  """experiments/across_models.py on the run (twice, under two names): its cells are the
  run's own figures."""
  from lang_neuron_jax.report import across, tables
  out = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "across_models.py"),
                        f"--run=one={work}", f"--run=two={work}",
                        f"--out={tmp_path / 'across' / 'across.md'}"],
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert os.path.exists(tmp_path / "across" / "across_layers.png")
  text = (tmp_path / "across" / "across.md").read_text()
  with open(os.path.join(work, "find", "analysis.json")) as f:
    analysis = json.load(f)
  with open(os.path.join(work, "control", "metrics.json")) as f:
    german = json.load(f)["unconditional"][f"de/both/{analysis['n']}"]
  cell = tables.share(german["valid_share"], german["valid_share_ci"], german["significant_valid"])
  row = next(l for l in text.splitlines() if l.startswith("| two | de | "))
  assert [c.strip() for c in row.strip("|").split("|")][5] == cell, row  # valid at N
  layers = np.asarray(analysis["layers"]["ja"])
  centre = (np.arange(len(layers)) + 0.5) / len(layers)
  expected = layers[centre < 0.2].sum() / layers.sum()
  assert across.depth_bands(layers)[0] == expected
  row = next(l for l in text.splitlines() if l.startswith("| one | first fifth"))
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells[2 + analysis["languages"].index("ja")] == f"{expected:.0%}", row
