"""benchmarks/billion.py's bad input: a model that cannot fit the mesh stops in one line,
with the plan's per-device figure and what to change, before any weight is written."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_model_that_does_not_fit_stops_before_loading(tmp_path):
  work = tmp_path / "work"
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "billion.py"), "--preset=llama3.2-1b",
       "--dtype=float32", "--devices=1", "--device_memory_gb=2", f"--workdir={work}"],
      capture_output=True, text=True, timeout=600, cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT))
  assert out.returncode == 1, out.stderr[-3000:]
  last = out.stderr.strip().splitlines()[-1]
  assert "Traceback" not in out.stderr
  assert last.startswith("billion.py: error: llama3.2-1b in float32 does not fit"), last
  assert "GB per device on 1 device(s)" in last and "more than 2.00 GB" in last
  assert "at least 3 devices" in last and "--dtype=bfloat16" in last, last
  assert "verdict" in out.stdout and "does NOT fit in 2 GB per device" in out.stdout
  assert not work.exists()  # nothing written, nothing loaded
