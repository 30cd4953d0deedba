"""Shared fixtures: tiny random transformers models saved as checkpoint directories."""

import atexit
import os
import shutil
import tempfile

# Nothing may reach a model hub during tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# One JAX compilation cache for the test session, inherited by the binaries that tests
# start as subprocesses: the resume, multi-host and end-to-end tests run the same
# binaries several times on the same tiny model, and compiling dominated them on a
# 2-core CPU. Fresh per session (nothing carries over between runs), removed at exit.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _jax_cache = tempfile.mkdtemp(prefix="lang_neuron_jax_test_compilation_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _jax_cache
  atexit.register(shutil.rmtree, _jax_cache, ignore_errors=True)

import numpy as np
import pytest


def right_padded(ids, width):
  """int32 ``[1, width]``: ``ids`` then zeros. Causal attention keeps the padding out of
  every earlier position's logits, so one shape serves every length."""
  buffer = np.zeros((1, width), np.int32)
  buffer[0, :len(ids)] = ids
  return buffer


def greedy_by_full_forward(forward, prompt, n, width, eos=None):
  """Greedy decoding without a cache: a full forward over the whole sequence per step.

  Args:
    forward: int32 ``[1, width]`` -> logits ``[1, width, V]`` (jitted: one compilation).
    prompt: Token ids.
    n: New tokens at most.
    width: Padded sequence length; at least ``len(prompt) + n``.
    eos: Stop after this token, if given.

  Returns:
    The new tokens.
  """
  out = list(prompt)
  for _ in range(n):
    logits = forward(right_padded(out, width))
    out.append(int(np.argmax(logits[0, len(out) - 1])))
    if out[-1] == eos:
      break
  return out[len(prompt):]


def save_tiny_gemma3(directory, *, seed=0, **overrides):
  """Builds a random transformers Gemma3ForCausalLM from a tiny config and saves it.

  Norm weights are randomised too (they are zero-initialised), so that mistakes in the
  ``1 + w`` convention show up. Returns the PyTorch model (eval mode, float32).
  """
  import torch
  from transformers import Gemma3ForCausalLM, Gemma3TextConfig

  kwargs = dict(vocab_size=101, hidden_size=48, intermediate_size=72, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=5,
                layer_types=["sliding_attention", "sliding_attention", "full_attention",
                             "sliding_attention"],
                query_pre_attn_scalar=16, max_position_embeddings=256)
  kwargs.update(overrides)
  torch.manual_seed(seed)
  model = Gemma3ForCausalLM(Gemma3TextConfig(**kwargs)).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name:
        p.normal_(0.0, 0.5)
  model.save_pretrained(directory)
  return model


@pytest.fixture
def tiny_gemma3(tmp_path):
  """``(directory, torch_model)`` of the default tiny Gemma 3."""
  directory = str(tmp_path / "tiny_gemma3")
  return directory, save_tiny_gemma3(directory)


@pytest.fixture(scope="session")
def tiny_gemma3_with_tokenizer(tmp_path_factory):
  """A tiny random Gemma 3 with the real Gemma tokenizer (vocabulary 262,144) saved beside
  it, so binaries run end to end on real text quickly."""
  import lang_neuron_jax as lnj
  from lang_neuron_jax.models import tokenizer as tokenizer_lib
  from lang_neuron_jax.models.loading import default_cache_dir, embedded_gguf_path
  from lang_neuron_jax.models.sources import gguf_metadata, open_gguf

  directory = str(tmp_path_factory.mktemp("tiny_gemma3_tok"))
  save_tiny_gemma3(directory, vocab_size=262_144, hidden_size=32, intermediate_size=48,
                   num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                   head_dim=16, sliding_window=8, layer_types=["sliding_attention",
                                                               "full_attention"])
  cache = os.path.join(default_cache_dir(), "gemma3-270m", "tokenizer")
  tok = tokenizer_lib.cached_gguf_tokenizer(
      lambda: gguf_metadata(open_gguf(embedded_gguf_path("gemma3-270m"))), cache)
  tok.save_pretrained(directory)
  return directory


def write_small_corpus(directory, languages=("en", "de", "ja"), positives=30, negatives=60):
  """A subset of the shipped corpora in the same format (first texts of each list)."""
  import json

  from lang_neuron_jax.data import corpora as data

  os.makedirs(directory, exist_ok=True)
  for lang in languages:
    with open(os.path.join(data.SENSE_DIR, f"{lang}.json")) as f:
      doc = json.load(f)
    s = doc["sentences"]
    doc["sentences"] = {"positive": s["positive"][:positives],
                        "negative": s["negative"][:negatives]}
    with open(os.path.join(directory, f"{lang}.json"), "w") as f:
      json.dump(doc, f, ensure_ascii=False)
  return directory
