"""Pooled responses of every neuron to every text, streamed to ``.npy`` memory maps.

A text's *response* at a neuron is the neuron's mean over the text's tokens (BOS
included, as in the reference). Texts are tokenized, sorted by length and run in
right-padded batches whose width is a bucket length, through the jitted
:func:`~lang_neuron_jax.activations.pooled_taps`; only ``[B, L, U]`` per site leaves the
device. Each site's responses go to ``{site}.npy`` (float32 ``[M, L, U]``, M texts in
the caller's order) as the batches finish.

Resuming: the batches are planned the same way on every run, and each process records
the batches it has written in ``progress_{process}.json`` (after the arrays are flushed).
A re-run with the same configuration runs only the batches no progress file lists and
gives identical arrays; ``responses.json`` is written last and marks a finished stage.
A directory written with another configuration is refused, never overwritten.

Several processes (:mod:`lang_neuron_jax.distributed`): each runs every
``process_count``-th unfinished batch on its own devices and writes its rows into the
same memory maps (a shared file system), so the result does not depend on how many
processes ran it.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from typing import Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from lang_neuron_jax import distributed
from lang_neuron_jax.activations import pooled_taps

# Analysis batches are length-sorted, so fine buckets waste little padding; few enough
# that compilation (one per bucket) stays cheap.
RESPONSE_BUCKETS = (16, 32, 48, 64, 96, 128, 192, 256)
DONE_FILE = "responses.json"
PROGRESS_FILE = "progress_{process}.json"  # batches each process has written
PROGRESS_GLOB = "progress_*.json"


class WorkdirMismatchError(ValueError):
  """A work directory holds results of a different configuration."""


@dataclasses.dataclass(frozen=True)
class TokenizedTexts:
  """Token ids of texts that fit the length limit.

  Attributes:
    tokens: Token id lists of the kept texts (BOS included, as the tokenizer adds it).
    kept: bool ``[M_all]``, which of the input texts were kept.
    lengths: int ``[M_all]``, every input text's token count.
    max_length: The limit used.
  """

  tokens: tuple[tuple[int, ...], ...]
  kept: np.ndarray
  lengths: np.ndarray
  max_length: int


def tokenize_texts(tokenizer, texts: Sequence[str], *, max_length: int = 256) -> TokenizedTexts:
  """Tokenizes texts (with the tokenizer's own BOS policy) and drops those over the limit.

  The reference drops texts longer than 256 tokens; the dropped count is logged so that
  callers can report it.
  """
  if max_length < 1:
    raise ValueError(f"max_length must be positive, got {max_length}.")
  ids = tokenizer(list(texts)).input_ids
  lengths = np.array([len(t) for t in ids], np.int64)
  kept = lengths <= max_length
  if not kept.all():
    logging.warning("Dropping %d of %d texts longer than %d tokens (longest: %d).",
                    int((~kept).sum()), len(texts), max_length, int(lengths.max()))
  empty = np.flatnonzero(lengths == 0)
  if empty.size:
    raise ValueError(f"Texts {empty[:5].tolist()} have no tokens; remove them from the corpus.")
  return TokenizedTexts(tuple(tuple(t) for t, k in zip(ids, kept) if k), kept, lengths, max_length)


def bucket(n: int) -> int:
  for b in RESPONSE_BUCKETS:
    if n <= b:
      return b
  return -(-n // RESPONSE_BUCKETS[-1]) * RESPONSE_BUCKETS[-1]


def plan_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
  """Row indices of each batch: texts sorted by length (stable), ``batch_size`` a batch."""
  order = np.argsort(np.asarray(lengths), kind="stable")
  return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def fingerprint(**config) -> str:
  """A short hash of a JSON-serialisable configuration."""
  return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def _write_json_atomic(path, obj):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)


def compute_responses(lm, tokens: Sequence[Sequence[int]], workdir: str, *,
                      sites: Sequence[str] | None = None, batch_size: int = 32,
                      config_id: dict | None = None,
                      progress: bool = True) -> dict[str, np.ndarray]:
  """Computes (or resumes, or reuses) every site's responses to every text.

  Args:
    lm: A :class:`~lang_neuron_jax.LanguageModel`.
    tokens: Token ids of M texts.
    workdir: Directory for ``{site}.npy`` and the progress files.
    sites: Tap sites to record (default: the model's neuron sites).
    batch_size: Texts per batch (rounded up to a multiple of the local device count;
      batches are sharded over the devices along the batch axis).
    config_id: Extra JSON-serialisable identity of the run (e.g. the model source and
      dtype), part of the fingerprint that guards the directory.
    progress: Show a progress bar.

  Returns:
    ``{site: float32 [M, L, U]}`` read-only memory maps.
  """
  cfg = lm.config
  sites = cfg.neuron_sites if sites is None else tuple(sites)
  devices = jax.local_devices()
  batch_size = -(-batch_size // len(devices)) * len(devices)
  lengths = [len(t) for t in tokens]
  if not tokens:
    raise ValueError("No texts to run.")
  digest = hashlib.sha256(json.dumps([list(map(int, t)) for t in tokens]).encode()).hexdigest()
  fp = fingerprint(config=cfg.to_dict(), tokens=digest, sites=sites, batch_size=batch_size,
                   extra=config_id or {}, dtype=str(jax.tree.leaves(lm.params)[0].dtype))
  os.makedirs(workdir, exist_ok=True)
  shapes = {s: (len(tokens), cfg.num_layers, cfg.site_widths[s]) for s in sites}
  paths = {s: os.path.join(workdir, f"{s}.npy") for s in sites}
  done_path = os.path.join(workdir, DONE_FILE)
  me = distributed.process_index()
  progress_path = lambda p: os.path.join(workdir, PROGRESS_FILE.format(process=p))

  if os.path.exists(done_path):
    done = _read_json(done_path)
    if done["fingerprint"] != fp:
      raise WorkdirMismatchError(
          f"{workdir} holds responses of another configuration (fingerprint "
          f"{done['fingerprint']}, this run {fp}); use a new work directory or delete it.")
    logging.info("Reusing finished responses in %s", workdir)
    return {s: np.load(p, mmap_mode="r") for s, p in paths.items()}

  # Setup by process 0: fresh memory maps, or the partial ones of an interrupted run.
  progress_files = lambda: sorted(glob.glob(os.path.join(workdir, PROGRESS_GLOB)))
  # A mismatch is raised after the barrier, by every process alike (the leader raising
  # alone would leave the others waiting at the barrier).
  if distributed.is_leader():
    if not progress_files():
      for s in sites:
        np.lib.format.open_memmap(paths[s], mode="w+", dtype=np.float32, shape=shapes[s]).flush()
      _write_json_atomic(progress_path(0), {"fingerprint": fp, "finished": []})
  distributed.barrier("responses-setup")
  states = [_read_json(f) for f in progress_files()]
  if any(st["fingerprint"] != fp for st in states):
    raise WorkdirMismatchError(
        f"{workdir} holds a partial run of another configuration; use a new work directory "
        "or delete it.")
  finished = sorted({b for st in states for b in st["finished"]})
  mine_before = _read_json(progress_path(me))["finished"] if os.path.exists(
      progress_path(me)) else []
  distributed.barrier("responses-read")  # Nobody records progress before all have read it.
  arrays = {s: np.load(p, mmap_mode="r+") for s, p in paths.items()}
  if finished:
    logging.info("Resuming responses in %s: %d batches done", workdir, len(finished))

  mesh = Mesh(np.array(devices), ("batch",))
  sharding = NamedSharding(mesh, PartitionSpec("batch"))
  batches = plan_batches(lengths, batch_size)
  done_set = set(finished)
  mine = distributed.share([b for b in range(len(batches)) if b not in done_set])
  recorded = list(mine_before)
  bar = tqdm(total=len(tokens), desc="responses", unit="text", disable=not progress,
             initial=sum(len(batches[b]) for b in finished))
  for index in mine:
    rows = batches[index]
    width = bucket(max(lengths[r] for r in rows))
    ids = np.full((batch_size, width), cfg.pad_token_id, np.int32)
    mask = np.zeros((batch_size, width), bool)
    for i, r in enumerate(rows):
      ids[i, :lengths[r]] = tokens[r]
      mask[i, :lengths[r]] = True
    pooled = pooled_taps(cfg, lm.params, jax.device_put(ids, sharding),
                         jax.device_put(mask, sharding), sites=sites)
    for s in sites:
      values = np.asarray(pooled[s])[:len(rows)]
      if not np.isfinite(values).all():
        raise FloatingPointError(
            f"Non-finite responses at site {s!r} for texts {rows[:5].tolist()}...; try "
            "float32 instead of bfloat16, or check the checkpoint.")
      arrays[s][rows] = values
    for a in arrays.values():
      a.flush()
    recorded.append(int(index))  # Recorded only after the rows are flushed.
    _write_json_atomic(progress_path(me), {"fingerprint": fp, "finished": recorded})
    bar.update(len(rows))
  bar.close()
  del arrays
  distributed.barrier("responses-written")
  if distributed.is_leader():
    _write_json_atomic(done_path, {"fingerprint": fp, "texts": len(tokens), "sites": list(sites),
                                   "shapes": {s: list(v) for s, v in shapes.items()}})
    for f in progress_files():
      os.remove(f)
  distributed.barrier("responses-finished")
  return {s: np.load(p, mmap_mode="r") for s, p in paths.items()}
