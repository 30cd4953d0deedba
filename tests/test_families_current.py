"""Llama 3.x, Qwen3, Mistral, Gemma 2 and Cohere on the shared decoder against
transformers' PyTorch models.

Tiny random models, saved and loaded through ``load_model``: logits and every tap site
within 1e-5 (of the reference's scale) in float32 for each head layout a family supports;
full forward equal to prefill + decode; one unit forced changes only that unit; a
bfloat16 checkpoint loads as its upcast weights; published parameter counts; each
family's unconditional prompt; configs we do not implement refused by name.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax.models.activations import capture_taps
from lang_neuron_jax.control import conditions
from lang_neuron_jax.errors import UserError
from lang_neuron_jax.models.loading import abstract_params, all_presets, load_config
from tests.test_gemma3_parity import assert_close, assert_prefill_decode_equals_forward

# transformers classes per family; every one names its modules as Llama does.
CLASSES = {"llama": ("LlamaForCausalLM", "LlamaConfig"),
           "qwen3": ("Qwen3ForCausalLM", "Qwen3Config"),
           "mistral": ("MistralForCausalLM", "MistralConfig"),
           "gemma2": ("Gemma2ForCausalLM", "Gemma2Config"),
           "cohere": ("CohereForCausalLM", "CohereConfig")}
TORCH_SITES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
               "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
               "down": "mlp.down_proj", "gate_act": "mlp.act_fn"}

T = 12  # Test sequence length: longer than every sliding window below.


def _llama3(factor, low, high, original, theta):
  return {"rope_type": "llama3", "rope_theta": theta, "factor": factor,
          "low_freq_factor": low, "high_freq_factor": high,
          "original_max_position_embeddings": original}


# Random tiny models' attention scores and logits are ~0.1, where a tanh soft cap of a few
# units is the identity to within 1e-5: scaling q, k and the (tied) embeddings makes the
# caps bite (each cap dropped fails the test).
_BITE = {"q_proj.weight": 15.0, "k_proj.weight": 15.0, "embed_tokens.weight": 20.0}

# name: (family, transformers config kwargs, whether the checkpoint is saved in bfloat16,
# factors of parameters whose names contain a key).
CONFIGS = {
    # Llama 3.x: llama3 RoPE scaling with an original context of 16 tokens, so that every
    # kind of frequency (kept, interpolated, divided by the factor) occurs within T;
    # tied (3.2) and untied (3.1) heads; GQA and MHA with odd widths.
    "llama3_gqa_tied": ("llama", dict(
        vocab_size=101, hidden_size=48, intermediate_size=72, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        tie_word_embeddings=True, rope_parameters=_llama3(8.0, 1.0, 4.0, 16, 500_000.0)),
        True, {}),
    "llama3_mha_odd": ("llama", dict(
        vocab_size=101, hidden_size=30, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=3, num_key_value_heads=3, max_position_embeddings=128,
        tie_word_embeddings=False, rope_parameters=_llama3(4.0, 2.0, 8.0, 32, 10_000.0)),
        False, {}),
    # Qwen3: head_dim explicit and != D/N; tied GQA; and MQA with attention biases and
    # sliding windows (4 < T) on the layers from max_window_layers on.
    "qwen3_gqa_tied": ("qwen3", dict(
        vocab_size=101, hidden_size=32, intermediate_size=56, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=128, tie_word_embeddings=True), True, {}),
    "qwen3_mqa_window_bias": ("qwen3", dict(
        vocab_size=101, hidden_size=36, intermediate_size=50, num_hidden_layers=3,
        num_attention_heads=3, num_key_value_heads=1, head_dim=8,
        max_position_embeddings=128, tie_word_embeddings=False, attention_bias=True,
        use_sliding_window=True, sliding_window=4, max_window_layers=1,
        rope_parameters={"rope_type": "default", "rope_theta": 1000.0}), False, {}),
    # Mistral: every layer windowed (4 < T) with N*H != D and RoPE base 1e6 (Nemo-like);
    # global MHA, tied.
    "mistral_window_gqa": ("mistral", dict(
        vocab_size=101, hidden_size=32, intermediate_size=56, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=12, sliding_window=4,
        max_position_embeddings=128,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}), True, {}),
    "mistral_mha_global": ("mistral", dict(
        vocab_size=101, hidden_size=30, intermediate_size=44, num_hidden_layers=2,
        num_attention_heads=5, num_key_value_heads=5, sliding_window=None,
        max_position_embeddings=128, tie_word_embeddings=True), False, {}),
    # Gemma 2: soft caps small enough to bite on a tiny model's logits; alternating
    # layers with window 4 < T; query_pre_attn_scalar != head_dim; explicit layer_types.
    "gemma2_caps": ("gemma2", dict(
        vocab_size=101, hidden_size=32, intermediate_size=56, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=4,
        query_pre_attn_scalar=24, attn_logit_softcapping=1.5, final_logit_softcapping=2.0,
        max_position_embeddings=128), True, _BITE),
    "gemma2_mha_odd": ("gemma2", dict(
        vocab_size=101, hidden_size=30, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=3, num_key_value_heads=3, head_dim=10, sliding_window=3,
        query_pre_attn_scalar=10, attn_logit_softcapping=3.0, final_logit_softcapping=None,
        layer_types=["full_attention", "sliding_attention"],
        max_position_embeddings=128), False, _BITE),
    # Cohere: parallel block, interleaved RoPE, logit_scale; GQA tied without q/k norms,
    # MHA untied with Command-R+'s per-head q/k LayerNorms.
    "cohere_gqa_tied": ("cohere", dict(
        vocab_size=101, hidden_size=32, intermediate_size=56, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, logit_scale=0.25,
        max_position_embeddings=128, tie_word_embeddings=True), True, {}),
    "cohere_qk_norm_untied": ("cohere", dict(
        vocab_size=101, hidden_size=36, intermediate_size=50, num_hidden_layers=2,
        num_attention_heads=3, num_key_value_heads=3, logit_scale=0.5, use_qk_norm=True,
        max_position_embeddings=128, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0}), False, {}),
}


def build(family, kwargs, directory, *, bfloat16=False, factors=None, seed=0):
  """A random transformers model of ``family`` saved in ``directory``; returns the float32
  PyTorch model whose weights are the saved ones (upcast when saved in bfloat16).
  ``factors`` multiplies the parameters whose names contain a key."""
  import torch
  import transformers

  cls, cfg_cls = CLASSES[family]
  torch.manual_seed(seed)
  model = getattr(transformers, cls)(getattr(transformers, cfg_cls)(**kwargs)).eval()
  with torch.no_grad():  # Norms and biases start at 1/0: randomise them so they matter.
    for name, p in model.named_parameters():
      if "norm" in name or "bias" in name:
        p.add_(torch.randn_like(p) * 0.3)
      p.mul_(next((f for key, f in (factors or {}).items() if key in name), 1.0))
  if not bfloat16:
    model.save_pretrained(directory)
    return model
  model.to(torch.bfloat16).save_pretrained(directory)
  # A fresh float32 model with the upcast weights: `.float()` alone would keep buffers
  # that `.to(bfloat16)` rounded (Gemma 2's embedding scale, RoPE frequencies).
  ref = getattr(transformers, cls)(model.config).eval()
  ref.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
  return ref


def torch_taps(model, ids):
  """Logits and ``{site: [B, T, L, U]}`` of the PyTorch model via forward hooks."""
  import torch

  found = {}
  handles = []
  store = lambda site, i, value: found.setdefault(site, {}).__setitem__(i, value.detach())
  for i, layer in enumerate(model.model.layers):
    for site, path in TORCH_SITES.items():
      handles.append(layer.get_submodule(path).register_forward_hook(
          lambda m, inp, out, site=site, i=i: store(site, i, out)))
    handles.append(layer.mlp.down_proj.register_forward_hook(
        lambda m, inp, out, i=i: store("act", i, inp[0])))
    handles.append(layer.register_forward_hook(
        lambda m, inp, out, i=i: store("resid", i, out[0] if isinstance(out, tuple) else out)))
  with torch.no_grad():
    logits = model(torch.tensor(ids)).logits.numpy()
  for h in handles:
    h.remove()
  n = len(model.model.layers)
  return logits, {s: np.stack([v[i].numpy() for i in range(n)], axis=2) for s, v in found.items()}


def _one_unit_edit(cfg, site, layer, unit, value):
  """Fixes one unit to ``value``; an all-False edit of the same shapes if ``value`` is None."""
  edits = {s: lnj.SiteEdit.none((cfg.num_layers, w)) for s, w in cfg.site_widths.items()}
  if value is not None:
    edits[site] = lnj.SiteEdit.fix(edits[site].mask.at[layer, unit].set(True),
                                   edits[site].shift.at[layer, unit].set(value))
  return lnj.Intervention(edits)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_taps_cache_and_edits_match(tmp_path, name):
  family, kwargs, bfloat16, factors = CONFIGS[name]
  model = build(family, kwargs, str(tmp_path), bfloat16=bfloat16, factors=factors)
  lm = lnj.load_model(str(tmp_path))
  cfg = lm.config
  assert cfg.family == family
  assert jax.tree.leaves(lm.params)[0].dtype == jnp.float32
  ids = np.random.RandomState(1).randint(3, kwargs["vocab_size"], size=(2, T))
  ref_logits, ref_taps = torch_taps(model, ids)
  # Jitted, and always with an intervention (an all-False one changes no bit), so that
  # the plain and the edited run share one compilation: eager op-by-op dispatch
  # compiles every op of every new shape and dominated these tests.
  run = jax.jit(lambda params, ids, iv: capture_taps(lm.module, params, ids, intervention=iv))
  ids = jnp.asarray(ids, jnp.int32)
  logits, taps = run(lm.params, ids, _one_unit_edit(cfg, "up", 1, 3, None))
  assert_close(logits, ref_logits, "logits")
  assert set(taps) == set(ref_taps) == set(cfg.site_widths)
  for site in taps:
    assert taps[site].shape[-1] == cfg.site_widths[site], site
    assert_close(taps[site], ref_taps[site], f"site {site}")

  # Full forward == prefill + token-by-token decode (past every sliding window).
  assert_prefill_decode_equals_forward(lm, ids, logits)

  # Forcing one unit of `up` in layer 1 changes only that unit up to layer 1: nothing in
  # layer 0, nothing of layer 1's attention (which a parallel block computes from the same
  # input as the MLP), nothing else of layer 1's MLP; and it does change the stream.
  _, forced = run(lm.params, ids, _one_unit_edit(cfg, "up", 1, 3, 2.5))
  assert np.all(np.asarray(forced["up"][:, :, 1, 3]) == 2.5)
  changed = np.array(forced["up"] != taps["up"])
  changed[:, :, 1, 3] = False
  assert not changed[:, :, :2].any()
  for site in ("q", "k", "v", "o", "gate", "gate_act"):
    assert np.array_equal(np.asarray(forced[site][:, :, :2]), np.asarray(taps[site][:, :, :2])), site
  assert np.array_equal(np.asarray(forced["resid"][:, :, 0]), np.asarray(taps["resid"][:, :, 0]))
  assert not np.array_equal(np.asarray(forced["resid"][:, :, 1]), np.asarray(taps["resid"][:, :, 1]))


def test_configs_read_from_checkpoints(tmp_path):
  """What each family reads from config.json, without weights (cheap)."""
  import transformers

  def read(cfg_cls, **kwargs):
    directory = tmp_path / cfg_cls
    getattr(transformers, cfg_cls)(**kwargs).save_pretrained(directory)
    return load_config(str(directory))

  cfg = read("LlamaConfig", **CONFIGS["llama3_gqa_tied"][1])
  assert cfg.rope_llama3 == (8.0, 1.0, 4.0, 16.0) and cfg.rope_base_global == 500_000.0
  assert cfg.tie_embeddings
  cfg = read("Qwen3Config", **CONFIGS["qwen3_mqa_window_bias"][1])
  assert cfg.layer_kinds == ("global", "local", "local") and cfg.sliding_window == 4
  assert cfg.bos_token_id is None and conditions.unconditional_prompt(cfg) == [151_643]
  # use_sliding_window off: no window anywhere, whatever sliding_window says.
  cfg = read("Qwen3Config", **dict(CONFIGS["qwen3_mqa_window_bias"][1], use_sliding_window=False))
  assert cfg.layer_kinds == ("global",) * 3 and cfg.sliding_window is None
  cfg = read("MistralConfig", **CONFIGS["mistral_window_gqa"][1])
  assert cfg.layer_kinds == ("local", "local") and cfg.sliding_window == 4
  assert cfg.head_dim == 12 and cfg.rope_base_local == cfg.rope_base_global
  cfg = read("Gemma2Config", **CONFIGS["gemma2_caps"][1])
  assert cfg.layer_kinds == ("local", "global", "local")
  assert (cfg.attn_logit_softcap, cfg.final_logit_softcap) == (1.5, 2.0)
  assert cfg.query_scale == 24 ** -0.5 and cfg.embed_scale == 32 ** 0.5
  cfg = read("CohereConfig", **CONFIGS["cohere_qk_norm_untied"][1])
  assert cfg.parallel_block and cfg.rope_interleaved and cfg.qk_norm_per_head
  assert cfg.logit_scale == 0.5 and not cfg.norm_bias and not cfg.tie_embeddings


@pytest.mark.parametrize("model_type,cfg_cls,extra", [
    ("gemma2", "Gemma2Config", dict(num_hidden_layers=5, sliding_window=4)),
    ("qwen3", "Qwen3Config", dict(num_hidden_layers=5, use_sliding_window=True,
                                  sliding_window=4, max_window_layers=2)),
])
def test_default_layer_pattern_without_layer_types_follows_transformers(
    tmp_path, model_type, cfg_cls, extra):
  """A config.json without layer_types (older checkpoints): the same pattern as the one
  transformers' config class derives."""
  import transformers

  hf = dict(_SHAPE, **extra)
  types = getattr(transformers, cfg_cls)(**hf).layer_types
  cfg = load_config(_write_config(tmp_path, model_type=model_type, **hf))
  assert cfg.layer_kinds == tuple("local" if t == "sliding_attention" else "global" for t in types)
  assert "local" in cfg.layer_kinds and "global" in cfg.layer_kinds


