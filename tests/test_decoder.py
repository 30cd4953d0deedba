"""Invariances of the decoder: KV cache, interventions, taps and pooling."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax.generation import sampling
from lang_neuron_jax.models.activations import capture_taps, pooled_taps
from lang_neuron_jax.models import gemma3
from lang_neuron_jax.models.decoder import output_logits


def tiny_config(**overrides):
  cfg = lnj.DecoderConfig(
      family="gemma3", vocab_size=67, width=32, num_layers=4, num_heads=4, num_kv_heads=2,
      head_dim=8, mlp_width=48, layer_kinds=gemma3.layer_kinds(4, 2), sliding_window=4,
      rope_base_global=10_000.0, rope_base_local=100.0, query_scale=8 ** -0.5,
      norm_plus_one=True, qk_norm=True, sandwich_norms=True, embed_scale=32 ** 0.5,
      activation="gelu_tanh")
  return cfg.replace(**overrides)


@pytest.fixture(scope="module")
def model():
  cfg = tiny_config()
  module = lnj.Decoder(cfg)
  params = module.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"]
  # Random norm scales so that every code path contributes.
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: p + 0.3 * jax.random.normal(jax.random.key(len(path)), p.shape)
      if "scale" in str(path[-1]) else p, params)
  return module, params


def test_full_forward_equals_prefill_plus_decode(model):
  """Sequences longer than the sliding window (4): 15 tokens, prefill 6, decode 9."""
  module, params = model
  ids = jax.random.randint(jax.random.key(1), (2, 15), 0, 67)
  full = module.apply({"params": params}, ids).logits
  cache = lnj.init_cache(module.config, 2, 20)
  prefill = module.apply({"params": params}, ids[:, :6], cache=cache)
  steps, cache = [prefill.logits], prefill.cache
  for t in range(6, 15):
    pos = jnp.full((2, 1), t, jnp.int32)
    out = module.apply({"params": params}, ids[:, t:t + 1], positions=pos, cache=cache)
    steps.append(out.logits)
    cache = out.cache
  np.testing.assert_allclose(np.asarray(jnp.concatenate(steps, 1)), np.asarray(full),
                             atol=1e-5, rtol=1e-5)
  assert cache.max_length == 20


def test_rows_with_different_prompt_lengths_decode_independently(model):
  """Right padding: a short row's pads are overwritten by its own decode steps."""
  module, params = model
  ids = jax.random.randint(jax.random.key(2), (2, 12), 0, 67)
  lengths = jnp.array([7, 4])
  cache = lnj.init_cache(module.config, 2, 16)
  cache = module.apply({"params": params}, ids[:, :7], cache=cache).cache  # row 1 padded
  # Decode row 0's token 7 and row 1's token 4 in one call.
  step_ids = ids[jnp.arange(2), lengths][:, None]
  logits = module.apply({"params": params}, step_ids, positions=lengths[:, None],
                        cache=cache).logits
  for row, n in enumerate([7, 4]):
    ref = module.apply({"params": params}, ids[row:row + 1, :n + 1]).logits[0, -1]
    np.testing.assert_allclose(np.asarray(logits[row, 0]), np.asarray(ref), atol=1e-5, rtol=1e-5)


def _edits(cfg, batch=None):
  shape = lambda w: ((batch,) if batch else ()) + (cfg.num_layers, w)
  return {s: lnj.SiteEdit.none(shape(w)) for s, w in cfg.site_widths.items()}


def test_all_false_intervention_is_bitwise_identity(model):
  module, params = model
  ids = jax.random.randint(jax.random.key(3), (3, 9), 0, 67)
  plain = module.apply({"params": params}, ids).logits
  for batch in (None, 3):
    iv = lnj.Intervention(_edits(module.config, batch))
    edited = module.apply({"params": params}, ids, intervention=iv).logits
    assert np.array_equal(np.asarray(plain), np.asarray(edited))


def test_forcing_one_unit_changes_only_that_unit_of_its_tap(model):
  module, params = model
  cfg = module.config
  ids = jax.random.randint(jax.random.key(4), (2, 9), 0, 67)
  edits = _edits(cfg)
  edits["up"] = lnj.SiteEdit.fix(edits["up"].mask.at[1, 5].set(True),
                                 edits["up"].shift.at[1, 5].set(3.25))
  _, plain = capture_taps(module, params, ids)
  _, forced = capture_taps(module, params, ids, intervention=lnj.Intervention(edits))
  diff = np.array(plain["up"] != forced["up"])  # [B, T, L, U]
  assert np.all(np.asarray(forced["up"][:, :, 1, 5]) == 3.25)
  diff[:, :, 1, 5] = False
  assert not diff[:, :, :2].any()  # Nothing else in layers 0-1 of this site changed.
  # Earlier sites of the same layer are untouched.
  for site in ("q", "k", "v", "o", "gate"):
    assert np.array_equal(np.asarray(plain[site][:, :, :2]), np.asarray(forced[site][:, :, :2]))


def test_per_row_interventions(model):
  """Row 0 gets no edit, row 1 an edit; row 0 equals the plain run bitwise."""
  module, params = model
  ids = jax.random.randint(jax.random.key(5), (2, 6), 0, 67)
  edits = _edits(module.config, batch=2)
  edits["down"] = lnj.SiteEdit.fix(edits["down"].mask.at[1, 0, :].set(True),
                                   edits["down"].shift.at[1, 0, :].set(1.0))
  plain = module.apply({"params": params}, ids).logits
  out = module.apply({"params": params}, ids, intervention=lnj.Intervention(edits)).logits
  assert np.array_equal(np.asarray(out[0]), np.asarray(plain[0]))
  assert not np.allclose(np.asarray(out[1]), np.asarray(plain[1]))


