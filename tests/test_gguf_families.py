"""GGUF files of the llama, qwen2, qwen3 and gemma2 architectures against transformers'
PyTorch models.

Each test writes a tiny random transformers model as llama.cpp's ``convert_hf_to_gguf.py``
lays it out, with the ``gguf`` package: tensor names from gguf's own name map, q/k rows
permuted for ``llama`` (``LlamaModel.permute``, copied below), ``1 + w`` norms for
``gemma2`` (``Gemma2Model.modify_tensors``), reversed axes (the writer's), the metadata
keys llama.cpp writes for the architecture and a tiny vocabulary (byte-level BPE; Gemma's
SentencePiece for gemma2). Our load of the file must give the PyTorch model's logits and
tap sites within 1e-5 (float32), and so must transformers' own GGUF loader, which checks
that the file is laid out as llama.cpp lays it out.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax.models import gemma2, qwen3
from lang_neuron_jax.models.loading import all_presets, load_config
from lang_neuron_jax.models.convert import CheckpointMismatchError, reverse_llama_rope_permutation
from tests import test_families, test_families_current, test_qwen2_family
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


# Gemma's SentencePiece vocabulary in miniature: its four specials at their ids (pad 0,
# eos 1, bos 2, unk 3), the word boundary, printable ASCII and two merged pieces.
_SP_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]


def _sentencepiece_tokens():
  tokens = _SP_SPECIALS + ["\u2581"] + [chr(c) for c in range(33, 127)] + ["\u2581t", "he"]
  assert len(tokens) == VOCAB
  return tokens


def llama_cpp_permute(w, n_head, n_head_kv):
  """llama.cpp's ``LlamaModel.permute`` (convert_hf_to_gguf.py), as it applies it to
  q_proj (``n_head, n_head``) and k_proj (``n_head, n_head_kv``)."""
  if n_head_kv is not None and n_head != n_head_kv:
    n_head = n_head_kv
  return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def _shape_hparams(writer, cfg, num_layers):
  """The keys both llama.cpp's ``TextModel`` and ``Gemma2Model`` write first."""
  writer.add_context_length(cfg.max_position_embeddings)
  writer.add_embedding_length(cfg.hidden_size)
  writer.add_block_count(num_layers)
  writer.add_feed_forward_length(cfg.intermediate_size)
  writer.add_head_count(cfg.num_attention_heads)
  writer.add_head_count_kv(cfg.num_key_value_heads)
  writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)


def _text_model_hparams(writer, arch, cfg, num_layers):
  """The metadata of llama.cpp's ``TextModel.set_gguf_parameters`` (which ``LlamaModel``
  extends with the RoPE dimension and vocabulary size, and which ``Qwen2Model`` and
  ``Qwen3Model`` use as it is; ``head_dim`` becomes ``key_length``/``value_length``)."""
  _shape_hparams(writer, cfg, num_layers)
  writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
  if arch == "qwen3":
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
  if arch == "llama":
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_vocab_size(cfg.vocab_size)


def _gemma2_hparams(writer, arch, cfg, num_layers):
  """The metadata of llama.cpp's ``Gemma2Model.set_gguf_parameters``, which does not call
  ``TextModel``'s: no RoPE base and no ``query_pre_attn_scalar``."""
  del arch
  _shape_hparams(writer, cfg, num_layers)
  writer.add_key_length(cfg.head_dim)
  writer.add_value_length(cfg.head_dim)
  writer.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
  writer.add_final_logit_softcapping(cfg.final_logit_softcapping)
  writer.add_sliding_window(cfg.sliding_window)


def _bpe_vocab(writer, arch):
  """``TextModel._set_vocab_gpt2``: byte-level BPE with merges; BOS only for llama."""
  import gguf

  tokens = _tokens()
  writer.add_tokenizer_model("gpt2")
  writer.add_tokenizer_pre("llama-bpe" if arch == "llama" else "qwen2")
  writer.add_token_list(tokens)
  writer.add_token_types([gguf.TokenType.CONTROL if t in _SPECIALS else gguf.TokenType.NORMAL
                          for t in tokens])
  writer.add_token_merges(_MERGES)
  writer.add_bos_token_id(tokens.index("<|endoftext|>"))
  writer.add_eos_token_id(tokens.index("<|endoftext|>" if arch == "llama" else "<|im_end|>"))
  writer.add_pad_token_id(tokens.index("<|endoftext|>"))
  writer.add_add_bos_token(arch == "llama")


