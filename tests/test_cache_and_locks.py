"""Processes that share a model cache or a work directory, and damaged cache entries.

Real processes where the behaviour is about processes: three first loads on one empty
cache, two binaries on one work directory (the second refused, a killed one's lock taken
over), two processes of one multi-host run, a binary given bad input.
"""

import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from lang_neuron_jax.runtime import cache, cli, locks
from lang_neuron_jax.models import loading
from lang_neuron_jax.errors import LockedError, UserError
from tests.conftest import write_small_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESET = "gemma3-270m"

# Loads the embedded model and prints a digest of every parameter and a tokenization.
_LOAD = textwrap.dedent("""
    import hashlib, json
    from absl import logging
    import jax, numpy as np
    import lang_neuron_jax as lnj
    logging.set_verbosity("info")
    lm = lnj.load_model("gemma3-270m")
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(lm.params):
      digest.update(np.asarray(leaf).tobytes())
    print(json.dumps({"params": digest.hexdigest(),
                      "ids": lm.tokenizer("Guten Tag, Welt").input_ids}))
""")


def _env(**extra):
  return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, **extra)


@pytest.fixture(scope="module")
def first_loads(tmp_path_factory):
  """Three processes that load the embedded model at once on an empty cache."""
  cache_dir = str(tmp_path_factory.mktemp("empty_cache"))
  procs = [subprocess.Popen([sys.executable, "-c", _LOAD], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=_env(LANG_NEURON_JAX_CACHE=cache_dir)) for _ in range(3)]
  results = [(p.returncode, out, err) for p in procs for out, err in [p.communicate(timeout=900)]]
  return cache_dir, results


def test_concurrent_first_loads_on_an_empty_cache(first_loads):
  cache_dir, results = first_loads
  for rc, _, err in results:
    assert rc == 0, err[-3000:]
  loaded = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in results]
  assert loaded[0] == loaded[1] == loaded[2]
  # One process built each entry; the others waited for it and read the committed one.
  errs = "".join(err for _, _, err in results)
  for what in (f"the {PRESET} GGUF file", f"the converted {PRESET} parameters",
               "the converted GGUF tokenizer"):
    assert errs.count(f"Building {what}") == 1, what
  # Nothing but the three committed entries: no lock files, no temporaries.
  assert sorted(os.listdir(os.path.join(cache_dir, PRESET))) == [
      f"{PRESET}.gguf", "params_float32", "tokenizer"]


def _copy_cache(src: str, dst: str) -> str:
  """A copy made of hard links (instant); damage it only by replacing files."""
  shutil.copytree(src, dst, copy_function=os.link)
  return dst


def _cut_short(path: str) -> None:
  with open(path, "rb") as f:
    head = f.read(os.path.getsize(path) // 2)
  os.remove(path)  # A new file: the hard-linked original stays whole.
  with open(path, "wb") as f:
    f.write(head)


def test_damaged_gguf_and_tokenizer_are_rebuilt_with_a_warning(first_loads, tmp_path, caplog):
  src, results = first_loads
  expected_ids = json.loads(results[0][1].strip().splitlines()[-1])["ids"]
  cache_dir = _copy_cache(src, str(tmp_path / "cache"))
  root = os.path.join(cache_dir, PRESET)
  gguf_path = os.path.join(root, f"{PRESET}.gguf")
  _cut_short(gguf_path)
  _cut_short(os.path.join(root, "tokenizer", "tokenizer.json"))

  caplog.set_level(logging.INFO, logger="absl")
  lm = loading.load_model(PRESET, cache_dir=cache_dir)
  assert lm.tokenizer("Guten Tag, Welt").input_ids == expected_ids
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  for entry in (gguf_path, os.path.join(root, "tokenizer")):
    assert any(entry in w and "rebuilding it" in w for w in warnings), (entry, warnings)
  assert os.path.getsize(gguf_path) == os.path.getsize(os.path.join(src, PRESET,
                                                                    f"{PRESET}.gguf"))

  assert sorted(os.listdir(root)) == [f"{PRESET}.gguf", "params_float32", "tokenizer"]


def _tiny_params():
  import jax

  config = dataclasses.replace(
      loading.all_presets()[PRESET], vocab_size=32, width=16, num_layers=1, num_heads=2,
      num_kv_heads=1, head_dim=8, mlp_width=24, layer_kinds=("local",))
  params = loading.Decoder(config).init(jax.random.key(0), np.zeros((1, 1), np.int32))
  return config, params["params"]


@pytest.mark.parametrize("damage", ["cut_short", "deleted"])
def test_damaged_parameter_checkpoint_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
  """The converted-parameters entry, on a tiny model: the same orbax checkpoint that failed
  with tensorstore's OUT_OF_RANGE when a file under it was cut short."""
  import jax

  config, params = _tiny_params()
  path = str(tmp_path / "params_float32")
  builds = []

  def build(p):
    builds.append(p)
    loading.save_params(p, params)

  get = lambda: cache.cached(path, read=lambda p: loading.restore_params(p, config),
                             build=build, what="the tiny parameters")
  get()
  # Every data file: OCDBT may leave files that no manifest references (a process's
  # own before the merge), and damaging only one of those would not break the read.
  data_files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs
                if os.path.basename(d) == "d"]
  assert data_files
  for data_file in data_files:
    if damage == "cut_short":
      _cut_short(data_file)
    else:
      os.remove(data_file)
  caplog.set_level(logging.WARNING, logger="absl")
  restored = get()
  assert len(builds) == 2
  assert any(path in r.getMessage() and "derived data" in r.getMessage()
             for r in caplog.records), [r.getMessage() for r in caplog.records]
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert sorted(os.listdir(tmp_path)) == ["params_float32"]


