"""Continuous batching gives every row the tokens the one-batch sampler gives it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax.generation import batching, continuous, sampling
from lang_neuron_jax.models.taps import Intervention, SiteEdit
from tests.test_decoder import tiny_config


@pytest.fixture(scope="module")
def model():
  cfg = tiny_config(eos_token_id=66)
  params = lnj.Decoder(cfg).init(jax.random.key(5), jnp.zeros((1, 1), jnp.int32))["params"]
  return cfg, params


def random_interventions(cfg, rows: int) -> Intervention:
  """Per-row edits at two sites: row r fixes r units (row 0: none, a baseline)."""
  rng = np.random.RandomState(0)
  edits = {}
  for site, width in (("up", cfg.mlp_width), ("o", cfg.width)):
    mask = np.zeros((rows, cfg.num_layers, width), bool)
    for r in range(rows):
      mask[r].flat[rng.choice(mask[r].size, r, replace=False)] = True
    value = rng.randn(rows, cfg.num_layers, width).astype(np.float32) * 3
    edits[site] = SiteEdit.fix(mask, value)
  return Intervention(edits)


def line_stop_every(cfg, tokens) -> sampling.LineStop:
  """A LineStop whose "newline" tokens are ``tokens`` (each also has content before it)."""
  flags = np.zeros((4, cfg.vocab_size), bool)
  flags[0, tokens] = flags[1, tokens] = True
  flags[3] = True
  return sampling.LineStop(*(jnp.asarray(f) for f in flags))


def one_batch(cfg, params, prompts, iv, **kwargs):
  ids, lengths = batching.pad_prompts(prompts, cfg.pad_token_id)
  tokens, counts = sampling.generate(cfg, params, jnp.asarray(ids), jnp.asarray(lengths),
                                     intervention=iv, **kwargs)
  return [np.asarray(tokens)[r, :int(counts[r])].tolist() for r in range(len(prompts))]


@pytest.mark.parametrize("sampler", [sampling.GREEDY, sampling.Sampler(temperature=0.9)])
def test_rows_equal_the_one_batch_sampler(model, sampler):
  cfg, params = model
  rng = np.random.RandomState(1)
  prompts = [list(rng.randint(2, 60, n)) for n in (3, 9, 1, 5, 12, 2, 7, 4, 6, 8, 1)]
  iv = random_interventions(cfg, len(prompts))
  stop = line_stop_every(cfg, [5, 17, 23, 40, 51])
  expected = one_batch(cfg, params, prompts, iv, max_new_tokens=14, sampler=sampler, seed=3,
                       line_stop=stop)
  lengths = [len(e) for e in expected]
  assert min(lengths) < 14 and max(lengths) == 14  # Rows stop at different steps.
  seen = []
  rows = lambda idx: jax.tree.map(lambda a: a[np.asarray(idx)], iv)
  got = continuous.generate_continuously(
      cfg, params, prompts, max_new_tokens=14, num_slots=3, sampler=sampler, seed=3,
      interventions=rows, line_stop=stop, steps_per_call=2, fill_size=2, on_rows=seen.extend)
  assert got == expected
  assert sorted(i for i, _ in seen) == list(range(len(prompts)))
  assert all(got[i] == new for i, new in seen)


def test_without_interventions_or_line_stop(model):
  cfg, params = model
  prompts = [[2, 3, 4], [9], [5, 6]]
  expected = one_batch(cfg, params, prompts, None, max_new_tokens=6)
  got = continuous.generate_continuously(cfg, params, prompts, max_new_tokens=6, num_slots=2,
                                         fill_size=4)
  assert got == expected
  assert continuous.generate_continuously(cfg, params, [], max_new_tokens=6, num_slots=2) == []
  with pytest.raises(ValueError, match="at least one token"):
    continuous.generate_continuously(cfg, params, [[]], max_new_tokens=6, num_slots=2)