def _sentencepiece_vocab(writer, arch):
  """``TextModel._set_vocab_sentencepiece`` (model "llama", scores, token types, the
  special ids and flags of ``SpecialVocab``) plus ``Gemma2Model.set_vocab``'s
  ``add_space_prefix = False``."""
  import gguf

  del arch
  tokens = _sentencepiece_tokens()
  types = {"<unk>": gguf.TokenType.UNKNOWN, **{t: gguf.TokenType.CONTROL
                                              for t in _SP_SPECIALS if t != "<unk>"}}
  writer.add_tokenizer_model("llama")
  writer.add_tokenizer_pre("default")
  writer.add_token_list(tokens)
  writer.add_token_scores([0.0 if t in _SP_SPECIALS else -float(i) for i, t in enumerate(tokens)])
  writer.add_token_types([types.get(t, gguf.TokenType.NORMAL) for t in tokens])
  writer.add_bos_token_id(_SP_SPECIALS.index("<bos>"))
  writer.add_eos_token_id(_SP_SPECIALS.index("<eos>"))
  writer.add_unk_token_id(_SP_SPECIALS.index("<unk>"))
  writer.add_pad_token_id(_SP_SPECIALS.index("<pad>"))
  writer.add_add_bos_token(True)
  writer.add_add_eos_token(False)
  writer.add_add_space_prefix(False)


# Per architecture: gguf's MODEL_ARCH, the hyperparameter writer and the vocabulary writer.
_ARCHS = {"llama": ("LLAMA", _text_model_hparams, _bpe_vocab),
          "qwen2": ("QWEN2", _text_model_hparams, _bpe_vocab),
          "qwen3": ("QWEN3", _text_model_hparams, _bpe_vocab),
          "gemma2": ("GEMMA2", _gemma2_hparams, _sentencepiece_vocab)}


def _gguf_tensors(arch, model):
  """``(GGUF name, float32 array in PyTorch order)`` as each converter's
  ``modify_tensors`` yields them: llama's q/k rows permuted (``LlamaModel.permute``),
  gemma2's norms plus one and its head never written (``Gemma2Model.filter_tensors``
  skips ``lm_head.weight``), a tied head not written."""
  import gguf

  cfg = model.config
  heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
  names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, _ARCHS[arch][0]),
                                   cfg.num_hidden_layers)
  for key, value in model.state_dict().items():
    if key == "lm_head.weight" and (cfg.tie_word_embeddings or arch == "gemma2"):
      continue
    w = value.detach().float().numpy()
    if arch == "llama" and key.endswith("self_attn.q_proj.weight"):
      w = llama_cpp_permute(w, heads, heads)
    elif arch == "llama" and key.endswith("self_attn.k_proj.weight"):
      w = llama_cpp_permute(w, heads, kv)
    elif arch == "gemma2" and key.endswith("norm.weight"):
      w = w + 1
    name = names.get_name(key, try_suffixes=(".weight", ".bias"))
    assert name is not None, key
    yield name, np.ascontiguousarray(w)


def write_gguf(path, arch, model, *, num_layers_in_metadata=None):
  """Writes ``model`` (a transformers ``LlamaForCausalLM``, ``Qwen2ForCausalLM``,
  ``Qwen3ForCausalLM`` or ``Gemma2ForCausalLM``) as llama.cpp's converter would,
  float32 tensors."""
  import gguf

  _, hparams, vocab = _ARCHS[arch]
  writer = gguf.GGUFWriter(path, arch)
  writer.add_name(f"tiny {arch}")
  hparams(writer, arch, model.config, num_layers_in_metadata or model.config.num_hidden_layers)
  writer.add_file_type(gguf.LlamaFileType.ALL_F32)
  vocab(writer, arch)
  for name, w in _gguf_tensors(arch, model):
    writer.add_tensor(name, w)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


