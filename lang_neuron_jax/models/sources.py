"""Checkpoint readers: transformers safetensors directories and GGUF files.

Both read one tensor at a time as float32 numpy in PyTorch layout (``[out, in]`` for
linear weights), so a family's key table is the only place that knows about layouts.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Mapping

import numpy as np

from lang_neuron_jax.models.convert import TensorSource
from lang_neuron_jax.errors import CheckpointMismatchError, MissingFileError, UserError


class SafetensorsSource(TensorSource):
  """The tensors of a transformers checkpoint directory (sharded or not)."""

  def __init__(self, directory: str):
    import safetensors  # Imported here: only this reader needs it.

    self._safe_open = safetensors.safe_open
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
      with open(index) as f:
        weight_map = json.load(f)["weight_map"]
      self._file_of = {k: os.path.join(directory, v) for k, v in weight_map.items()}
    else:
      files = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
      if not files:
        raise MissingFileError(
            f"No *.safetensors files in {directory!r}; save the model with "
            "save_pretrained(..., safe_serialization=True).")
      self._file_of = {}
      for name in files:
        path = os.path.join(directory, name)
        with safetensors.safe_open(path, framework="numpy") as f:
          self._file_of.update({k: path for k in f.keys()})
    for path in set(self._file_of.values()):
      if not os.path.exists(path):
        raise MissingFileError(f"The index names {path!r}, which is missing.")

  def keys(self) -> Iterable[str]:
    return self._file_of.keys()

  def get(self, key: str) -> np.ndarray:
    path = self._file_of[key]
    try:
      with self._safe_open(path, framework="numpy") as f:
        return f.get_tensor(key).astype(np.float32)
    except TypeError:  # numpy has no bfloat16: read through the flax backend instead.
      with self._safe_open(path, framework="flax") as f:
        return np.asarray(f.get_tensor(key), dtype=np.float32)


class GGUFSource(TensorSource):
  """The tensors of a GGUF file, dequantized to float32 with the ``gguf`` package.

  GGUF lists dimensions fastest-moving first (the reverse of PyTorch);
  ``gguf.quants.dequantize`` already returns numpy arrays in PyTorch order.
  """

  def __init__(self, reader):
    self._tensors = {t.name: t for t in reader.tensors}

  def keys(self) -> Iterable[str]:
    return self._tensors.keys()

  def get(self, key: str) -> np.ndarray:
    import gguf

    t = self._tensors[key]
    return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)


def open_gguf(path: str):
  """Opens a GGUF file, with a clear error for files that are not GGUF or are truncated."""
  import gguf

  if not os.path.isfile(path):
    raise MissingFileError(f"GGUF file {path!r} does not exist.")
  try:
    return gguf.GGUFReader(path)
  except Exception as e:  # gguf raises ValueError/IndexError/struct errors on bad files.
    raise UserError(
        f"{path!r} is not a readable GGUF file ({type(e).__name__}: {e}); it may be "
        "truncated or another format. Re-download or re-assemble it.") from e


def gguf_float(value) -> float:
  """A float of GGUF metadata, which stores float32: 1e-6 reads back as 1e-6, not as
  9.99999997e-07, so configs built from GGUF equal the published ones."""
  return float(str(np.float32(value)))


def gguf_metadata(reader) -> dict:
  """GGUF key/value metadata as Python values (token lists included)."""
  out = {}
  for key, field in reader.fields.items():
    if key.startswith("GGUF."):
      continue
    out[key] = field.contents()
  return out


def gguf_required(metadata: Mapping, key: str):
  """A metadata value the loader cannot build the model without.

  Raises:
    CheckpointMismatchError: naming the key and the file's architecture, rather than a
      bare ``KeyError``: llama.cpp's converter always writes these keys, so a file without
      one is incomplete or was written by another tool.
  """
  if key not in metadata:
    raise CheckpointMismatchError(
        f"This {metadata.get('general.architecture')!r} GGUF has no metadata key {key!r}, "
        "which llama.cpp's convert_hf_to_gguf.py writes and the loader needs; the file is "
        "incomplete or was written by another tool. Re-convert it with llama.cpp, or load "
        "the transformers checkpoint directory instead.")
  return metadata[key]


def gguf_head_dim(metadata: Mapping, arch: str, width: int, num_heads: int) -> int:
  """The head dimension H of a GGUF: ``{arch}.attention.key_length``, else ``D / N``
  (llama.cpp's default for ``n_embd_head_k``).

  Raises:
    CheckpointMismatchError: a ``value_length`` other than ``key_length``; the decoder has
      one head dimension for q, k and v.
  """
  head_dim = int(metadata.get(f"{arch}.attention.key_length", width // num_heads))
  value_dim = int(metadata.get(f"{arch}.attention.value_length", head_dim))
  if value_dim != head_dim:
    raise CheckpointMismatchError(
        f"This {arch!r} GGUF has attention.key_length {head_dim} but attention.value_length "
        f"{value_dim}; only equal key and value head dimensions are implemented.")
  return head_dim
