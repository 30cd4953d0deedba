"""XGLM, BLOOM and Llama on the shared decoder against transformers' PyTorch models.

Tiny random models from several configs, saved and loaded through ``load_model``:
logits and every tap site within 1e-5 (of the reference's scale) in float32, full
forward equal to prefill + decode, published parameter and neuron counts, and
mismatched checkpoints named in the error.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax.models.loading import abstract_params, all_presets
from lang_neuron_jax.models.convert import CheckpointMismatchError
from tests.test_gemma3_parity import assert_close, assert_prefill_decode_equals_forward

# Per family: transformers class and config, the layer list, and site -> module path.
FAMILIES = {
    "llama": dict(
        layers=lambda m: m.model.layers,
        sites={"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
               "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
               "down": "mlp.down_proj", "gate_act": "mlp.act_fn"},
        act_input_of="mlp.down_proj"),
    "xglm": dict(
        layers=lambda m: m.model.layers,
        sites={"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
               "o": "self_attn.out_proj", "up": "fc1", "down": "fc2"},
        act_input_of="fc2"),
    "bloom": dict(
        layers=lambda m: m.transformer.h,
        sites={"qkv": "self_attention.query_key_value", "o": "self_attention.dense",
               "up": "mlp.dense_h_to_4h", "down": "mlp.dense_4h_to_h"},
        act_input_of="mlp.dense_4h_to_h"),
}

CONFIGS = {
    "llama_gqa": ("llama", dict(vocab_size=101, hidden_size=48, intermediate_size=72,
                                num_hidden_layers=3, num_attention_heads=4,
                                num_key_value_heads=2, max_position_embeddings=128)),
    "llama_mha": ("llama", dict(vocab_size=101, hidden_size=36, intermediate_size=50,
                                num_hidden_layers=2, num_attention_heads=3,
                                num_key_value_heads=3, max_position_embeddings=128,
                                rope_theta=500.0)),
    "xglm_scaled": ("xglm", dict(vocab_size=101, d_model=48, ffn_dim=72, num_layers=3,
                                 attention_heads=4, scale_embedding=True,
                                 max_position_embeddings=128)),
    "xglm_unscaled": ("xglm", dict(vocab_size=101, d_model=40, ffn_dim=56, num_layers=2,
                                   attention_heads=5, scale_embedding=False,
                                   max_position_embeddings=128)),
    "bloom_3heads": ("bloom", dict(vocab_size=101, hidden_size=48, n_layer=3, n_head=3)),
    "bloom_6heads": ("bloom", dict(vocab_size=101, hidden_size=36, n_layer=2, n_head=6)),
}


def build(family, kwargs, directory, seed=0):
  import torch
  import transformers

  cls, cfg_cls = {"llama": ("LlamaForCausalLM", "LlamaConfig"),
                  "xglm": ("XGLMForCausalLM", "XGLMConfig"),
                  "bloom": ("BloomForCausalLM", "BloomConfig")}[family]
  torch.manual_seed(seed)
  model = getattr(transformers, cls)(getattr(transformers, cfg_cls)(**kwargs)).eval()
  with torch.no_grad():  # Norms and biases start at 1/0: randomise them so they matter.
    for name, p in model.named_parameters():
      if "norm" in name or "bias" in name:
        p.add_(torch.randn_like(p) * 0.3)
  model.save_pretrained(directory)
  return model


def torch_taps(family, model, ids):
  import torch

  spec = FAMILIES[family]
  layers = spec["layers"](model)
  found = {}
  handles = []
  for i, layer in enumerate(layers):
    for site, path in spec["sites"].items():
      handles.append(layer.get_submodule(path).register_forward_hook(
          lambda m, inp, out, site=site, i=i: found.setdefault(site, {}).__setitem__(
              i, out.detach())))
    handles.append(layer.get_submodule(spec["act_input_of"]).register_forward_hook(
        lambda m, inp, out, i=i: found.setdefault("act", {}).__setitem__(i, inp[0].detach())))
    handles.append(layer.register_forward_hook(
        lambda m, inp, out, i=i: found.setdefault("resid", {}).__setitem__(
            i, (out[0] if isinstance(out, tuple) else out).detach())))
  with torch.no_grad():
    logits = model(torch.tensor(ids)).logits.numpy()
  for h in handles:
    h.remove()
  n = len(layers)
  return logits, {s: np.stack([v[i].numpy() for i in range(n)], axis=2) for s, v in found.items()}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_taps_and_cache_match(tmp_path, name):
  family, kwargs = CONFIGS[name]
  model = build(family, kwargs, str(tmp_path))
  lm = lnj.load_model(str(tmp_path))
  assert lm.config.family == family
  ids = np.random.RandomState(1).randint(3, kwargs["vocab_size"], size=(2, 11))
  ref_logits, ref_taps = torch_taps(family, model, ids)
  logits, taps = lnj.capture_taps(lm.module, lm.params, jnp.asarray(ids, jnp.int32))
  assert_close(logits, ref_logits, "logits")
  assert set(taps) == set(ref_taps) == set(lm.config.site_widths)
  for site in taps:
    assert taps[site].shape[-1] == lm.config.site_widths[site]
    assert_close(taps[site], ref_taps[site], f"site {site}")
  # Full forward == prefill + token-by-token decode.
  assert_prefill_decode_equals_forward(lm, ids, logits)


@pytest.mark.parametrize("preset,units_per_layer,total", [
    ("xglm-564m", 9 * 1024, 221_184), ("bloom-560m", 9 * 1024, 24 * 9 * 1024),
    ("llama2-7b", 42_496, 1_359_872), ("llama2-13b", 4 * 5120 + 2 * 13824 + 5120, None),
])
def test_neuron_counts(preset, units_per_layer, total):
  cfg = all_presets()[preset]
  per_layer = sum(cfg.site_widths[s] for s in cfg.neuron_sites)
  assert per_layer == units_per_layer
  if total:
    assert per_layer * cfg.num_layers == total


@pytest.mark.parametrize("preset", ["xglm-564m", "xglm-1.7b", "xglm-2.9b", "bloom-560m",
                                    "bloom-1b7", "bloom-3b", "llama2-7b", "llama2-13b"])
def test_preset_parameter_counts_match_transformers(preset):
  import torch
  import transformers

  cfg = all_presets()[preset]
  if cfg.family == "xglm":
    hf = transformers.XGLMConfig(vocab_size=cfg.vocab_size, d_model=cfg.width,
                                 ffn_dim=cfg.mlp_width, num_layers=cfg.num_layers,
                                 attention_heads=cfg.num_heads)
    cls = transformers.XGLMForCausalLM
  elif cfg.family == "bloom":
    hf = transformers.BloomConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.width,
                                  n_layer=cfg.num_layers, n_head=cfg.num_heads)
    cls = transformers.BloomForCausalLM
  else:
    hf = transformers.LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.width,
                                  intermediate_size=cfg.mlp_width,
                                  num_hidden_layers=cfg.num_layers,
                                  num_attention_heads=cfg.num_heads,
                                  num_key_value_heads=cfg.num_kv_heads)
    cls = transformers.LlamaForCausalLM
  with torch.device("meta"):
    ref = cls(hf).num_parameters()
  ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract_params(cfg)))
  assert ours == ref


@pytest.mark.parametrize("name,key", [("bloom_3heads", "transformer.h.1.mlp.dense_h_to_4h.bias"),
                                      ("xglm_scaled", "model.layers.2.fc1.weight"),
                                      ("llama_gqa", "model.layers.0.self_attn.k_proj.weight")])
def test_missing_or_misshaped_tensor_is_named(tmp_path, name, key):
  import os
  from safetensors.numpy import load_file, save_file

  family, kwargs = CONFIGS[name]
  build(family, kwargs, str(tmp_path))
  path = os.path.join(str(tmp_path), "model.safetensors")
  tensors = load_file(path)
  save_file({k: v for k, v in tensors.items() if k != key}, path, metadata={"format": "pt"})
  with pytest.raises(CheckpointMismatchError, match=key.replace(".", r"\.")):
    lnj.load_model(str(tmp_path))
  tensors[key] = tensors[key][..., :-1]
  save_file(tensors, path, metadata={"format": "pt"})
  with pytest.raises(CheckpointMismatchError, match=key.replace(".", r"\.") + ".*shape"):
    lnj.load_model(str(tmp_path))


def test_unconditional_prompt_follows_each_family_policy():
  from lang_neuron_jax.control import conditions
  prompts = {name: conditions.unconditional_prompt(cfg) for name, cfg in all_presets().items()}
  assert prompts["gemma3-270m"] == [2]  # <bos>
  assert prompts["llama2-7b"] == [1]  # <s>
  assert prompts["xglm-564m"] == [2]  # </s>, which XGLM's tokenizer prepends
  assert prompts["bloom-560m"] == [2]  # </s>: BLOOM's tokenizer adds nothing
  # Qwen has no BOS: <|endoftext|>, its documents' separator, not the instruct eos <|im_end|>.
  for name in ("qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b", "qwen2.5-coder-0.5b"):
    assert prompts[name] == [151_643], name
  assert all_presets()["qwen2.5-coder-0.5b"].eos_token_id == 151_645