def _write_config(directory, **hf):
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(hf, f)
  return str(directory)


_SHAPE = dict(vocab_size=101, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)


@pytest.mark.parametrize("model_type,extra,named", [
    ("llama", dict(rope_parameters={"rope_type": "yarn", "factor": 4.0}), "'yarn'"),
    ("llama", dict(rope_scaling={"type": "dynamic", "factor": 2.0}), "'dynamic'"),
    ("qwen3", dict(rope_parameters={"rope_type": "yarn", "factor": 4.0,
                                    "original_max_position_embeddings": 32768}), "'yarn'"),
    ("mistral", dict(rope_parameters={"rope_type": "longrope"}), "'longrope'"),
    ("cohere", dict(rope_parameters={"rope_type": "default", "partial_rotary_factor": 0.5}),
     "partial_rotary_factor"),
    ("gemma2", dict(use_bidirectional_attention=True), "use_bidirectional_attention"),
    ("gemma2", dict(hidden_activation="gelu_fast"), "'gelu_fast'"),
    ("qwen3", dict(layer_types=["full_attention", "sliding_attention"]), "sliding_attention"),
])
def test_unimplemented_options_are_refused_by_name(tmp_path, model_type, extra, named):
  directory = _write_config(tmp_path, model_type=model_type, **_SHAPE, **extra)
  with pytest.raises(UserError, match=named):
    load_config(directory)


