"""load_model's sources and its errors on bad input; preset parameter counts."""

import json
import os

import numpy as np
import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax.models.loading import abstract_params, all_presets
from lang_neuron_jax.models.convert import CheckpointMismatchError
from tests.conftest import save_tiny_gemma3


def count(tree):
  import jax
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("preset", ["gemma3-270m", "gemma3-1b", "gemma3-4b"])
def test_preset_parameter_counts_match_transformers(preset):
  """Our eval_shape count equals transformers' model built from the same config."""
  import torch
  from transformers import Gemma3ForCausalLM, Gemma3TextConfig

  cfg = all_presets()[preset]
  hf = Gemma3TextConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.width, intermediate_size=cfg.mlp_width,
      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
      num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.head_dim)
  with torch.device("meta"):
    ref = Gemma3ForCausalLM(hf).num_parameters()
  assert count(abstract_params(cfg)) == ref


def test_embedded_preset_count():
  # Gemma 3 270M: 170M embedding + 98M transformer parameters.
  assert count(abstract_params(all_presets()["gemma3-270m"])) == 268_098_176


def test_unknown_model():
  with pytest.raises(ValueError, match="Unknown model 'gemma-9000'"):
    lnj.load_model("gemma-9000")


def test_preset_without_embedded_weights():
  with pytest.raises(ValueError, match="no embedded weights"):
    lnj.load_model("gemma3-1b")


def test_missing_gguf_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    lnj.load_model(str(tmp_path / "missing.gguf"))


def test_truncated_or_foreign_gguf(tmp_path):
  path = tmp_path / "bad.gguf"
  path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 5)
  with pytest.raises(ValueError, match="not a readable GGUF"):
    lnj.load_model(str(path))


def test_unsupported_gguf_architecture(tmp_path):
  import gguf

  from lang_neuron_jax.errors import UserError

  path = str(tmp_path / "falcon.gguf")  # llama, qwen2 and gemma3 are supported
  writer = gguf.GGUFWriter(path, "falcon")
  writer.add_block_count(1)
  writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  with pytest.raises(UserError, match="Unsupported GGUF architecture 'falcon'.*'llama'"):
    lnj.load_model(path)


def test_directory_without_config(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    lnj.load_model(str(tmp_path))


def test_unsupported_model_type(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
  with pytest.raises(ValueError, match="Unsupported model_type 't5'"):
    lnj.load_model(str(tmp_path))


def _rewrite(directory, edit):
  from safetensors.numpy import load_file, save_file

  path = os.path.join(directory, "model.safetensors")
  tensors = load_file(path)
  edit(tensors)
  save_file(tensors, path, metadata={"format": "pt"})


def test_missing_tensor_is_named(tiny_gemma3):
  directory, _ = tiny_gemma3
  _rewrite(directory, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
  with pytest.raises(CheckpointMismatchError, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
    lnj.load_model(directory)


def test_misshaped_tensor_is_named(tiny_gemma3):
  directory, _ = tiny_gemma3
  def shrink(t):
    t["model.layers.0.self_attn.k_proj.weight"] = t["model.layers.0.self_attn.k_proj.weight"][:-1]
  _rewrite(directory, shrink)
  with pytest.raises(CheckpointMismatchError, match=r"self_attn\.k_proj\.weight.*shape"):
    lnj.load_model(directory)


def test_config_with_fewer_layers_than_checkpoint(tiny_gemma3):
  directory, _ = tiny_gemma3
  path = os.path.join(directory, "config.json")
  with open(path) as f:
    cfg = json.load(f)
  cfg["num_hidden_layers"] = 3
  cfg["layer_types"] = cfg["layer_types"][:3]
  with open(path, "w") as f:
    json.dump(cfg, f)
  with pytest.raises(CheckpointMismatchError, match=r"model\.layers\.3\."):
    lnj.load_model(directory)


def test_sharded_checkpoint(tmp_path):
  """A checkpoint cut into shards loads to the same parameters and logits as the same
  model saved whole (and to PyTorch's logits)."""
  import torch

  whole, sharded = str(tmp_path / "whole"), str(tmp_path / "sharded")
  model = save_tiny_gemma3(whole)
  model.save_pretrained(sharded, max_shard_size="20KB")
  files = os.listdir(sharded)
  assert "model.safetensors.index.json" in files and "model.safetensors" not in files
  assert sum(f.endswith(".safetensors") for f in files) > 2
  lm, ref = lnj.load_model(sharded), lnj.load_model(whole)
  assert lm.config.num_layers == 4
  ids = np.array([[2, 17, 33, 4, 90, 5, 61, 8]])
  logits = np.asarray(lnj.Decoder(lm.config).apply({"params": lm.params}, ids).logits)
  expected = np.asarray(lnj.Decoder(ref.config).apply({"params": ref.params}, ids).logits)
  np.testing.assert_array_equal(logits, expected)
  with torch.no_grad():
    theirs = model(torch.tensor(ids)).logits.numpy()
  np.testing.assert_allclose(logits, theirs, atol=1e-4 * max(1.0, np.abs(theirs).max()))


def test_damaged_user_checkpoint_names_the_file(tiny_gemma3):
  """A user's own checkpoint is not derived data: the error names the file and says what
  to do, instead of safetensors' bare "incomplete metadata"."""
  from lang_neuron_jax.errors import UserError

  directory, _ = tiny_gemma3
  path = os.path.join(directory, "model.safetensors")
  with open(path, "rb") as f:
    head = f.read(os.path.getsize(path) // 2)
  with open(path, "wb") as f:
    f.write(head)
  with pytest.raises(UserError, match=rf"{path} .*damaged or cut short.*save it again"):
    lnj.load_model(directory)


def test_damaged_config_json_is_named(tmp_path):
  from lang_neuron_jax.errors import UserError

  (tmp_path / "config.json").write_text('{"model_type": "gemma3_te')
  with pytest.raises(UserError, match=r"config\.json is not valid JSON"):
    lnj.load_model(str(tmp_path))
