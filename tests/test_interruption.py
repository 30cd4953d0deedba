"""Killing the find binary mid-run and re-running gives the uninterrupted results."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from lang_neuron_jax import selection
from tests.conftest import write_small_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_killed_find_stage_resumes_to_identical_results(tiny_gemma3_with_tokenizer, tmp_path):
  corpus = write_small_corpus(str(tmp_path / "corpus"), positives=40, negatives=80)
  def cmd(work):
    return [sys.executable, os.path.join(ROOT, "experiments", "find_neurons.py"),
            f"--model={tiny_gemma3_with_tokenizer}", f"--workdir={work}",
            "--languages=en,de,ja", f"--corpus_dir={corpus}", "--top_n=10", "--batch_size=4"]
  ref_dir, work = str(tmp_path / "ref"), str(tmp_path / "work")
  subprocess.run(cmd(ref_dir), check=True, capture_output=True, timeout=600)

  progress = os.path.join(work, "responses", "progress_0.json")  # process 0's batches
  proc = subprocess.Popen(cmd(work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  killed_at = None
  while time.time() < deadline and proc.poll() is None:
    try:
      with open(progress) as f:
        done = len(json.load(f)["finished"])
    except (OSError, ValueError, KeyError):
      done = 0
    if done >= 3:
      proc.send_signal(signal.SIGKILL)
      killed_at = done
      break
    time.sleep(0.05)
  proc.wait(timeout=60)
  assert killed_at is not None, "the run finished before it could be killed"
  assert not os.path.exists(os.path.join(work, "expertise.npz"))

  resumed = subprocess.run(cmd(work), capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "Resuming responses" in resumed.stderr
  for site in ("q", "up", "down"):
    a = np.load(os.path.join(ref_dir, "responses", f"{site}.npy"))
    b = np.load(os.path.join(work, "responses", f"{site}.npy"))
    assert np.array_equal(a, b), site
  ref = selection.Expertise.load(os.path.join(ref_dir, "expertise.npz"))
  got = selection.Expertise.load(os.path.join(work, "expertise.npz"))
  assert np.array_equal(ref.ap, got.ap)
