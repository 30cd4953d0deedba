"""Two processes on localhost (jax.distributed, gloo collectives on CPU) give the same
results as one: each takes its share of the corpus batches and of the generation rows."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from tests.conftest import write_small_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _records(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def test_two_processes_give_the_results_of_one(tiny_gemma3_with_tokenizer, tmp_path):
  corpus = write_small_corpus(str(tmp_path / "corpus"), languages=("en", "de", "ja"))
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), "--quick",
         f"--model={tiny_gemma3_with_tokenizer}", "--languages=en,de,ja",
         f"--corpus_dir={corpus}", "--n=20", "--batch_size=8", "--targets=de"]
  one = subprocess.run(cmd + [f"--workdir={tmp_path / 'one'}"], capture_output=True,
                       text=True, timeout=900)
  assert one.returncode == 0, one.stderr[-3000:]
  port = _free_port()
  procs = [subprocess.Popen(
      cmd + [f"--workdir={tmp_path / 'two'}", "--num_processes=2", f"--process_id={i}",
             f"--coordinator_address=localhost:{port}"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-3000:]

  a, b = tmp_path / "one", tmp_path / "two"
  for site in ("q", "up", "down"):  # Same batches, same shapes: bitwise equal responses.
    np.testing.assert_array_equal(np.load(a / "find" / "responses" / f"{site}.npy"),
                                  np.load(b / "find" / "responses" / f"{site}.npy"))
  with np.load(a / "find" / "expertise.npz") as x, np.load(b / "find" / "expertise.npz") as y:
    for key in ("ap", "on_p50", "off_mean"):
      np.testing.assert_array_equal(x[key], y[key])
  for part in ("unconditional", "translation"):
    ra = _records(a / "control" / f"{part}.jsonl")
    rb = _records(b / "control" / f"{part}.jsonl")
    assert len(ra) == len(rb) > 0
    # Rows ran in other batches; per-row keys make the samples the same.
    assert [r["tokens"] for r in ra] == [r["tokens"] for r in rb], part
  assert (b / "report.md").exists()
  assert not list((b / "control").glob("*.journal*.jsonl"))  # row journals cleaned up
  assert not list((b / "find" / "responses").glob("*.journal*.jsonl"))


def test_both_processes_refuse_a_workdir_of_another_configuration(tiny_gemma3_with_tokenizer,
                                                                   tmp_path):
  """Every process raises the mismatch (none is left waiting at a barrier)."""
  corpus = write_small_corpus(str(tmp_path / "corpus"), languages=("en", "de"))
  responses_dir = tmp_path / "run" / "find" / "responses"
  responses_dir.mkdir(parents=True)
  journal = responses_dir / "responses.journal0.jsonl"  # a partial run of another config
  journal.write_text(json.dumps({"fingerprint": "another"}) + "\n" + json.dumps({"unit": 0}) + "\n")
  before = journal.read_text()
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), "--quick",
       f"--model={tiny_gemma3_with_tokenizer}", "--languages=en,de", f"--corpus_dir={corpus}",
       f"--workdir={tmp_path / 'run'}", "--num_processes=2", f"--process_id={i}",
       f"--coordinator_address=localhost:{port}"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=300)
    assert p.returncode != 0
    assert "another configuration" in err, err[-3000:]
  assert journal.read_text() == before


def test_bad_multihost_arguments_are_refused():
  import pytest

  from lang_neuron_jax.runtime import distributed
  with pytest.raises(ValueError, match="coordinator address"):
    distributed.initialize(None, 2, 0)
  with pytest.raises(ValueError, match="process_id"):
    distributed.initialize("localhost:1", 2, 2)
  distributed.initialize(None, 1, 0)  # one process: nothing to do


def test_one_process_shares_everything():
  from lang_neuron_jax.runtime import distributed
  items = list(range(11))
  assert distributed.share(items) == items
