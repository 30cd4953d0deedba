"""The bfloat16-vs-float32 comparison: Jaccard of neuron sets, and the binary end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lang_neuron_jax.neurons import analysis, selection
from tests.conftest import write_small_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _expertise(seed):
  index = selection.NeuronIndex(("up",), 2, (10,), "m")
  rng = np.random.default_rng(seed)
  stats = {k: rng.random((1, 20)).astype(np.float32) for k in selection.STATISTICS}
  return selection.Expertise(index, ("de",), rng.random((1, 20)).astype(np.float32), stats)


def test_jaccard():
  a = selection.select(_expertise(0), "de", 5, "top")
  assert analysis.jaccard(a, a) == 1.0
  assert analysis.jaccard(a, selection.select(_expertise(0), "de", 5, "bottom")) == 0.0
  b = selection.select(_expertise(0), "de", 10, "top")
  assert analysis.jaccard(a, b) == 0.5
  other = selection.NeuronIndex(("up",), 1, (20,), "m")
  moved = selection.NeuronSet(other, "de", "top", a.flat, a.site, a.layer, a.unit, a.ap, a.stats)
  with pytest.raises(ValueError, match="different models"):
    analysis.jaccard(a, moved)


def test_compare_precision_binary(tiny_gemma3_with_tokenizer, tmp_path):
  corpus = write_small_corpus(str(tmp_path / "corpus"), languages=("en", "de"))
  work = tmp_path / "work"
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", "compare_precision.py"),
       f"--model={tiny_gemma3_with_tokenizer}", f"--workdir={work}", "--languages=en,de",
       f"--corpus_dir={corpus}", "--n=40", "--batch_size=16"],
      capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads((work / "precision.json").read_text())
  f32 = selection.Expertise.load(str(work / "float32" / "expertise.npz"))
  bf16 = selection.Expertise.load(str(work / "bfloat16" / "expertise.npz"))
  assert result["n"] == 40 and not np.array_equal(f32.ap, bf16.ap)  # two real runs
  for lang in ("en", "de"):
    row = result["languages"][lang]
    # Recomputed from the two runs' scores: plain set arithmetic on the flat indices.
    for kind in ("top", "bottom"):
      a = set(selection.select(f32, lang, 20, kind).flat.tolist())
      b = set(selection.select(bf16, lang, 20, kind).flat.tolist())
      assert len(a) == len(b) == 20
      assert row[kind] == pytest.approx(len(a & b) / len(a | b)), (lang, kind)
    i = f32.language_row(lang)
    assert row["ap_correlation"] == pytest.approx(np.corrcoef(f32.ap[i], bf16.ap[i])[0, 1])
    assert row["max_ap_difference"] == pytest.approx(np.abs(f32.ap[i] - bf16.ap[i]).max())
    assert row["ap_correlation"] > 0.5  # same model, two precisions: closely related scores
