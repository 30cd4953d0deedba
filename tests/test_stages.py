"""The one stage mechanism: fingerprints, reuse, journals, commits, other configurations."""

import json
import os

import pytest

from lang_neuron_jax.runtime import artifacts, stages


def stage(tmp_path, config=None, **kwargs):
  return stages.Stage(str(tmp_path), "part", config=config or {"n": 1}, model_id="m", **kwargs)


def test_fingerprint_follows_config_model_and_inputs(tmp_path):
  base = stage(tmp_path)
  assert base.fingerprint == stage(tmp_path).fingerprint
  assert base.fingerprint != stage(tmp_path, {"n": 2}).fingerprint
  assert base.fingerprint != stages.Stage(str(tmp_path), "part", config={"n": 1},
                                          model_id="other").fingerprint
  upstream = stages.Stamp("scores", "abc")
  assert stage(tmp_path, inputs=[upstream]).fingerprint != base.fingerprint
  assert stage(tmp_path, inputs=[upstream]).fingerprint != stage(
      tmp_path, inputs=[stages.Stamp("scores", "abd")]).fingerprint


def test_commit_then_reuse_and_a_new_config_runs_again(tmp_path):
  s = stage(tmp_path)
  out = s.path("out.json")
  assert s.reuse(lambda: pytest.fail("not finished yet")) is None
  result = s.commit(lambda: artifacts.write_json(out, [1, 2]) or [1, 2], summary=lambda r: {"rows": len(r)})
  assert result == [1, 2]
  assert artifacts.read_json(s.stamp_path) == {"stage": "part", "fingerprint": s.fingerprint,
                                               "rows": 2}
  assert stage(tmp_path).reuse(lambda: artifacts.read_json(out)) == [1, 2]
  assert stages.recorded_stamp(str(tmp_path), "part") == s.stamp
  assert stages.recorded_stamp(str(tmp_path), "other") is None
  assert stage(tmp_path, {"n": 2}).reuse(lambda: pytest.fail("other config")) is None
  with pytest.raises(stages.StageMismatchError, match="another configuration"):
    stage(tmp_path, {"n": 2}, keep_other=False).finished()


def test_a_failed_write_leaves_no_stamp_and_no_output(tmp_path):
  s = stage(tmp_path)

  def write():
    with artifacts.atomic_file(s.path("big.npy"), "wb") as f:
      f.write(b"half")
      raise KeyboardInterrupt("killed while writing")

  with pytest.raises(KeyboardInterrupt):
    s.commit(write)
  assert os.listdir(tmp_path) == []
  assert s.finished() is None


def test_journal_resumes_across_processes_and_drops_a_torn_line(tmp_path):
  s = stage(tmp_path)
  journal = s.journal()
  assert journal.start() == {} and journal.exists()
  journal.append([{"unit": 0, "v": "a"}, {"unit": 1, "v": "b"}])
  # Another process's file, and a line torn by a kill.
  with open(s.path("part.journal1.jsonl"), "w") as f:
    f.write(json.dumps({"fingerprint": s.fingerprint}) + "\n" + json.dumps({"unit": 5}) + "\n")
  with open(s.path("part.journal0.jsonl"), "a") as f:
    f.write('{"unit": 2, "v": "tor')
  done = stage(tmp_path).journal().start()
  assert sorted(done) == [0, 1, 5] and done[1]["v"] == "b"
  with open(s.path("part.journal0.jsonl")) as f:  # Rewritten without the torn line.
    assert len(f.read().splitlines()) == 3
  s.commit(lambda: None)
  assert not [f for f in os.listdir(tmp_path) if ".journal" in f]


def test_journal_of_another_config_is_ignored_or_refused(tmp_path):
  other = stage(tmp_path, {"n": 9}).journal()
  other.start()
  other.append([{"unit": 0}])
  assert stage(tmp_path).journal().read() == {}
  with pytest.raises(stages.StageMismatchError, match="partial work"):
    stage(tmp_path, keep_other=False).journal().start()


def test_model_identity_ignores_fields_left_at_their_defaults():
  """A DecoderConfig field added with a default that changes nothing must not change
  existing models' ids (their work directories would all be recomputed)."""
  import dataclasses

  from lang_neuron_jax.models.loading import all_presets

  cfg = all_presets()["gemma3-270m"]
  ident = cfg.identity()
  assert "family" in ident and "vocab_size" in ident  # fields without defaults
  assert "logit_scale" not in ident and "parallel_block" not in ident  # left at defaults
  assert ident["qk_norm"] is True  # set by the family, so part of it
  changed = dataclasses.replace(cfg, logit_scale=0.5).identity()
  assert changed["logit_scale"] == 0.5 and changed != ident