def test_a_killed_builders_temporaries_and_stale_lock_are_cleaned_up(tmp_path):
  path = str(tmp_path / "entry")
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  stale = dataclasses.replace(locks._me(), pid=dead.pid, started=None)
  with open(path + ".lock", "w") as f:
    json.dump(dataclasses.asdict(stale), f)
  os.makedirs(path + ".tmp-999/half")
  os.makedirs(path + ".orbax-checkpoint-tmp-1234")

  def build(p):
    with open(p, "w") as f:
      f.write("whole")

  assert cache.cached(path, read=lambda p: open(p).read(), build=build, what="x") == "whole"
  assert sorted(os.listdir(tmp_path)) == ["entry"]


def _holder_file(path: str, pid: int) -> None:
  holder = dataclasses.replace(locks._me(), pid=pid, started=locks._start_time(pid),
                               command="sleep 60")
  with open(path, "w") as f:
    json.dump(dataclasses.asdict(holder), f)


def test_live_lock_refuses_stale_lock_is_taken_over(tmp_path, caplog):
  path = str(tmp_path / "x.lock")
  sleeper = subprocess.Popen(["sleep", "60"])
  try:
    _holder_file(path, sleeper.pid)
    with pytest.raises(LockedError, match=rf"in use by pid {sleeper.pid} .*delete {path}"):
      locks.acquire(path, what="the thing")
    start = time.monotonic()
    with pytest.raises(LockedError, match="waited"):
      locks.acquire(path, what="the thing", timeout=0.5, poll=0.05)
    assert time.monotonic() - start >= 0.5
  finally:
    sleeper.kill()
    sleeper.wait()
  caplog.set_level(logging.WARNING, logger="absl")
  with locks.acquire(path, what="the thing") as lock:
    assert json.load(open(path))["pid"] == os.getpid() == lock.holder.pid
  assert not os.path.exists(path)
  assert any("Taking over" in r.getMessage() for r in caplog.records)


def test_reused_pid_and_old_unreadable_lock_are_stale(tmp_path):
  path = str(tmp_path / "x.lock")
  me = locks._me()
  assert not locks.is_gone(me)
  assert locks.is_gone(dataclasses.replace(me, started="1"))  # our pid, another process
  assert not locks.is_gone(dataclasses.replace(me, host="another-host", pid=1 << 22))
  with open(path, "w") as f:
    f.write("{")  # a holder killed while writing its record
  with pytest.raises(LockedError, match="writing its lock record"):
    locks.acquire(path, what="y")
  old = time.time() - 3600
  os.utime(path, (old, old))
  locks.acquire(path, what="y").release()


def test_waiter_gets_the_lock_when_the_holder_releases(tmp_path):
  path = str(tmp_path / "x.lock")
  lock = locks.acquire(path, what="z")
  threading.Timer(0.3, lock.release).start()
  start = time.monotonic()
  locks.acquire(path, what="z", timeout=30, poll=0.05).release()
  assert 0.25 < time.monotonic() - start < 10


