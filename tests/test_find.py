"""The find stage and its binary, end to end on a tiny model with the real tokenizer."""

import json
import os
import subprocess
import sys

import numpy as np

import lang_neuron_jax as lnj
from lang_neuron_jax.generation import batching
from lang_neuron_jax.find import stage as find
from lang_neuron_jax.neurons import selection
from tests.conftest import write_small_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_find_binary_end_to_end(tiny_gemma3_with_tokenizer, tmp_path):
  corpus = write_small_corpus(str(tmp_path / "corpus"))
  work = str(tmp_path / "work")
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "find_neurons.py"),
         f"--model={tiny_gemma3_with_tokenizer}", f"--workdir={work}", "--languages=en,de,ja",
         f"--corpus_dir={corpus}", "--n=40", "--batch_size=16"]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "max overlap between languages" in out.stdout
  for name in ("expertise.npz", "analysis.json", "run.json", "overlap_top.png", "layers.png",
               "sites.png", "ap_histograms.png", "expertise/de.csv", "expertise/ja/expertise_limited_40_both.csv",
               "responses/q.npy"):
    assert os.path.exists(os.path.join(work, name)), name
  exp = selection.Expertise.load(os.path.join(work, "expertise.npz"))
  assert exp.languages == ("en", "de", "ja")
  assert exp.ap.shape == (3, exp.index.size) and np.isfinite(exp.ap).all()
  with open(os.path.join(work, "analysis.json")) as f:
    a = json.load(f)
  assert set(a["sufficiency"]) >= {"selected", "random"}
  with open(os.path.join(work, "expertise", "de.csv")) as f:
    header = f.readline().strip().split(",")
    first = f.readline().split(",")
  assert header[:7] == ["ap", "on_p50", "on_p90", "off_mean", "off_p50", "layer", "unit"]
  assert np.float32(first[0]) == exp.ap[1].max()
  # A second run reuses every stage (no recomputation) and gives the same scores.
  out2 = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert out2.returncode == 0, out2.stderr[-3000:]
  for stage in ("responses", "scores"):
    assert f"Reusing the finished '{stage}' stage" in out2.stderr, stage
  assert np.array_equal(selection.Expertise.load(os.path.join(work, "expertise.npz")).ap, exp.ap)


def test_dedup_gives_the_same_scores_as_running_each_language_alone(tiny_gemma3_with_tokenizer,
                                                                   tmp_path):
  """Scores from the shared distinct sentences equal scores from each file on its own."""
  from lang_neuron_jax.find import scoring as expertise, responses

  lm = lnj.load_model(tiny_gemma3_with_tokenizer)
  corpus_dir = write_small_corpus(str(tmp_path / "corpus"), positives=12, negatives=24)
  config = find.FindConfig(languages=("en", "de", "ja"), corpus_dir=corpus_dir, n=10,
                           batch_size=8, sites=("up",))
  result = find.find_neurons(lm, config, str(tmp_path / "work"), progress=False)
  with open(os.path.join(corpus_dir, "de.json")) as f:
    s = json.load(f)["sentences"]
  texts = s["positive"] + s["negative"]
  tok = batching.tokenize_texts(lm.tokenizer, texts)
  alone = responses.compute_responses(lm, tok.tokens, str(tmp_path / "alone"), sites=("up",),
                                      batch_size=8, progress=False)
  labels = np.arange(len(texts)) < len(s["positive"])
  ap = expertise.average_precision(alone["up"].reshape(len(texts), -1), labels)
  np.testing.assert_allclose(result.expertise.ap[1], ap, atol=1e-5)


def test_dropped_texts_are_counted_and_scores_refused_for_another_model_or_dtype(
    tiny_gemma3_with_tokenizer, tmp_path):
  """Texts over max_length are dropped and counted in run.json (``dropped_texts``, as the
  README says); load_scores refuses scores computed on another model or dtype, naming
  both models."""
  import types

  import jax.numpy as jnp
  import pytest

  from lang_neuron_jax.data import corpora as data

  lm = lnj.load_model(tiny_gemma3_with_tokenizer)
  corpus_dir = write_small_corpus(str(tmp_path / "corpus"), languages=("en", "de"),
                                  positives=12, negatives=24)
  texts = data.load_corpus(("en", "de"), corpus_dir=corpus_dir).texts
  lengths = np.array([len(ids) for ids in lm.tokenizer(list(texts)).input_ids])
  limit = int(np.median(lengths))
  expected = int((lengths > limit).sum())
  assert 0 < expected < len(texts)
  work = str(tmp_path / "work")
  config = find.FindConfig(languages=("en", "de"), corpus_dir=corpus_dir, n=4, batch_size=8,
                           sites=("up",), max_length=limit)
  result = find.find_neurons(lm, config, work, progress=False)
  with open(os.path.join(work, "run.json")) as f:
    run = json.load(f)
  assert run["dropped_texts"] == result.dropped_texts == expected
  assert run["texts"] == len(result.corpus.texts) == len(texts) - expected

  exp, stamp = find.load_scores(work, lm)  # the same model and dtype: accepted
  assert np.array_equal(exp.ap, result.expertise.ap) and stamp == result.stamp
  bf16 = lnj.load_model(tiny_gemma3_with_tokenizer, dtype=jnp.bfloat16)
  assert bf16.model_id != lm.model_id
  with pytest.raises(ValueError, match=r"computed on .*float32.*not on .*bfloat16"):
    find.load_scores(work, bf16)
  other = types.SimpleNamespace(model_id="another-model|float32|0123")
  with pytest.raises(ValueError, match="not on 'another-model"):
    find.load_scores(work, other)