def _build(arch, kwargs, directory):
  if arch == "llama":
    return test_families.build("llama", kwargs, directory)
  if arch == "qwen2":
    return test_qwen2_family.build(kwargs, directory)
  # Gemma 2's soft caps only bite once q, k and the embeddings are scaled up.
  factors = test_families_current._BITE if arch == "gemma2" else None
  return test_families_current.build(arch, kwargs, directory, factors=factors)


def _reference_taps(arch, model, ids):
  if arch == "llama":
    return test_families.torch_taps("llama", model, ids)
  if arch == "qwen2":
    return test_qwen2_family.torch_taps(model, ids)
  return test_families_current.torch_taps(model, ids)


# Config values transformers' own GGUF loader does not read (its GGUF_CONFIG_MAPPING has no
# key for them), passed to it so that its check is on the file's tensors: Qwen3's head_dim
# (it would take Qwen3Config's 128) and attention_bias (it would drop the biases), Gemma 2's
# soft caps and query_pre_attn_scalar.
_NOT_READ_BY_TRANSFORMERS = {"qwen3": ("head_dim", "attention_bias"),
                             "gemma2": ("attn_logit_softcapping", "final_logit_softcapping",
                                        "query_pre_attn_scalar")}


def _without_token_ids(cfg):
  """The config less the token ids, which come from the tiny vocabulary in the GGUF but
  from transformers' defaults in config.json."""
  return cfg.replace(bos_token_id=None, eos_token_id=0, pad_token_id=0,
                     document_start_token_id=None)


CASES = {
    "llama_gqa": ("llama", dict(test_families.CONFIGS["llama_gqa"][1], vocab_size=VOCAB)),
    "llama_mha_tied": ("llama", dict(test_families.CONFIGS["llama_mha"][1], vocab_size=VOCAB,
                                     tie_word_embeddings=True)),
    "qwen2_gqa_tied": ("qwen2", test_qwen2_family.CONFIGS["gqa_tied"]),
    "qwen2_gqa_untied": ("qwen2", dict(test_qwen2_family.CONFIGS["gqa_tied"],
                                       tie_word_embeddings=False, num_key_value_heads=1)),
    # Qwen3: head_dim explicit and != D/N (read from key_length); tied GQA; untied MQA
    # with attention biases (on q, k, v and o) and another RoPE base.
    "qwen3_gqa_tied": ("qwen3", dict(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=56, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=128, tie_word_embeddings=True)),
    "qwen3_mqa_untied_bias": ("qwen3", dict(
        vocab_size=VOCAB, hidden_size=36, intermediate_size=50, num_hidden_layers=2,
        num_attention_heads=3, num_key_value_heads=1, head_dim=8,
        max_position_embeddings=128, tie_word_embeddings=False, attention_bias=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000.0})),
    # Gemma 2: soft caps that bite, a window (4) shorter than the test sequence (9), the
    # sliding layer first; query_pre_attn_scalar = head_dim, since a GGUF cannot say
    # otherwise below 27B (gemma2.gguf_query_scale).
    "gemma2_caps_window": ("gemma2", dict(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=56, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=4,
        query_pre_attn_scalar=16, attn_logit_softcapping=1.5, final_logit_softcapping=2.0,
        max_position_embeddings=128)),
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
  assert cfg.family == arch
  assert cfg.tie_embeddings == (arch == "gemma2" or kwargs.get("tie_word_embeddings", False))
  assert cfg.num_kv_heads == kwargs["num_key_value_heads"]
  if arch in ("qwen3", "gemma2"):
    # What the metadata says (and llama.cpp assumes) is what config.json says.
    assert _without_token_ids(cfg) == _without_token_ids(load_config(str(tmp_path / "hf")))
  ids = np.random.RandomState(3).randint(0, VOCAB - 2, size=(2, 9))
  ref_logits, ref_taps = _reference_taps(arch, model, ids)
  # Jitted: op-by-op dispatch would compile every op anew for each case's shapes.
  run = jax.jit(lambda params, ids: lnj.capture_taps(lm.module, params, ids))
  logits, taps = run(lm.params, jnp.asarray(ids, jnp.int32))
  assert_close(logits, ref_logits, "logits")
  # q and k units in transformers' order (the llama un-permutation), every other site too.
  for site in ref_taps:
    assert_close(taps[site], ref_taps[site], f"site {site}")
  # transformers reads the same file as the same model.
  overrides = {k: kwargs[k] for k in _NOT_READ_BY_TRANSFORMERS.get(arch, ()) if k in kwargs}
  theirs = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="tiny.gguf",
                                                dtype=torch.float32, **overrides).eval()
  with torch.no_grad():
    assert_close(theirs(torch.tensor(ids)).logits.numpy(), ref_logits, "transformers' GGUF load")
  # The tokenizer in the file: no BOS for Qwen, llama.cpp's BOS for llama and Gemma.
  text = "the thin hen"
  expected = [t for t in ([cfg.bos_token_id] if cfg.bos_token_id is not None else [])]
  assert lm.tokenizer(text).input_ids[:len(expected)] == expected
  assert (cfg.bos_token_id is None) == (arch in ("qwen2", "qwen3"))
  if arch in ("qwen2", "qwen3"):
    assert load_config(path) == cfg
    assert cfg.document_start_token_id == _tokens().index("<|endoftext|>")
  if arch == "gemma2":
    assert load_config(path) == cfg and cfg.bos_token_id == 2 and cfg.eos_token_id == 1
    assert lm.tokenizer.decode(lm.tokenizer(text).input_ids, skip_special_tokens=True) == text


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


