"""GGUF files of the llama and qwen2 architectures against transformers' PyTorch models.

Each test writes a tiny random transformers model as llama.cpp's ``convert_hf_to_gguf.py``
lays it out, with the ``gguf`` package: tensor names from gguf's own name map, q/k rows
permuted for ``llama`` (``LlamaModel.permute``, copied below), reversed axes (the writer's),
the metadata keys llama.cpp writes and a tiny byte-level BPE vocabulary. Our load of the
file must give the PyTorch model's logits and tap sites within 1e-5 (float32), and so
must transformers' own GGUF loader, which checks that the file is laid out as llama.cpp
lays it out.
"""

import os

import jax.numpy as jnp
import numpy as np
import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax.models.loading import load_config
from lang_neuron_jax.models.convert import CheckpointMismatchError, reverse_llama_rope_permutation
from tests import test_families, test_qwen2_family
from tests.test_gemma3_parity import assert_close

VOCAB = 101
# Printable ASCII and the byte-level space as single tokens, four merges, then specials.
_MERGES = ["h e", "Ġ t", "Ġt he", "i n"]
_SPECIALS = ["<|endoftext|>", "<|im_end|>"]


def _tokens():
  base = [chr(c) for c in range(33, 127)] + ["Ġ"]
  merged = ["".join(m.split(" ")) for m in _MERGES]
  tokens = base + merged + _SPECIALS
  assert len(tokens) == VOCAB
  return tokens


def llama_cpp_permute(w, n_head, n_head_kv):
  """llama.cpp's ``LlamaModel.permute`` (convert_hf_to_gguf.py), as it applies it to
  q_proj (``n_head, n_head``) and k_proj (``n_head, n_head_kv``)."""
  if n_head_kv is not None and n_head != n_head_kv:
    n_head = n_head_kv
  return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def write_gguf(path, arch, model, *, num_layers_in_metadata=None):
  """Writes ``model`` (a transformers ``LlamaForCausalLM``/``Qwen2ForCausalLM``) as
  llama.cpp's converter would, float32 tensors."""
  import gguf

  cfg = model.config
  n = cfg.num_hidden_layers
  heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
  head_dim = cfg.hidden_size // heads
  names = gguf.get_tensor_name_map({"llama": gguf.MODEL_ARCH.LLAMA,
                                    "qwen2": gguf.MODEL_ARCH.QWEN2}[arch], n)
  writer = gguf.GGUFWriter(path, arch)
  writer.add_name(f"tiny {arch}")
  writer.add_context_length(cfg.max_position_embeddings)
  writer.add_embedding_length(cfg.hidden_size)
  writer.add_block_count(num_layers_in_metadata or n)
  writer.add_feed_forward_length(cfg.intermediate_size)
  writer.add_head_count(heads)
  writer.add_head_count_kv(kv)
  writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
  writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
  if arch == "llama":
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(cfg.vocab_size)
  writer.add_file_type(gguf.LlamaFileType.ALL_F32)
  tokens = _tokens()
  writer.add_tokenizer_model("gpt2")
  writer.add_tokenizer_pre("qwen2" if arch == "qwen2" else "llama-bpe")
  writer.add_token_list(tokens)
  writer.add_token_types([gguf.TokenType.CONTROL if t in _SPECIALS else gguf.TokenType.NORMAL
                          for t in tokens])
  writer.add_token_merges(_MERGES)
  writer.add_bos_token_id(tokens.index("<|endoftext|>"))
  writer.add_eos_token_id(tokens.index("<|im_end|>" if arch == "qwen2" else "<|endoftext|>"))
  writer.add_pad_token_id(tokens.index("<|endoftext|>"))
  writer.add_add_bos_token(arch == "llama")
  state = model.state_dict()
  for key, value in state.items():
    if key == "lm_head.weight" and cfg.tie_word_embeddings:
      continue  # llama.cpp writes no output.weight for a tied model.
    w = value.detach().float().numpy()
    if arch == "llama" and key.endswith("self_attn.q_proj.weight"):
      w = llama_cpp_permute(w, heads, heads)
    elif arch == "llama" and key.endswith("self_attn.k_proj.weight"):
      w = llama_cpp_permute(w, heads, kv)
    name = names.get_name(key, try_suffixes=(".weight", ".bias"))
    assert name is not None, key
    writer.add_tensor(name, np.ascontiguousarray(w))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


def _build(arch, kwargs, directory):
  if arch == "llama":
    return test_families.build("llama", kwargs, directory)
  return test_qwen2_family.build(kwargs, directory)


def _reference_taps(arch, model, ids):
  if arch == "llama":
    return test_families.torch_taps("llama", model, ids)
  return test_qwen2_family.torch_taps(model, ids)


