"""Greedy KV-cache generation against a naive full-forward loop."""

import jax
import jax.numpy as jnp
import numpy as np

import lang_neuron_jax as lnj
from lang_neuron_jax.generation import batching, sampling
from tests.conftest import greedy_by_full_forward
from tests.test_decoder import tiny_config


def test_greedy_matches_naive_loop_for_rows_of_different_lengths():
  cfg = tiny_config(eos_token_id=66)
  module = lnj.Decoder(cfg)
  params = module.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"]
  rng = np.random.RandomState(0)
  prompts = [list(rng.randint(2, 60, n)) for n in (3, 9, 1)]
  ids, lengths = batching.pad_prompts(prompts, cfg.pad_token_id)
  assert ids.shape == (3, 16)
  tokens, counts = sampling.generate(cfg, params, jnp.asarray(ids), jnp.asarray(lengths),
                                            max_new_tokens=12)
  forward = jax.jit(lambda x: module.apply({"params": params}, x).logits)
  for row, prompt in enumerate(prompts):
    ref = greedy_by_full_forward(forward, prompt, 12, width=32, eos=cfg.eos_token_id)
    assert list(np.asarray(tokens[row, :counts[row]])) == ref


def test_generation_stops_at_eos_and_pads_after():
  cfg = tiny_config()
  module = lnj.Decoder(cfg)
  params = module.init(jax.random.key(1), jnp.zeros((1, 1), jnp.int32))["params"]
  # Make EOS the argmax everywhere by biasing its embedding row (tied head).
  emb = params["embed"]["embedding"]
  params = {**params, "embed": {"embedding": emb.at[cfg.eos_token_id].set(emb[0] * 0 + 50.0)}}
  ids, lengths = batching.pad_prompts([[2, 3], [4]], cfg.pad_token_id)
  tokens, counts = sampling.generate(cfg, params, jnp.asarray(ids), jnp.asarray(lengths),
                                            max_new_tokens=5)
  assert np.asarray(counts).tolist() == [1, 1]
  assert np.asarray(tokens[:, 1:]).tolist() == [[cfg.pad_token_id] * 4] * 2


def test_bucket_length():
  assert batching.bucket_length(1) == 1 and batching.bucket_length(3) == 4
  assert batching.bucket_length(9) == 16 and batching.bucket_length(17) == 32
  assert batching.bucket_length(600) == 1024


def test_filter_logits_top_k_and_top_p():
  # Probabilities 0.5, 0.25, 0.125, 0.125 (log-space logits).
  logits = jnp.log(jnp.array([[0.5, 0.25, 0.125, 0.125]]))
  k2 = sampling.filter_logits(logits, sampling.Sampler(temperature=1.0, top_k=2))
  assert np.isfinite(np.asarray(k2)).tolist() == [[True, True, False, False]]
  p = sampling.filter_logits(logits, sampling.Sampler(temperature=1.0, top_p=0.7))
  assert np.isfinite(np.asarray(p)).tolist() == [[True, True, False, False]]
  p_small = sampling.filter_logits(logits, sampling.Sampler(temperature=1.0, top_p=0.1))
  assert np.isfinite(np.asarray(p_small)).tolist() == [[True, False, False, False]]
  t = sampling.filter_logits(logits, sampling.Sampler(temperature=2.0))
  np.testing.assert_allclose(np.asarray(t), np.asarray(logits) / 2)


def test_sampling_follows_the_distribution():
  logits = jnp.log(jnp.array([[0.7, 0.2, 0.1, 1e-9]] * 4000))
  keys = jax.random.split(jax.random.key(0), 4000)
  tokens = np.asarray(sampling.next_token(logits, keys, sampling.Sampler(temperature=1.0)))
  freq = np.bincount(tokens, minlength=4) / 4000
  np.testing.assert_allclose(freq, [0.7, 0.2, 0.1, 0.0], atol=0.03)
  top1 = sampling.next_token(logits, keys, sampling.Sampler(temperature=1.0, top_k=1))
  assert np.all(np.asarray(top1) == 0)


def test_two_level_sampling_over_a_large_vocabulary():
  """Several blocks, excluded tokens never drawn, frequencies follow the probabilities."""
  v = 1500
  logits = np.full((1, v), -np.inf, np.float32)
  allowed = {3: 0.5, 700: 0.3, 1499: 0.2}  # In the first, a middle and the (padded) last block.
  for t, p in allowed.items():
    logits[0, t] = np.log(p)
  logits = jnp.asarray(np.repeat(logits, 3000, axis=0))
  keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.key(3), r))(jnp.arange(3000))
  tokens = np.asarray(sampling.sample_categorical(keys, logits))
  assert set(tokens.tolist()) <= set(allowed)
  for t, p in allowed.items():
    assert abs(np.mean(tokens == t) - p) < 0.03


