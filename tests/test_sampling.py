"""Greedy KV-cache generation against a naive full-forward loop."""

import jax
import jax.numpy as jnp
import numpy as np

import lang_neuron_jax as lnj
from lang_neuron_jax import sampling
from tests.test_decoder import tiny_config


def naive_greedy(module, params, prompt, n, eos):
  out = list(prompt)
  for _ in range(n):
    logits = module.apply({"params": params}, jnp.asarray([out], jnp.int32))
    out.append(int(jnp.argmax(logits[0, -1])))
    if out[-1] == eos:
      break
  return out[len(prompt):]


def test_greedy_matches_naive_loop_for_rows_of_different_lengths():
  cfg = tiny_config(eos_token_id=66)
  module = lnj.Decoder(cfg)
  params = module.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"]
  rng = np.random.RandomState(0)
  prompts = [list(rng.randint(2, 60, n)) for n in (3, 9, 1)]
  ids, lengths = sampling.pad_prompts(prompts, cfg.pad_token_id)
  assert ids.shape == (3, 16)
  tokens, counts = sampling.greedy_generate(cfg, params, jnp.asarray(ids), jnp.asarray(lengths),
                                            max_new_tokens=12)
  for row, prompt in enumerate(prompts):
    ref = naive_greedy(module, params, prompt, 12, cfg.eos_token_id)
    assert list(np.asarray(tokens[row, :counts[row]])) == ref


def test_generation_stops_at_eos_and_pads_after():
  cfg = tiny_config()
  module = lnj.Decoder(cfg)
  params = module.init(jax.random.key(1), jnp.zeros((1, 1), jnp.int32))["params"]
  # Make EOS the argmax everywhere by biasing its embedding row (tied head).
  emb = params["embed"]["embedding"]
  params = {**params, "embed": {"embedding": emb.at[cfg.eos_token_id].set(emb[0] * 0 + 50.0)}}
  ids, lengths = sampling.pad_prompts([[2, 3], [4]], cfg.pad_token_id)
  tokens, counts = sampling.greedy_generate(cfg, params, jnp.asarray(ids), jnp.asarray(lengths),
                                            max_new_tokens=5)
  assert np.asarray(counts).tolist() == [1, 1]
  assert np.asarray(tokens[:, 1:]).tolist() == [[cfg.pad_token_id] * 4] * 2


def test_bucket_length():
  assert sampling.bucket_length(1) == 16 and sampling.bucket_length(17) == 32
  assert sampling.bucket_length(600) == 1024
