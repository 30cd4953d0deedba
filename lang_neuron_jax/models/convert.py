"""Checkpoint conversion driven by an explicit key table.

A family file lists :class:`Rule` s mapping checkpoint keys to parameter paths. The
converter reads tensors one at a time (host memory stays near one tensor), checks that
every checkpoint key is used and every parameter is filled, and checks each shape
against ``jax.eval_shape(module.init, ...)`` so a checkpoint that does not match its
config fails with the offending key named.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterable, Mapping

import flax.traverse_util
import jax
import numpy as np

from lang_neuron_jax.errors import CheckpointMismatchError  # re-exported: its old home
from lang_neuron_jax.models.config import DecoderConfig


@dataclasses.dataclass(frozen=True)
class Rule:
  """One checkpoint tensor (per layer if ``source`` contains ``{i}``) and where it goes.

  Attributes:
    source: Checkpoint key, with ``{i}`` for the layer index.
    target: Parameter path joined by "/", with ``{i}`` for the layer index.
    transform: Layout fix from checkpoint to parameter layout.
  """

  source: str
  target: str
  transform: Callable[[np.ndarray], np.ndarray] = lambda w: w


def linear_to_kernel(w: np.ndarray) -> np.ndarray:
  """PyTorch ``nn.Linear`` stores ``[out, in]``; Flax ``Dense`` wants ``[in, out]``."""
  return np.ascontiguousarray(w.T)


def minus_one(w: np.ndarray) -> np.ndarray:
  """GGUF stores Gemma's RMS-norm scales as ``1 + w``; our parameters hold ``w``
  (as transformers' checkpoints do)."""
  return w - 1.0


def reverse_llama_rope_permutation(w: np.ndarray, num_heads: int) -> np.ndarray:
  """Undoes the row permutation llama.cpp's converter applies to Llama's q and k.

  llama.cpp rotates Llama in the interleaved layout (pairs ``(2j, 2j+1)`` of a head),
  while transformers' checkpoints, and our :func:`~lang_neuron_jax.models.decoder.rope`,
  use the half-split one (pairs ``(j, j + H/2)``). Its ``convert_hf_to_gguf.py`` therefore
  reorders each head's rows from ``[half, pair]`` to ``[pair, half]``
  (``LlamaModel.permute``); we put them back (transformers' ``_reverse_permute_weights``).
  Only the ``llama`` architecture is permuted: Qwen, Gemma and the NeoX-style families
  keep the half-split rows in GGUF.

  Args:
    w: ``[heads * H, ...]`` rows of q (``num_heads`` = N) or k (``num_heads`` = K), a
      weight ``[out, in]`` or a bias ``[out]``, in PyTorch order.
    num_heads: Heads the rows belong to.

  Returns:
    ``w`` with each head's rows in transformers' order; same shape.
  """
  half = w.shape[0] // num_heads // 2
  return np.ascontiguousarray(
      w.reshape(num_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


class TensorSource:
  """Read-only access to a checkpoint's tensors, one at a time, as numpy arrays."""

  def keys(self) -> Iterable[str]:
    raise NotImplementedError

  def get(self, key: str) -> np.ndarray:
    raise NotImplementedError


def expand_rules(rules: Iterable[Rule], num_layers: int) -> list[Rule]:
  """Instantiates ``{i}`` templates for every layer."""
  out = []
  for rule in rules:
    if "{i}" in rule.source:
      out.extend(Rule(rule.source.format(i=i), rule.target.format(i=i), rule.transform)
                 for i in range(num_layers))
    else:
      out.append(rule)
  return out


def convert(source: TensorSource, rules: Iterable[Rule], config: DecoderConfig,
            abstract_params: Mapping, dtype, *, ignore: Iterable[str] = (),
            place: Callable[[str, np.ndarray], jax.Array] | None = None) -> dict:
  """Builds the parameter tree from checkpoint tensors.

  Args:
    source: The checkpoint.
    rules: The family's key table.
    config: The model's config (for the layer count).
    abstract_params: ``jax.eval_shape(module.init, ...)["params"]``: expected shapes.
    dtype: dtype of the returned parameters.
    ignore: Regular expressions of checkpoint keys that are knowingly unused (e.g. a
      tied ``lm_head.weight`` or RoPE buffers).
    place: Optional ``(path, array) -> jax.Array`` (e.g. ``jax.device_put`` with a
      sharding); defaults to ``jax.numpy.asarray``.

  Returns:
    The nested parameter dict.

  Raises:
    CheckpointMismatchError: naming a missing, unexpected or mis-shaped tensor.
  """
  expected = {"/".join(k): v for k, v in flax.traverse_util.flatten_dict(abstract_params).items()}
  available = set(source.keys())
  ignore_re = [re.compile(p) for p in ignore]
  flat = {}
  used = set()
  for rule in expand_rules(rules, config.num_layers):
    if rule.target not in expected:
      raise CheckpointMismatchError(
          f"Key table maps {rule.source!r} to unknown parameter {rule.target!r}.")
    if rule.source not in available:
      raise CheckpointMismatchError(
          f"Checkpoint has no tensor {rule.source!r} (needed for parameter "
          f"{rule.target!r}); is the checkpoint complete and of the right family?")
    value = rule.transform(np.asarray(source.get(rule.source), dtype=np.float32))
    want = tuple(expected[rule.target].shape)
    if value.shape != want:
      raise CheckpointMismatchError(
          f"Tensor {rule.source!r} has shape {value.shape} after conversion but the config "
          f"expects {want} for {rule.target!r}; the checkpoint does not match its config.")
    value = value.astype(dtype)
    flat[rule.target] = place(rule.target, value) if place else jax.numpy.asarray(value)
    used.add(rule.source)
  missing = sorted(set(expected) - set(flat))
  if missing:
    raise CheckpointMismatchError(f"No checkpoint tensor fills parameters {missing[:5]}.")
  unused = sorted(k for k in available - used if not any(r.fullmatch(k) for r in ignore_re))
  if unused:
    raise CheckpointMismatchError(
        f"Checkpoint tensors {unused[:5]} (of {len(unused)} unused) match no parameter; "
        "the checkpoint does not match its config (more layers or another family?).")
  return flax.traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})