CASES = {
    "llama_gqa": ("llama", dict(test_families.CONFIGS["llama_gqa"][1], vocab_size=VOCAB)),
    "llama_mha_tied": ("llama", dict(test_families.CONFIGS["llama_mha"][1], vocab_size=VOCAB,
                                     tie_word_embeddings=True)),
    "qwen2_gqa_tied": ("qwen2", test_qwen2_family.CONFIGS["gqa_tied"]),
    "qwen2_gqa_untied": ("qwen2", dict(test_qwen2_family.CONFIGS["gqa_tied"],
                                       tie_word_embeddings=False, num_key_value_heads=1)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gguf_matches_pytorch_and_transformers_gguf_loading(tmp_path, case):
  import torch
  from transformers import AutoModelForCausalLM

  arch, kwargs = CASES[case]
  model = _build(arch, kwargs, str(tmp_path / "hf"))
  path = str(tmp_path / "tiny.gguf")
  write_gguf(path, arch, model)
  lm = lnj.load_model(path)
  cfg = lm.config
  assert cfg.family == arch and cfg.tie_embeddings == kwargs.get("tie_word_embeddings", False)
  assert cfg.num_kv_heads == kwargs["num_key_value_heads"]
  ids = np.random.RandomState(3).randint(0, VOCAB - 2, size=(2, 9))
  ref_logits, ref_taps = _reference_taps(arch, model, ids)
  logits, taps = lnj.capture_taps(lm.module, lm.params, jnp.asarray(ids, jnp.int32))
  assert_close(logits, ref_logits, "logits")
  # q and k units in transformers' order (the llama un-permutation), every other site too.
  for site in ref_taps:
    assert_close(taps[site], ref_taps[site], f"site {site}")
  # transformers reads the same file as the same model.
  theirs = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="tiny.gguf",
                                                dtype=torch.float32).eval()
  with torch.no_grad():
    assert_close(theirs(torch.tensor(ids)).logits.numpy(), ref_logits, "transformers' GGUF load")
  # The tokenizer in the file: no BOS for Qwen, llama.cpp's BOS for llama.
  text = "the thin hen"
  expected = [t for t in ([cfg.bos_token_id] if cfg.bos_token_id is not None else [])]
  assert lm.tokenizer(text).input_ids[:len(expected)] == expected
  assert (cfg.bos_token_id is None) == (arch == "qwen2")
  if arch == "qwen2":
    assert load_config(path) == cfg
    assert cfg.document_start_token_id == _tokens().index("<|endoftext|>")


def test_reverse_llama_rope_permutation_undoes_llama_cpps():
  rng = np.random.RandomState(0)
  # (query heads, heads of these rows, rows): q of 4 heads; k of 2 and of 1 kv heads.
  for heads, kv, rows in ((4, 4, 32), (4, 2, 16), (6, 1, 12)):
    w = rng.randn(rows, 5).astype(np.float32)
    permuted = llama_cpp_permute(w, heads, kv)
    assert not np.array_equal(permuted, w)
    np.testing.assert_array_equal(reverse_llama_rope_permutation(permuted, kv), w)
    bias = rng.randn(rows).astype(np.float32)
    np.testing.assert_array_equal(
        reverse_llama_rope_permutation(llama_cpp_permute(bias, heads, kv), kv), bias)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_gguf_that_does_not_match_its_metadata_is_named(tmp_path, arch):
  kwargs = CASES["llama_gqa" if arch == "llama" else "qwen2_gqa_untied"][1]
  model = _build(arch, kwargs, str(tmp_path / "hf"))
  path = str(tmp_path / "short.gguf")
  # Metadata says 2 blocks, the file holds 3: the third block's tensors are named.
  write_gguf(path, arch, model, num_layers_in_metadata=kwargs["num_hidden_layers"] - 1)
  with pytest.raises(CheckpointMismatchError, match=r"blk\.2\."):
    lnj.load_model(path)


def test_llama_gguf_with_llama3_frequency_factors_is_refused(tmp_path):
  import gguf

  from lang_neuron_jax.errors import UserError

  model = _build("llama", CASES["llama_gqa"][1], str(tmp_path / "hf"))
  path = str(tmp_path / "l3.gguf")
  write_gguf(path, "llama", model)
  reader = gguf.GGUFReader(path)
  from lang_neuron_jax.models import llama
  from lang_neuron_jax.models.sources import gguf_metadata
  names = [t.name for t in reader.tensors] + ["rope_freqs.weight"]
  with pytest.raises(UserError, match="rope_freqs"):
    llama.config_from_gguf(gguf_metadata(reader), names)
  assert os.path.exists(path)