@pytest.mark.parametrize("arch,case", [("llama", "llama_gqa"), ("qwen2", "qwen2_gqa_untied"),
                                       ("qwen3", "qwen3_gqa_tied"),
                                       ("gemma2", "gemma2_caps_window")])
def test_gguf_that_does_not_match_its_metadata_is_named(tmp_path, arch, case):
  kwargs = CASES[case][1]
  model = _build(arch, kwargs, str(tmp_path / "hf"))
  path = str(tmp_path / "short.gguf")
  # Metadata says one block fewer than the file holds: the last block's tensors are named.
  n = kwargs["num_hidden_layers"]
  write_gguf(path, arch, model, num_layers_in_metadata=n - 1)
  with pytest.raises(CheckpointMismatchError, match=rf"blk\.{n - 1}\."):
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


def _published_metadata(arch, cfg, **changes):
  """The metadata llama.cpp's converter writes for a published model with config ``cfg``
  (a preset), without reading a file: ``Qwen3Model`` through ``TextModel`` (a tied
  model has no ``output.weight``), ``Gemma2Model`` with its own keys. Returns
  ``(metadata, tensor names)``."""
  tokens = [f"t{i}" for i in range(cfg.vocab_size)]
  a = arch
  meta = {"general.architecture": a, f"{a}.block_count": cfg.num_layers,
          f"{a}.embedding_length": cfg.width, f"{a}.feed_forward_length": cfg.mlp_width,
          f"{a}.attention.head_count": cfg.num_heads,
          f"{a}.attention.head_count_kv": cfg.num_kv_heads,
          f"{a}.attention.layer_norm_rms_epsilon": 1e-6,
          f"{a}.attention.key_length": cfg.head_dim,
          f"{a}.attention.value_length": cfg.head_dim,
          "tokenizer.ggml.tokens": tokens}
  if arch == "qwen3":
    tokens[151_643] = "<|endoftext|>"
    meta.update({f"{a}.rope.freq_base": 1_000_000.0, "tokenizer.ggml.model": "gpt2",
                 "tokenizer.ggml.bos_token_id": 151_643, "tokenizer.ggml.eos_token_id": 151_643,
                 "tokenizer.ggml.padding_token_id": 151_643,
                 "tokenizer.ggml.add_bos_token": False})
  else:
    meta.update({f"{a}.attn_logit_softcapping": 50.0, f"{a}.final_logit_softcapping": 30.0,
                 f"{a}.attention.sliding_window": 4096, "tokenizer.ggml.model": "llama",
                 "tokenizer.ggml.bos_token_id": 2, "tokenizer.ggml.eos_token_id": 1,
                 "tokenizer.ggml.padding_token_id": 0, "tokenizer.ggml.add_bos_token": True})
  meta.update(changes)
  names = ["token_embd.weight"] + ([] if cfg.tie_embeddings else ["output.weight"])
  return meta, names


