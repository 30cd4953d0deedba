"""Streaming pooled responses: correctness, batch independence, resume, guards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax.generation import batching
from lang_neuron_jax.find import responses
from lang_neuron_jax.runtime import stages
from lang_neuron_jax.models.activations import capture_taps
from tests.test_decoder import tiny_config


@pytest.fixture(scope="module")
def lm():
  cfg = tiny_config()
  module = lnj.Decoder(cfg)
  params = module.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"]
  return lnj.LanguageModel(module, params, cfg, None, "tiny")


def random_tokens(n, seed=0):
  rng = np.random.RandomState(seed)
  return [list(rng.randint(2, 60, rng.randint(1, 40))) for _ in range(n)]


def test_responses_equal_per_text_means(lm, tmp_path):
  tokens = random_tokens(11)
  out = responses.compute_responses(lm, tokens, str(tmp_path), batch_size=4, progress=False)
  for i in (0, 5, 10):
    _, taps = capture_taps(lm.module, lm.params, jnp.asarray([tokens[i]], jnp.int32))
    for site in lnj.NEURON_SITES:
      np.testing.assert_allclose(out[site][i], np.asarray(taps[site][0]).mean(axis=0),
                                 atol=1e-5, rtol=1e-5)


def test_batch_size_changes_results_only_within_float_tolerance(lm, tmp_path):
  tokens = random_tokens(9, seed=1)
  a = responses.compute_responses(lm, tokens, str(tmp_path / "a"), batch_size=2, progress=False)
  b = responses.compute_responses(lm, tokens, str(tmp_path / "b"), batch_size=8, progress=False)
  for site in lnj.NEURON_SITES:
    np.testing.assert_allclose(a[site], b[site], atol=1e-5, rtol=1e-5)


def test_interrupted_run_resumes_to_identical_arrays(lm, tmp_path, monkeypatch):
  tokens = random_tokens(10, seed=2)
  ref = responses.compute_responses(lm, tokens, str(tmp_path / "ref"), batch_size=2,
                                    progress=False)
  real = responses.pooled_taps
  calls = {"n": 0}

  def flaky(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == 3:
      raise KeyboardInterrupt("simulated interruption")
    return real(*args, **kwargs)

  monkeypatch.setattr(responses, "pooled_taps", flaky)
  work = str(tmp_path / "run")
  with pytest.raises(KeyboardInterrupt):
    responses.compute_responses(lm, tokens, work, batch_size=2, progress=False)
  assert not (tmp_path / "run" / "responses.stage.json").exists()
  monkeypatch.setattr(responses, "pooled_taps", real)
  out = responses.compute_responses(lm, tokens, work, batch_size=2, progress=False)
  for site in lnj.NEURON_SITES:
    assert np.array_equal(np.asarray(out[site]), np.asarray(ref[site])), site


def test_finished_stage_is_reused_and_other_configs_refused(lm, tmp_path, monkeypatch):
  tokens = random_tokens(5, seed=3)
  work = str(tmp_path)
  responses.compute_responses(lm, tokens, work, batch_size=2, progress=False)
  monkeypatch.setattr(responses, "pooled_taps", lambda *a, **k: pytest.fail("recomputed"))
  responses.compute_responses(lm, tokens, work, batch_size=2, progress=False)
  with pytest.raises(stages.StageMismatchError, match="another configuration"):
    responses.compute_responses(lm, tokens[:4], work, batch_size=2, progress=False)


def test_long_texts_are_dropped_and_reported():
  class Tok:
    def __call__(self, texts):
      return type("E", (), {"input_ids": [[2] + [5] * len(t) for t in texts]})()
  out = batching.tokenize_texts(Tok(), ["aa", "a" * 10, "aaa"], max_length=4)
  assert out.kept.tolist() == [True, False, True]
  assert out.tokens == ((2, 5, 5), (2, 5, 5, 5))
  with pytest.raises(ValueError, match="positive"):
    batching.tokenize_texts(Tok(), ["a"], max_length=0)


def test_non_finite_activations_stop_with_a_clear_error(lm, tmp_path, monkeypatch):
  real = responses.pooled_taps

  def poisoned(*args, **kwargs):
    out = dict(real(*args, **kwargs))
    out["v"] = out["v"].at[0, 1, 2].set(jnp.nan)
    return out

  monkeypatch.setattr(responses, "pooled_taps", poisoned)
  with pytest.raises(FloatingPointError, match="Non-finite responses at site 'v'"):
    responses.compute_responses(lm, random_tokens(4), str(tmp_path), batch_size=2, progress=False)
  assert not (tmp_path / "responses.stage.json").exists()
