"""Tokenizers from transformers, including the one a GGUF file describes.

transformers' own GGUF entry point (``AutoTokenizer.from_pretrained(dir, gguf_file=...)``)
reads the file's metadata with a PyTorch-based reader. We read the metadata with the
``gguf`` package instead and hand it to transformers' converter
(``convert_gguf_tokenizer``), so the main install needs no PyTorch; the result is cached
as ``tokenizer.json`` so the conversion (a few seconds) runs once. A test checks this
tokenizer token for token against ``AutoTokenizer`` on every shipped text.
"""

from __future__ import annotations

import os
from typing import Mapping

from absl import logging

# The GGUF metadata keys transformers reads for a tokenizer, and its names for them
# (mirrors transformers.integrations.gguf.gguf_tokenizer_mapping.GGUF_TOKENIZER_MAPPING).
_SPECIAL_TOKENS = {
    "bos_token": "bos_token_id",
    "eos_token": "eos_token_id",
    "unk_token": "unknown_token_id",
    "pad_token": "padding_token_id",
}


def tokenizer_from_gguf_metadata(metadata: Mapping):
  """Builds a ``PreTrainedTokenizerFast`` from GGUF metadata (see module docstring)."""
  from transformers import PreTrainedTokenizerFast
  from transformers.integrations.gguf import gguf_tokenizer_mapping as mapping

  grouped = {
      group: {name: metadata[f"tokenizer.{key}"] for key, name in renames.items()
              if f"tokenizer.{key}" in metadata}
      for group, renames in mapping.GGUF_TOKENIZER_MAPPING.items()
  }
  tokenizer_dict, tokenizer_config = grouped["tokenizer"], grouped["tokenizer_config"]
  if tokenizer_dict.get("tokenizer_type") == "llama":
    tokenizer_config.setdefault("add_bos_token", True)
  for name, key in _SPECIAL_TOKENS.items():
    token_id = metadata.get(f"tokenizer.ggml.{key}")
    tokenizer_config[name] = tokenizer_dict["tokens"][token_id] if token_id is not None else None
  backend, _ = mapping.convert_gguf_tokenizer(metadata["general.architecture"], tokenizer_dict)
  return PreTrainedTokenizerFast(tokenizer_object=backend, **tokenizer_config)


def cached_gguf_tokenizer(metadata_fn, cache_dir: str):
  """The GGUF's tokenizer, converted once and cached under ``cache_dir``.

  The directory is a cache entry (:func:`lang_neuron_jax.runtime.cache.cached`): written whole
  under a temporary name and renamed, one writer at a time, rebuilt if it fails to load.

  Args:
    metadata_fn: Zero-argument callable returning the GGUF metadata (only called when
      the cache entry is built, since reading the vocabulary takes seconds).
    cache_dir: Directory for ``tokenizer.json`` and its config.
  """
  from transformers import PreTrainedTokenizerFast

  from lang_neuron_jax.runtime import cache  # pylint: disable=g-import-not-at-top

  def read(directory: str):
    if not os.path.isfile(os.path.join(directory, "tokenizer.json")):
      raise FileNotFoundError(f"no tokenizer.json in {directory}")
    return PreTrainedTokenizerFast.from_pretrained(directory)

  def build(directory: str) -> None:
    tokenizer_from_gguf_metadata(metadata_fn()).save_pretrained(directory)

  return cache.cached(os.path.abspath(cache_dir), read=read, build=build,
                      what="the converted GGUF tokenizer")


def tokenizer_from_directory(directory: str):
  """The tokenizer saved beside a transformers checkpoint, or None if there is none."""
  from transformers import AutoTokenizer

  names = ("tokenizer.json", "tokenizer.model", "vocab.json", "sentencepiece.bpe.model")
  if not any(os.path.exists(os.path.join(directory, n)) for n in names):
    logging.warning("No tokenizer files in %s; LanguageModel.tokenizer is None.", directory)
    return None
  return AutoTokenizer.from_pretrained(directory)
