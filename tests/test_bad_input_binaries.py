"""Bad input to the binaries: one line naming what to fix, exit status 1, no traceback,
and, where the flags alone decide, before any weights are loaded or texts are run."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_binary(binary, *flags):
  cmd = [sys.executable, os.path.join(ROOT, "experiments", binary), *flags]
  return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def assert_one_line_error(out, binary, expected):
  assert out.returncode == 1, out.stderr[-2000:]
  assert "Traceback" not in out.stderr, out.stderr[-2000:]
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith(f"{binary}: error: ") and expected in last, last


@pytest.mark.parametrize("binary,flags,expected", [
    ("find_neurons.py", ["--n=-5"], "N must be an integer from 2 to 124416"),
    ("find_neurons.py", ["--n=7"], "N=7 is odd"),
    # The memory plan's verdict, before the weights load.
    ("find_neurons.py", ["--device_memory_gb=0.01"], "gemma3-270m in float32 does not fit"),
    ("reproduce.py", ["--n=3"], "N=3 is odd"),
    ("reproduce.py", ["--languages=en,de", "--targets=fr"], "Target languages ['fr']"),
    ("compare_methods.py", ["--methods=ap,pca"], "Unknown method 'pca'"),
    ("compare_methods.py", ["--diffmean_layer=18"], "layer 18 is out of range"),
    ("compare_methods.py", ["--methods=ap,probe", "--probe_layer=-1"],
     "probe: layer -1 is out of range"),
    ("compare_methods.py", ["--probe_layer=3"], "--probe_layer is given but probe is not"),
    # One spelling of the scale in both binaries.
    ("reproduce.py", ["--quick", "--paper"], "Give --quick or --paper, not both"),
    ("compare_methods.py", ["--quick", "--paper"], "Give --quick or --paper, not both"),
])
def test_flag_errors_come_before_any_work(tmp_path, binary, flags, expected):
  out = run_binary(binary, f"--workdir={tmp_path / 'w'}", *flags)
  assert_one_line_error(out, binary, expected)
  assert "Loaded" not in out.stderr and "responses" not in out.stderr  # no weights, no texts


def test_control_without_a_find_stage(tmp_path):
  out = run_binary("control.py", f"--find_workdir={tmp_path / 'nothing'}",
                   f"--workdir={tmp_path / 'w'}")
  assert_one_line_error(out, "control.py", "run experiments/find_neurons.py")


def test_unknown_language_and_malformed_corpus(tiny_gemma3_with_tokenizer, tmp_path):
  model = f"--model={tiny_gemma3_with_tokenizer}"
  out = run_binary("find_neurons.py", model, f"--workdir={tmp_path / 'a'}", "--languages=en,xx")
  assert_one_line_error(out, "find_neurons.py", "xx")
  corpus = tmp_path / "corpus"
  corpus.mkdir()
  with open(os.path.join(ROOT, "lang_neuron_jax", "data", "sense", "en.json")) as f:
    (corpus / "en.json").write_text(json.dumps(json.load(f)))
  (corpus / "de.json").write_text('{"sentences": {"positive": ["Hallo"')  # cut short
  out = run_binary("find_neurons.py", model, f"--workdir={tmp_path / 'b'}",
                   "--languages=en,de", f"--corpus_dir={corpus}")
  assert_one_line_error(out, "find_neurons.py", "de.json")


@pytest.mark.parametrize("binary", ["find_neurons.py", "reproduce.py"])
def test_a_locked_workdir_is_refused_before_the_model_loads(tiny_gemma3_with_tokenizer,
                                                            tmp_path, binary):
  """A live run holds the work directory; the second is refused before it reads weights.

  The checkpoint's weights are cut short, so a binary that loaded them before taking the
  lock would stop with the damaged-checkpoint error instead of the lock's."""
  import dataclasses
  import shutil

  from lang_neuron_jax.runtime import locks

  model = tmp_path / "model"
  shutil.copytree(tiny_gemma3_with_tokenizer, model)
  weights = model / "model.safetensors"
  weights.write_bytes(weights.read_bytes()[:1000])
  workdir = tmp_path / "w"
  workdir.mkdir()
  sleeper = subprocess.Popen(["sleep", "120"])
  try:
    holder = dataclasses.replace(locks._me(), pid=sleeper.pid,  # pylint: disable=protected-access
                                 started=locks._start_time(sleeper.pid), command="first run")  # pylint: disable=protected-access
    (workdir / locks.WORKDIR_LOCK).write_text(json.dumps(dataclasses.asdict(holder)))
    out = run_binary(binary, f"--model={model}", f"--workdir={workdir}", "--quick"
                     if binary == "reproduce.py" else "--n=20")
    assert_one_line_error(out, binary, f"is in use by pid {sleeper.pid}")
  finally:
    sleeper.kill()
    sleeper.wait()


@pytest.mark.parametrize("script,flag", [("expertise.py", "--units=0"),
                                            ("generation.py", "--samples=-3")])
def test_benchmarks_answer_bad_flags_in_one_line(script, flag):
  cmd = [sys.executable, os.path.join(ROOT, "benchmarks", script), flag]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert_one_line_error(out, script, f"{flag.split('=')[0]} must be positive")