def test_invalid_sampler():
  import pytest
  with pytest.raises(ValueError, match="top_p"):
    sampling.Sampler(temperature=1.0, top_p=0.0)


def test_samples_are_deterministic_and_independent_of_the_batch():
  cfg = tiny_config()
  module = lnj.Decoder(cfg)
  params = module.init(jax.random.key(2), jnp.zeros((1, 1), jnp.int32))["params"]
  warm = sampling.Sampler(temperature=0.8)
  ids, lengths = batching.pad_prompts([[2]] * 4, cfg.pad_token_id)
  run = lambda ids, lengths, rows, seed=0: np.asarray(sampling.generate(
      cfg, params, jnp.asarray(ids), jnp.asarray(lengths), max_new_tokens=10, sampler=warm,
      seed=seed, row_ids=jnp.asarray(rows, jnp.int32))[0])
  a = run(ids, lengths, [0, 1, 2, 3])
  assert np.array_equal(a, run(ids, lengths, [0, 1, 2, 3]))
  assert len({tuple(r) for r in a}) > 1  # Rows differ from each other.
  # Row 2 alone, or next to other rows, gives the same sample.
  ids2, lengths2 = batching.pad_prompts([[2], [2, 7, 9]], cfg.pad_token_id)
  b = run(ids2, lengths2, [2, 17])
  assert np.array_equal(b[0], a[2])
  assert not np.array_equal(run(ids, lengths, [0, 1, 2, 3], seed=1), a)


def test_line_stop_rules():
  # Tokens: 0 "a", 1 "\n", 2 "b\n", 3 "\nc", 4 " ", 5 "\nd\n".
  table = np.array([
      # newline, before, between, content
      [0, 1, 1, 1, 0, 1],
      [0, 0, 1, 0, 0, 0],
      [0, 0, 0, 0, 0, 1],
      [1, 0, 1, 1, 0, 1],
  ], bool)
  stop = sampling.LineStop(*(jnp.asarray(t) for t in table))
  def run(tokens):
    has = jnp.zeros(1, bool)
    for i, t in enumerate(tokens):
      s, has = stop.update(jnp.asarray([t]), has)
      if bool(s[0]):
        return i
    return None
  assert run([1, 4, 1, 0, 4, 1]) == 5  # Leading empty lines are skipped.
  assert run([2]) == 0  # Content then newline in one token.
  assert run([3, 0, 1]) == 2  # "\nc" starts the first line.
  assert run([5]) == 0  # A whole line inside one token.
  assert run([0, 0]) is None


def test_line_stop_keeps_the_first_line(tiny_gemma3_with_tokenizer):
  from lang_neuron_jax.control import conditions
  lm = lnj.load_model(tiny_gemma3_with_tokenizer)
  # Bias the (tied) embedding of the newline token so that lines end often.
  newline = lm.tokenizer("\n", add_special_tokens=False).input_ids[0]
  emb = lm.params["embed"]["embedding"]
  params = {**lm.params, "embed": {"embedding": emb.at[newline].multiply(8.0)}}
  lm = lnj.LanguageModel(lm.module, params, lm.config, lm.tokenizer, lm.source)
  prompts = [lm.tokenizer(t).input_ids for t in ("English: a\nTarget:", "Hallo", "x")]
  ids, lengths = batching.pad_prompts(prompts, lm.config.pad_token_id)
  stop = sampling.line_stop_for(lm.tokenizer, lm.config.vocab_size)
  full, n_full = sampling.generate(lm.config, lm.params, jnp.asarray(ids), jnp.asarray(lengths),
                                   max_new_tokens=40)
  cut, n_cut = sampling.generate(lm.config, lm.params, jnp.asarray(ids), jnp.asarray(lengths),
                                 max_new_tokens=40, line_stop=stop)
  decode = lambda t, n: lm.tokenizer.decode(np.asarray(t[:n]), skip_special_tokens=True)
  shorter = 0
  for r in range(3):
    a, b = decode(full[r], n_full[r]), decode(cut[r], n_cut[r])
    assert conditions.cut_translation(a) == conditions.cut_translation(b)
    shorter += int(n_cut[r] < n_full[r])
  assert shorter >= 1
