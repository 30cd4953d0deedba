"""A control run interrupted in its translation stage (continuous batching) resumes from
the stage's journal to the records of an uninterrupted run."""

import os

import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax.runtime import artifacts
from lang_neuron_jax.generation import continuous
from lang_neuron_jax.control import stage as control_stage
from lang_neuron_jax.find import stage as find
from tests.conftest import write_small_corpus


def test_translation_interrupted_mid_stage_resumes_to_identical_records(
    tiny_gemma3_with_tokenizer, tmp_path, monkeypatch):
  lm = lnj.load_model(tiny_gemma3_with_tokenizer)
  corpus = write_small_corpus(str(tmp_path / "corpus"), languages=("en", "de", "ja"))
  found = find.find_neurons(lm, find.FindConfig(languages=("en", "de", "ja"), corpus_dir=corpus,
                                                n=20, batch_size=16),
                            str(tmp_path / "find"), progress=False)
  config = control_stage.ControlConfig(
      languages=("de", "ja"), samples=2, max_new_tokens=4, ns=(2,), main_n=10,
      translation_pairs=3, translation_tokens=12, translation_n=10, translation_slots=2)
  run = lambda work: control_stage.run_control(lm, found.expertise, config, str(work),
                                               expertise_stamp=found.stamp, progress=False)
  reference = run(tmp_path / "ref")

  real_fill, fills = continuous.fill, []

  def interrupted_fill(*args, **kwargs):
    fills.append(1)
    if len(fills) == 4:  # Some rows are in the journal, others still queued.
      raise KeyboardInterrupt("killed in the translation stage")
    return real_fill(*args, **kwargs)

  work = tmp_path / "work"
  monkeypatch.setattr(continuous, "fill", interrupted_fill)
  with pytest.raises(KeyboardInterrupt):
    run(work)
  journal = work / "translation.journal0.jsonl"
  written = len(artifacts.read_jsonl(str(journal))) - 1  # minus the header
  assert 0 < written < len(reference.records["translation"])
  assert (work / "unconditional.stage.json").exists()
  assert not (work / "translation.stage.json").exists()

  monkeypatch.setattr(continuous, "fill", real_fill)
  resumed = run(work)
  assert resumed.records == reference.records
  assert resumed.metrics == reference.metrics
  assert not [f for f in os.listdir(work) if ".journal" in f]