def test_edit_forms_are_data():
  """fix, add and multiply are one form; rows of one batch may use different forms."""
  from lang_neuron_jax.models.taps import apply_edit
  x = jnp.arange(6.0).reshape(1, 2, 3)
  mask, value = jnp.array([True, False, True]), jnp.array([10.0, 10.0, 2.0])
  assert apply_edit(x, lnj.SiteEdit.fix(mask, value))[0, 1].tolist() == [10.0, 4.0, 2.0]
  assert apply_edit(x, lnj.SiteEdit.add(mask, value))[0, 1].tolist() == [13.0, 4.0, 7.0]
  assert apply_edit(x, lnj.SiteEdit.multiply(mask, value))[0, 1].tolist() == [30.0, 4.0, 10.0]
  forms = (lnj.SiteEdit.fix, lnj.SiteEdit.add, lnj.SiteEdit.multiply)
  rows = [f(mask, value) for f in forms]
  mixed = jax.tree.map(lambda *a: jnp.stack(a), *rows)  # [3, U] per field
  out = apply_edit(jnp.broadcast_to(x[0], (3, 2, 3)), mixed)
  for r, edit in enumerate(rows):
    assert np.array_equal(np.asarray(out[r]), np.asarray(apply_edit(x, edit)[0]))
  with pytest.raises(ValueError, match="sites"):
    lnj.Intervention({"mlp": None})
  with pytest.raises(ValueError, match="SiteEdit"):
    lnj.Intervention({"up": (mask, value)})


def test_pooled_taps_is_masked_mean_and_never_recompiles(model):
  module, params = model
  cfg = module.config
  ids = jax.random.randint(jax.random.key(6), (2, 8), 0, 67)
  mask = jnp.arange(8)[None, :] < jnp.array([[8], [5]])
  _, taps = capture_taps(module, params, ids)
  pooled = pooled_taps(cfg, params, ids, mask)
  assert set(pooled) == set(lnj.NEURON_SITES)
  for site, h in pooled.items():
    assert h.shape == (2, cfg.num_layers, cfg.site_widths[site])
    ref = [np.asarray(taps[site][r, :n]).mean(axis=0) for r, n in enumerate([8, 5])]
    # Two float32 computations of the same mean (in-graph pooling vs NumPy over the
    # captured taps): a few ulps apart, more on some CPUs' matmul kernels (1.7e-6 on
    # an AVX2 EPYC); a padding mistake would move means by ~0.1.
    np.testing.assert_allclose(np.asarray(h), np.stack(ref), rtol=1e-5, atol=1e-5)
  # Different neurons and values: same compiled function.
  before = pooled_taps._cache_size()
  for unit in range(3):
    edits = _edits(cfg)
    edits["q"] = lnj.SiteEdit.fix(edits["q"].mask.at[0, unit].set(True),
                                  edits["q"].shift.at[0, unit].set(float(unit)))
    pooled_taps(cfg, params, ids, mask, intervention=lnj.Intervention(edits))
  assert pooled_taps._cache_size() == before + 1


def test_config_validation():
  with pytest.raises(ValueError, match="layer_kinds"):
    tiny_config(num_layers=3)
  with pytest.raises(ValueError, match="multiple"):
    tiny_config(num_kv_heads=3)


def _matmul_fused_with_softmax(fn, *args) -> bool:
  """Whether XLA put a matmul and an exp or reduction in one fused computation."""
  text = jax.jit(fn).lower(*args).compile().as_text()
  return any("dot(" in comp and ("exponential(" in comp or "reduce(" in comp)
             for comp in re.split(r"\n\n", text))


def test_output_head_matmul_stays_out_of_the_samplers_fusion():
  # On CPU, XLA fuses the sampler's max and exp into the head's matmul at this size (a
  # 4,096-token vocabulary, 8 rows), and the fused kernel is slower on the embedded model;
  # output_logits' reduce_precision keeps the matmul on its own.
  if jax.default_backend() != "cpu":
    pytest.skip("the fusion is XLA:CPU's")
  cfg = tiny_config(vocab_size=4096, width=64)
  params = {"embed": {"embedding": jax.random.normal(jax.random.key(0), (4096, 64))}}
  hidden = jax.random.normal(jax.random.key(1), (8, 64))
  keys = jax.random.split(jax.random.key(2), 8)
  warm = sampling.Sampler(temperature=0.8)
  plain = lambda p, h, k: sampling.next_token(
      jnp.einsum("BD,VD->BV", h, p["embed"]["embedding"]), k, warm)
  if not _matmul_fused_with_softmax(plain, params, hidden, keys):
    pytest.skip("this XLA does not fuse the plain head with the sampler; the "
                "reduce_precision in output_logits may no longer be needed")
  ours = lambda p, h, k: sampling.next_token(output_logits(cfg, p, h), k, warm)
  assert not _matmul_fused_with_softmax(ours, params, hidden, keys)
  np.testing.assert_array_equal(jax.jit(plain)(params, hidden, keys),
                                jax.jit(ours)(params, hidden, keys))


def test_float32_reduce_precision_changes_no_bit():
  special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-39, 1.17549435e-38,
                      3.4028235e38, -3.4028235e38, 1.0, -2.5], np.float32)
  rng = np.random.default_rng(0)
  spread = rng.standard_normal(1000) * 10.0 ** rng.integers(-40, 38, 1000)
  x = np.concatenate([special, spread.astype(np.float32)])
  y = jax.jit(lambda v: jax.lax.reduce_precision(v, exponent_bits=8, mantissa_bits=23))(x)
  np.testing.assert_array_equal(np.asarray(y).view(np.uint32), x.view(np.uint32))
