"""Our Gemma 3 against transformers' PyTorch Gemma3ForCausalLM on tiny random models.

Logits and every tap site must agree within 1e-5 in float32. The PyTorch side is read
with forward hooks on the modules each site mirrors (see models/gemma3.py).
"""

import numpy as np
import pytest
import jax.numpy as jnp

import lang_neuron_jax as lnj
from lang_neuron_jax.models.activations import capture_taps
from tests.conftest import save_tiny_gemma3

CONFIGS = {
    # Grouped-query attention, sliding window (5) shorter than the sequence (19).
    "gqa_window": {},
    # Multi-head attention, odd widths, every layer global.
    "mha_odd": dict(hidden_size=30, intermediate_size=37, num_attention_heads=3,
                    num_key_value_heads=3, head_dim=10, num_hidden_layers=3,
                    layer_types=["full_attention"] * 3),
    # Multi-query attention, linear RoPE scaling on global layers (as Gemma 3 4B+).
    "mqa_scaled": dict(num_attention_heads=4, num_key_value_heads=1, num_hidden_layers=6,
                       sliding_window=3,
                       layer_types=["sliding_attention"] * 5 + ["full_attention"],
                       rope_parameters={
                           "full_attention": {"rope_type": "linear", "rope_theta": 10000.0,
                                              "factor": 8.0},
                           "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}),
}

_TORCH_SITES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
                "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
                "down": "mlp.down_proj", "gate_act": "mlp.act_fn"}


def torch_taps(model, ids):
  """Logits and ``{site: [B, T, L, U]}`` from the PyTorch model via forward hooks."""
  import torch

  found = {site: {} for site in lnj.ALL_SITES}
  handles = []
  for i, layer in enumerate(model.model.layers):
    for site, path in _TORCH_SITES.items():
      module = layer.get_submodule(path)
      handles.append(module.register_forward_hook(
          lambda m, inp, out, site=site, i=i: found[site].__setitem__(i, out.detach())))
    handles.append(layer.mlp.down_proj.register_forward_hook(
        lambda m, inp, out, i=i: found["act"].__setitem__(i, inp[0].detach())))
    handles.append(layer.register_forward_hook(
        lambda m, inp, out, i=i: found["resid"].__setitem__(
            i, (out[0] if isinstance(out, tuple) else out).detach())))
  with torch.no_grad():
    logits = model(torch.tensor(ids)).logits.numpy()
  for h in handles:
    h.remove()
  n = len(model.model.layers)
  return logits, {s: np.stack([found[s][i].numpy() for i in range(n)], axis=2)
                  for s in found if found[s]}


def assert_prefill_decode_equals_forward(lm, ids, logits, prefill: int = 5):
  """Prefill ``ids[:, :prefill]`` into a cache, then decode the rest token by token; the
  logits must equal the full forward's ``logits`` [B, T, V] (sliding windows included)."""
  import jax
  import jax.numpy as jnp

  import lang_neuron_jax as lnj

  B, T = ids.shape
  step = jax.jit(lambda params, ids, positions, cache: lm.module.apply(
      {"params": params}, ids, positions=positions, cache=cache))
  positions = jnp.broadcast_to(jnp.arange(prefill), (B, prefill))
  out = step(lm.params, jnp.asarray(ids[:, :prefill]), positions,
             lnj.init_cache(lm.config, B, max(16, T)))
  steps = [out.logits]
  for t in range(prefill, T):
    out = step(lm.params, jnp.asarray(ids[:, t:t + 1]), jnp.full((B, 1), t), out.cache)
    steps.append(out.logits)
  assert_close(jnp.concatenate(steps, 1), logits, "prefill + decode")


def assert_close(actual, expected, what, tol=1e-5):
  """Max abs difference within ``tol`` times the reference's scale (at least 1).

  The residual stream grows to ~10 in these models, where float32 rounding alone is
  ~1e-6 per operation, so the bound is relative to the largest reference value.
  """
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape, what
  err = np.abs(actual - expected).max()
  scale = max(1.0, np.abs(expected).max())
  assert err <= tol * scale, f"{what}: max abs diff {err:.3g} > {tol} * {scale:.3g}"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_and_every_tap_match_pytorch(tmp_path, name):
  model = save_tiny_gemma3(str(tmp_path), **CONFIGS[name])
  lm = lnj.load_model(str(tmp_path))
  ids = np.random.RandomState(1).randint(0, lm.config.vocab_size, size=(2, 19))
  ref_logits, ref_taps = torch_taps(model, ids)
  logits, taps = capture_taps(lm.module, lm.params, jnp.asarray(ids, jnp.int32))
  assert_close(logits, ref_logits, "logits")
  assert set(taps) == set(lm.config.site_widths)
  for site in lm.config.site_widths:
    assert taps[site].shape[-1] == lm.config.site_widths[site], site
    assert_close(taps[site], ref_taps[site], f"site {site}")


def test_config_read_from_checkpoint(tmp_path):
  save_tiny_gemma3(str(tmp_path), **CONFIGS["mqa_scaled"])
  cfg = lnj.load_model(str(tmp_path)).config
  assert cfg.layer_kinds == ("local",) * 5 + ("global",)
  assert cfg.rope_scale_global == 8.0 and cfg.rope_base_local == 100.0
  assert (cfg.num_heads, cfg.num_kv_heads, cfg.sliding_window) == (4, 1, 3)
