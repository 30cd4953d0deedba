"""Killing the find or control binary mid-run and re-running gives the uninterrupted results."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from lang_neuron_jax.neurons import selection
from tests.conftest import write_small_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _kill_once(cmd, progress, at_least: int) -> int:
  """Starts ``cmd`` and SIGKILLs it once ``progress()`` reaches ``at_least``.

  Returns the progress at the kill; fails if the run finished first.
  """
  proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  killed_at = None
  while time.time() < deadline and proc.poll() is None:
    done = progress()
    if done >= at_least:
      proc.send_signal(signal.SIGKILL)
      killed_at = done
      break
    time.sleep(0.02)
  proc.wait(timeout=60)
  assert killed_at is not None, "the run finished before it could be killed"
  return killed_at


def _rows_written(path: str) -> int:
  try:
    with open(path) as f:
      return sum(1 for _ in f) - 1  # minus the header
  except OSError:
    return 0


def test_killed_find_stage_resumes_to_identical_results(tiny_gemma3_with_tokenizer, tmp_path):
  corpus = write_small_corpus(str(tmp_path / "corpus"), positives=40, negatives=80)
  def cmd(work):
    return [sys.executable, os.path.join(ROOT, "experiments", "find_neurons.py"),
            f"--model={tiny_gemma3_with_tokenizer}", f"--workdir={work}",
            "--languages=en,de,ja", f"--corpus_dir={corpus}", "--n=20", "--batch_size=4"]
  ref_dir, work = str(tmp_path / "ref"), str(tmp_path / "work")
  subprocess.run(cmd(ref_dir), check=True, capture_output=True, timeout=600)

  progress = os.path.join(work, "responses", "responses.journal0.jsonl")  # process 0's batches
  _kill_once(cmd(work), lambda: _rows_written(progress), 3)
  assert not os.path.exists(os.path.join(work, "expertise.npz"))

  resumed = subprocess.run(cmd(work), capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "Resuming the 'responses' stage" in resumed.stderr
  for site in ("q", "up", "down"):
    a = np.load(os.path.join(ref_dir, "responses", f"{site}.npy"))
    b = np.load(os.path.join(work, "responses", f"{site}.npy"))
    assert np.array_equal(a, b), site
  ref = selection.Expertise.load(os.path.join(ref_dir, "expertise.npz"))
  got = selection.Expertise.load(os.path.join(work, "expertise.npz"))
  assert np.array_equal(ref.ap, got.ap)


def test_killed_control_stage_resumes_to_identical_generations(tiny_gemma3_with_tokenizer,
                                                                tmp_path):
  corpus = write_small_corpus(str(tmp_path / "corpus"), languages=("en", "de", "ja"))
  model = f"--model={tiny_gemma3_with_tokenizer}"
  find_dir = str(tmp_path / "find")
  subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "find_neurons.py"), model,
                  f"--workdir={find_dir}", "--languages=en,de,ja", f"--corpus_dir={corpus}",
                  "--n=20", "--batch_size=16"], check=True, capture_output=True, timeout=600)

  def cmd(work):
    return [sys.executable, os.path.join(ROOT, "experiments", "control.py"), model,
            f"--find_workdir={find_dir}", f"--workdir={work}", "--languages=de,ja",
            "--samples=4", "--max_new_tokens=24", "--ns=2", "--main_n=10",
            "--translation_pairs=2", "--translation_tokens=8", "--translation_n=10",
            "--batch_size=4"]
  ref_dir, work = str(tmp_path / "ref"), str(tmp_path / "work")
  subprocess.run(cmd(ref_dir), check=True, capture_output=True, timeout=600)

  partial = os.path.join(work, "unconditional.journal0.jsonl")  # the stage's journal
  # Two batches of 4 written; the run has 9 conditions x 4 samples.
  _kill_once(cmd(work), lambda: _rows_written(partial), 8)
  assert not os.path.exists(os.path.join(work, "unconditional.jsonl"))

  resumed = subprocess.run(cmd(work), capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "Resuming the 'unconditional' stage" in resumed.stderr
  for part in ("unconditional", "translation"):
    with open(os.path.join(ref_dir, f"{part}.jsonl")) as f:
      ref = [json.loads(line) for line in f]
    with open(os.path.join(work, f"{part}.jsonl")) as f:
      got = [json.loads(line) for line in f]
    assert ref == got, part
  assert not [f for f in os.listdir(work) if ".journal" in f]
