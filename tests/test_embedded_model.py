"""The embedded Gemma 3 270M against transformers' own loading of the same GGUF file."""

import glob
import json
import logging
import os

import jax.numpy as jnp
import numpy as np
import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax.data import corpora as data
from lang_neuron_jax.models.loading import embedded_gguf_path
from tests.conftest import greedy_by_full_forward, right_padded

PROMPTS = data.EXAMPLE_PROMPTS


@pytest.fixture(scope="module")
def ours():
  return lnj.load_model("gemma3-270m")


@pytest.fixture(scope="module")
def theirs():
  import torch
  from transformers import AutoModelForCausalLM, AutoTokenizer

  path = embedded_gguf_path("gemma3-270m")
  directory, name = os.path.split(path)
  tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
  model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name,
                                               dtype=torch.float32).eval()
  return model, tokenizer


def test_config_matches_transformers(ours, theirs):
  cfg, hf = ours.config, theirs[0].config
  assert cfg.num_layers == hf.num_hidden_layers and cfg.width == hf.hidden_size
  assert cfg.layer_kinds == tuple(
      "local" if t == "sliding_attention" else "global" for t in hf.layer_types)
  assert cfg.sliding_window == hf.sliding_window


def test_logits_and_greedy_continuations_match(ours, theirs):
  import torch

  import jax

  model, tokenizer = theirs
  # One compilation: a fixed right-padded buffer (causal attention ignores the pads).
  forward = jax.jit(lambda params, x: ours.module.apply({"params": params}, x).logits)
  for lang, prompt in PROMPTS.items():
    ids = ours.tokenizer(prompt).input_ids
    assert ids == tokenizer(prompt).input_ids, lang
    logits = np.asarray(forward(ours.params, right_padded(ids, 48)))[:, :len(ids)]
    with torch.no_grad():
      ref = model(torch.tensor([ids])).logits.numpy()
    scale = np.abs(ref).max()
    assert np.abs(logits - ref).max() <= 1e-4 * scale, lang
    # Greedy, 20 new tokens, token for token.
    with torch.no_grad():
      ref_out = model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False)[0]
    out = ids + greedy_by_full_forward(lambda x: forward(ours.params, x), ids, 20, width=48)
    assert out == ref_out.tolist()[:len(out)], (lang, tokenizer.decode(out),
                                                 tokenizer.decode(ref_out))


def test_tokenizer_matches_transformers_on_every_shipped_text(ours, theirs):
  _, tokenizer = theirs
  data_dir = data.DATA_DIR
  texts = set()
  for path in glob.glob(os.path.join(data_dir, "sense", "*.json")):
    with open(path) as f:
      sentences = json.load(f)["sentences"]
    texts.update(sentences["positive"] + sentences["negative"])
  for path in glob.glob(os.path.join(data_dir, "translation", "*.jsonl")):
    with open(path) as f:
      for line in f:
        texts.update(json.loads(line).values())
  texts = sorted(texts)
  assert len(texts) > 5000
  assert ours.tokenizer(texts).input_ids == tokenizer(texts).input_ids


def test_second_load_is_cached(ours, caplog):
  import time

  caplog.set_level(logging.INFO, logger="absl")
  start = time.perf_counter()
  again = lnj.load_model("gemma3-270m")
  assert time.perf_counter() - start < 60
  # Our own INFO line shows; orbax's dozen INFO lines per restore do not, and the mute
  # does not outlive the load.
  sources = [r.pathname for r in caplog.records]
  assert any(p.endswith(os.path.join("lang_neuron_jax", "models", "loading.py")) for p in sources)
  assert not [p for p in sources if os.sep + "orbax" + os.sep in p]
  assert not logging.getLogger("absl").filters
  assert np.array_equal(np.asarray(again.params["final_norm"]["scale"]),
                        np.asarray(ours.params["final_norm"]["scale"]))


def test_bfloat16_option(ours):
  lm = lnj.load_model("gemma3-270m", dtype=jnp.bfloat16)
  assert lm.params["embed"]["embedding"].dtype == jnp.bfloat16
  ids = jnp.asarray([ours.tokenizer(PROMPTS["en"]).input_ids], jnp.int32)
  ref = np.asarray(ours.module.apply({"params": ours.params}, ids).logits)
  got = np.asarray(lm.module.apply({"params": lm.params}, ids).logits)
  assert got.dtype == np.float32
  assert np.argmax(got[0, -1]) == np.argmax(ref[0, -1])


def test_loading_the_gguf_file_directly_gives_the_same_model(ours):
  lm = lnj.load_model(embedded_gguf_path("gemma3-270m"))
  assert lm.config == ours.config
  for name in ("embed", "layer_5", "final_norm"):
    a, b = lm.params[name], ours.params[name]
    import jax
    assert all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))), name
  assert lm.tokenizer("Guten Tag").input_ids == ours.tokenizer("Guten Tag").input_ids
