"""Shared fixtures: tiny random transformers models saved as checkpoint directories."""

import os

# Nothing may reach a model hub during tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest


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