@pytest.mark.parametrize("preset", ["qwen3-0.6b", "qwen3-8b", "gemma2-2b", "gemma2-9b"])
def test_published_sizes_read_from_gguf_metadata_are_their_presets(preset):
  """What the GGUF of a published model leaves to llama.cpp's rules (Gemma 2's layer
  pattern, RoPE base, query scale; Qwen3's document start) gives the published config."""
  cfg = all_presets()[preset]
  family = {"qwen3": qwen3, "gemma2": gemma2}[cfg.family]
  assert family.config_from_gguf(*_published_metadata(cfg.family, cfg)) == cfg


def test_gemma2_27b_gguf_query_scale_is_llama_cpps():
  """Gemma 2 27B's query_pre_attn_scalar is 144 = D / N, not H = 128: llama.cpp keys it
  on the block count (46), and so do we."""
  cfg = all_presets()["gemma2-9b"].replace(width=4608, num_layers=46, num_heads=32,
                                          num_kv_heads=16, head_dim=128, mlp_width=36864,
                                          layer_kinds=gemma2.layer_kinds(46))
  got = gemma2.config_from_gguf(*_published_metadata("gemma2", cfg))
  assert got.query_scale == 144 ** -0.5 and got.layer_kinds[:2] == ("local", "global")


@pytest.mark.parametrize("arch,preset,changes,match", [
    ("gemma2", "gemma2-2b", {"gemma2.attention.sliding_window": None}, "sliding_window"),
    ("gemma2", "gemma2-2b", {"gemma2.attention.sliding_window": 0}, "positive window"),
    ("qwen3", "qwen3-0.6b", {"qwen3.attention.value_length": 64}, "value_length 64"),
    ("qwen3", "qwen3-0.6b", {"qwen3.feed_forward_length": None}, "feed_forward_length"),
])
def test_gguf_metadata_the_loader_cannot_use_is_named(arch, preset, changes, match):
  meta, names = _published_metadata(arch, all_presets()[preset], **changes)
  meta = {k: v for k, v in meta.items() if v is not None}  # None: the key is missing
  family = {"qwen3": qwen3, "gemma2": gemma2}[arch]
  with pytest.raises(CheckpointMismatchError, match=match):
    family.config_from_gguf(meta, names)


@pytest.mark.parametrize("arch,meta,match", [
    ("llama", {"general.architecture": "llama", "tokenizer.ggml.tokens": ["a", "b"],
               "llama.embedding_length": 64, "llama.attention.head_count": 4,
               "llama.feed_forward_length": 128}, "llama.block_count"),
    ("gemma3", {"general.architecture": "gemma3", "tokenizer.ggml.tokens": ["a", "b"],
                "gemma3.block_count": 2, "gemma3.embedding_length": 64,
                "gemma3.attention.key_length": 16, "gemma3.attention.head_count": 4,
                "gemma3.attention.head_count_kv": 1, "gemma3.feed_forward_length": 128},
     "gemma3.attention.sliding_window"),
])
def test_llama_and_gemma3_gguf_missing_keys_are_named(arch, meta, match):
  """A key llama.cpp always writes, missing: a CheckpointMismatchError naming it (it was
  a bare KeyError)."""
  from lang_neuron_jax.models import gemma3, llama

  with pytest.raises(CheckpointMismatchError, match=match):
    {"llama": llama, "gemma3": gemma3}[arch].config_from_gguf(meta, ["token_embd.weight"])
