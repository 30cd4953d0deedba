"""Qwen2 on the shared decoder against transformers' PyTorch ``Qwen2ForCausalLM``.

Tiny random models (grouped-query and multi-head attention, tied and untied heads, one
with the sliding window on), saved and loaded through ``load_model``: logits and every
tap site within 1e-5 (of the reference's scale) in float32, full forward equal to
prefill + decode, a bfloat16-saved checkpoint, presets against the published parameter
counts, and the family's prompt policy.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax.errors import UserError
from lang_neuron_jax.models.loading import abstract_params, all_presets
from lang_neuron_jax.models import qwen2
from tests.test_gemma3_parity import assert_close, assert_prefill_decode_equals_forward

_SITES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
          "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
          "down": "mlp.down_proj", "gate_act": "mlp.act_fn"}

CONFIGS = {
    # Grouped-query attention, tied head (as Qwen2.5-0.5B/1.5B).
    "gqa_tied": dict(vocab_size=101, hidden_size=48, intermediate_size=72,
                     num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                     tie_word_embeddings=True, rope_theta=1_000_000.0),
    # Multi-head attention, untied head (as Qwen2.5-7B's layout), odd widths.
    "mha_untied": dict(vocab_size=97, hidden_size=36, intermediate_size=50,
                       num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=3,
                       tie_word_embeddings=False, rope_theta=500.0, rms_norm_eps=1e-5),
    # The sliding window on (off in every published config): layers from
    # max_window_layers on see 4 tokens of the 11.
    "gqa_sliding": dict(vocab_size=101, hidden_size=48, intermediate_size=72,
                        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1,
                        tie_word_embeddings=False, use_sliding_window=True,
                        sliding_window=4, max_window_layers=1),
}


def build(kwargs, directory, seed=0, dtype=None):
  """A random ``Qwen2ForCausalLM`` saved to ``directory``; norms and biases randomised
  (they start at 1/0) so that a mistake in either shows."""
  import torch
  import transformers

  torch.manual_seed(seed)
  model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**kwargs)).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name or "bias" in name:
        p.add_(torch.randn_like(p) * 0.3)
  if dtype is not None:
    model = model.to(dtype)
  model.save_pretrained(directory)
  return model


def torch_taps(model, ids):
  """Logits and ``{site: [B, T, L, U]}`` from the PyTorch model via forward hooks."""
  import torch

  found, handles = {}, []
  for i, layer in enumerate(model.model.layers):
    for site, path in _SITES.items():
      handles.append(layer.get_submodule(path).register_forward_hook(
          lambda m, inp, out, site=site, i=i: found.setdefault(site, {}).__setitem__(
              i, out.detach())))
    handles.append(layer.mlp.down_proj.register_forward_hook(
        lambda m, inp, out, i=i: found.setdefault("act", {}).__setitem__(i, inp[0].detach())))
    handles.append(layer.register_forward_hook(
        lambda m, inp, out, i=i: found.setdefault("resid", {}).__setitem__(
            i, (out[0] if isinstance(out, tuple) else out).detach())))
  with torch.no_grad():
    logits = model(torch.tensor(ids)).logits.float().numpy()
  for h in handles:
    h.remove()
  n = len(model.model.layers)
  return logits, {s: np.stack([v[i].float().numpy() for i in range(n)], axis=2)
                  for s, v in found.items()}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_taps_and_cache_match(tmp_path, name):
  kwargs = CONFIGS[name]
  model = build(kwargs, str(tmp_path))
  lm = lnj.load_model(str(tmp_path))
  cfg = lm.config
  assert cfg.family == "qwen2" and cfg.tie_embeddings == kwargs["tie_word_embeddings"]
  assert ("lm_head" in lm.params) != kwargs["tie_word_embeddings"]
  # Biases on q, k, v only.
  attn = lm.params["layer_0"]["attn"]
  assert all("bias" in attn[f"{p}_proj"] for p in "qkv") and "bias" not in attn["o_proj"]
  if kwargs.get("use_sliding_window"):
    assert cfg.layer_kinds == ("global", "local", "local") and cfg.sliding_window == 4
  ids = np.random.RandomState(1).randint(0, kwargs["vocab_size"], size=(2, 11))
  ref_logits, ref_taps = torch_taps(model, ids)
  logits, taps = lnj.capture_taps(lm.module, lm.params, jnp.asarray(ids, jnp.int32))
  assert_close(logits, ref_logits, "logits")
  assert set(taps) == set(ref_taps) == set(cfg.site_widths)
  for site in taps:
    assert taps[site].shape[-1] == cfg.site_widths[site]
    assert_close(taps[site], ref_taps[site], f"site {site}")
  # Full forward == prefill + token-by-token decode (through the sliding window too).
  assert_prefill_decode_equals_forward(lm, ids, logits)


def test_bfloat16_checkpoint_loads(tmp_path):
  import torch

  model = build(CONFIGS["gqa_tied"], str(tmp_path), dtype=torch.bfloat16)
  lm = lnj.load_model(str(tmp_path))  # float32 parameters from bfloat16 tensors
  assert lm.params["embed"]["embedding"].dtype == jnp.float32
  ids = np.random.RandomState(2).randint(0, 101, size=(1, 9))
  ref = torch_taps(model.float(), ids)[0]  # the same bfloat16 values, in float32
  logits = lm.module.apply({"params": lm.params}, jnp.asarray(ids)).logits
  assert_close(logits, ref, "logits of a bfloat16 checkpoint")


def test_sliding_window_needs_its_rope_to_match_the_global_layers():
  cfg = qwen2.config_from_hf(dict(CONFIGS["gqa_sliding"], vocab_size=101,
                                  rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                   "rope_theta": 100.0}))
  assert cfg.rope_base_local == cfg.rope_base_global == 100.0
  assert cfg.rope_scale_local == cfg.rope_scale_global == 2.0


def test_unsupported_rope_scaling_is_refused_by_name():
  with pytest.raises(UserError, match="yarn"):
    qwen2.config_from_hf(dict(CONFIGS["gqa_tied"], rope_parameters={
        "rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6,
        "original_max_position_embeddings": 32768}))


# Published totals (the model cards' 0.49B, 1.54B, 7.61B, to the parameter).
@pytest.mark.parametrize("preset,total", [
    ("qwen2.5-0.5b", 494_032_768), ("qwen2.5-1.5b", 1_543_714_304),
    ("qwen2.5-7b", 7_615_616_512),
    # The GGUF's separate output matrix: 151,936 x 896 more.
    ("qwen2.5-coder-0.5b", 494_032_768 + 151_936 * 896)])
def test_preset_parameter_counts(preset, total):
  import torch
  import transformers

  cfg = all_presets()[preset]
  hf = transformers.Qwen2Config(
      vocab_size=cfg.vocab_size, hidden_size=cfg.width, intermediate_size=cfg.mlp_width,
      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
      num_key_value_heads=cfg.num_kv_heads, tie_word_embeddings=cfg.tie_embeddings)
  with torch.device("meta"):
    ref = transformers.Qwen2ForCausalLM(hf).num_parameters()
  ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract_params(cfg)))
  assert ours == ref == total


def test_coder_neuron_count():
  cfg = all_presets()["qwen2.5-coder-0.5b"]
  per_layer = sum(cfg.site_widths[s] for s in cfg.neuron_sites)
  assert (per_layer, per_layer * cfg.num_layers) == (12_672, 304_128)


def test_config_from_hf_reads_qwens_own_token_ids():
  cfg = qwen2.config_from_hf(dict(CONFIGS["gqa_tied"], vocab_size=151_936,
                                  bos_token_id=151_643, eos_token_id=151_645))
  assert cfg.bos_token_id is None  # the tokenizer adds none
  assert cfg.document_start_token_id == 151_643 and cfg.eos_token_id == 151_645