def test_unsupported_model_type_lists_the_new_families(tmp_path):
  directory = _write_config(tmp_path, model_type="cohere2", **_SHAPE)
  with pytest.raises(ValueError, match="'cohere2'") as e:
    load_config(directory)
  for supported in ("'llama'", "'qwen3'", "'mistral'", "'gemma2'", "'cohere'"):
    assert supported in str(e.value)


PRESETS = ["llama3.2-1b", "llama3.2-3b", "llama3.1-8b", "qwen3-0.6b", "qwen3-1.7b", "qwen3-8b",
           "mistral-7b-v0.1", "mistral-7b-v0.3", "mistral-nemo-12b", "gemma2-2b", "gemma2-9b",
           "aya-expanse-8b", "command-r-35b"]


def _hf_config(cfg):
  """The transformers config of a preset's shape."""
  import transformers

  cls, cfg_cls = CLASSES[cfg.family]
  kwargs = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.width,
                intermediate_size=cfg.mlp_width, num_hidden_layers=cfg.num_layers,
                num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
                tie_word_embeddings=cfg.tie_embeddings)
  if cfg.family != "cohere":
    kwargs["head_dim"] = cfg.head_dim
  return getattr(transformers, cls), getattr(transformers, cfg_cls)(**kwargs)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_parameter_counts_match_transformers(preset):
  import torch

  cfg = all_presets()[preset]
  cls, hf = _hf_config(cfg)
  with torch.device("meta"):
    ref = cls(hf).num_parameters()
  ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract_params(cfg)))
  assert ours == ref


def test_unconditional_prompt_follows_each_family_policy():
  prompt = lambda name: conditions.unconditional_prompt(all_presets()[name])
  assert prompt("llama3.2-1b") == prompt("llama3.1-8b") == [128_000]  # <|begin_of_text|>
  assert prompt("qwen3-0.6b") == [151_643]  # <|endoftext|>: Qwen adds no BOS
  assert prompt("mistral-7b-v0.3") == prompt("mistral-nemo-12b") == [1]  # <s>
  assert prompt("gemma2-2b") == [2]  # <bos>
  assert prompt("aya-expanse-8b") == prompt("command-r-35b") == [5]  # <BOS_TOKEN>