def test_second_binary_on_a_workdir_is_refused_and_a_killed_runs_lock_taken_over(
    tiny_gemma3_with_tokenizer, tmp_path, caplog):
  corpus = write_small_corpus(str(tmp_path / "corpus"), languages=("en", "de"))
  work = str(tmp_path / "work")
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "find_neurons.py"),
         f"--model={tiny_gemma3_with_tokenizer}", f"--workdir={work}", "--languages=en,de",
         f"--corpus_dir={corpus}", "--n=10", "--batch_size=4"]
  first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=_env())
  lock_path = os.path.join(work, locks.WORKDIR_LOCK)
  try:
    deadline = time.time() + 300
    holder = lambda: (locks._read(lock_path) or ("", None))[1]  # once its record is written
    while holder() is None and first.poll() is None and time.time() < deadline:
      time.sleep(0.02)
    first.send_signal(signal.SIGSTOP)  # Alive and holding the lock while we try.
    assert first.poll() is None and holder().pid == first.pid, "the first run ended early"
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
  finally:
    first.kill()
    first.wait()
  assert second.returncode == 1
  assert "Traceback" not in second.stderr
  last = second.stderr.strip().splitlines()[-1]
  assert last.startswith(f"find_neurons.py: error: the work directory {work} is in use by "
                         f"pid {first.pid} "), last
  assert second.stderr.count(" error: ") == 1

  caplog.set_level(logging.WARNING, logger="absl")
  with locks.hold_workdir(work):  # The killed run's lock is stale: taken over.
    pass
  assert any(f"pid {first.pid}" in r.getMessage() and "Taking over" in r.getMessage()
             for r in caplog.records)
  assert not os.path.exists(lock_path)


_MULTIHOST = textwrap.dedent("""
    import os, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from lang_neuron_jax.runtime import distributed, locks
    from lang_neuron_jax.errors import LockedError
    port, pid, held, free = sys.argv[1:]
    distributed.initialize(f"localhost:{port}", 2, int(pid))
    try:
      with locks.hold_workdir(held):
        print("entered held")
    except LockedError as e:
      print("refused held:", e)
    with locks.hold_workdir(free):
      distributed.barrier("inside")
      print("entered free; lock files:", sorted(os.listdir(free)))
      distributed.barrier("leaving")
""")


def test_multihost_run_holds_its_workdir_once_and_is_refused_together(tmp_path):
  held, free = str(tmp_path / "held"), str(tmp_path / "free")
  os.makedirs(held)
  sleeper = subprocess.Popen(["sleep", "120"])
  try:
    _holder_file(os.path.join(held, locks.WORKDIR_LOCK), sleeper.pid)
    with socket.socket() as s:
      s.bind(("localhost", 0))
      port = s.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, "-c", _MULTIHOST, str(port), str(i), held, free],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env()) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
  finally:
    sleeper.kill()
    sleeper.wait()
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
    assert "refused held" in out and "entered held" not in out, out
    assert f"entered free; lock files: ['{locks.WORKDIR_LOCK}']" in out, out
  assert f"in use by pid {sleeper.pid}" in outs[0][0]  # process 0 names the holder
  assert os.listdir(free) == []


def test_binary_prints_bad_input_as_one_line_and_traceback_on_request(tmp_path):
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "find_neurons.py"),
         "--model=gemma-9000", f"--workdir={tmp_path / 'w'}"]
  plain = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
  assert plain.returncode == 1
  assert "Traceback" not in plain.stderr
  lines = plain.stderr.strip().splitlines()
  assert lines[-1].startswith("find_neurons.py: error: Unknown model 'gemma-9000'"), lines
  assert plain.stderr.count("gemma-9000") == 1
  verbose = subprocess.run(cmd + ["--traceback"], capture_output=True, text=True, timeout=300,
                           env=_env())
  assert verbose.returncode != 0
  assert "Traceback" in verbose.stderr and "Unknown model 'gemma-9000'" in verbose.stderr


def test_only_the_librarys_own_errors_are_user_facing():
  def raised(fn):
    try:
      fn()
    except Exception as e:  # pylint: disable=broad-except
      return e
    raise AssertionError("no error")

  assert cli.is_user_facing(raised(lambda: loading.load_model("gemma-9000")))
  assert cli.is_user_facing(UserError("x"))
  # A ValueError from inside numpy is a bug somewhere, not bad input: keep its traceback.
  assert not cli.is_user_facing(raised(lambda: np.zeros(3).reshape(2)))
  assert not cli.is_user_facing(raised(lambda: {}["k"]))
  # The type decides, not where it was raised: a plain ValueError is a bug even in the
  # package, and every error that errors.py lists is the user's (the binaries test it).
  from lang_neuron_jax import data, errors
  from lang_neuron_jax.models import convert
  from lang_neuron_jax.runtime import stages
  assert not cli.is_user_facing(ValueError("from inside the package"))
  for kind in (errors.ConfigError, errors.CorpusError, errors.CheckpointMismatchError,
               errors.MissingFileError, errors.NonFiniteError, errors.StageMismatchError,
               errors.LockedError, data.CorpusError, convert.CheckpointMismatchError,
               stages.StageMismatchError):
    assert cli.is_user_facing(kind("x")), kind
  assert isinstance(raised(lambda: loading.load_model("/no/such/model.gguf")),
                    FileNotFoundError)  # MissingFileError is a FileNotFoundError too
