"""experiments/control.py end to end on a tiny model with the real tokenizer."""

import json
import os
import subprocess
import sys

from tests.conftest import write_small_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *flags):
  out = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *flags],
                       capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


def test_control_binary_end_to_end(tiny_gemma3_with_tokenizer, tmp_path):
  model = f"--model={tiny_gemma3_with_tokenizer}"
  corpus = write_small_corpus(str(tmp_path / "corpus"), languages=("en", "de", "ja"))
  find_dir, work = str(tmp_path / "find"), str(tmp_path / "control")
  run("find_neurons.py", model, f"--workdir={find_dir}", "--languages=en,de,ja",
      f"--corpus_dir={corpus}", "--n=20", "--batch_size=16")
  flags = [model, f"--find_workdir={find_dir}", f"--workdir={work}", "--languages=de,ja",
           "--samples=2", "--max_new_tokens=6", "--ns=2,20", "--main_n=10",
           "--translation_pairs=2", "--translation_tokens=6", "--translation_n=10",
           "--batch_size=16"]
  out = run("control.py", *flags)
  assert "baseline" in out.stdout
  with open(os.path.join(work, "metrics.json")) as f:
    metrics = json.load(f)
  u = metrics["unconditional"]
  assert {"baseline", "de/both/2", "de/both/20", "ja/top/5", "ja/bottom/5", "ja/random/10"} <= set(u)
  assert all(m["samples"] == 2 for m in u.values())
  assert set(metrics["translation"]) == {"flores200_en_de", "flores200_en_ja", "iwslt2017_en_de",
                                         "iwslt2017_en_ja", "wmt_en_de"}
  for t in metrics["translation"].values():
    assert set(t) == {"baseline", "intervention"} and "bleu" in t["baseline"]
  for name in ("unconditional.jsonl", "translation.jsonl", "run.json", "share_vs_n.png",
               "translation_bleu.png"):
    assert os.path.exists(os.path.join(work, name)), name
  with open(os.path.join(work, "unconditional.jsonl")) as f:
    first = json.loads(f.readline())
  assert {"condition", "tokens", "text", "detected", "perplexity"} <= set(first)
  # Re-running reuses the generations.
  again = run("control.py", *flags)
  assert "Reusing" in again.stderr
  with open(os.path.join(work, "metrics.json")) as f:
    assert json.load(f) == metrics
