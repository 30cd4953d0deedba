"""Pooled responses of every neuron to every text, streamed to ``.npy`` memory maps.

A text's *response* at a neuron is the neuron's mean over the text's tokens (BOS
included, as in the reference). Texts are tokenized, sorted by length and run in
right-padded batches whose width is a bucket length, through the jitted
:func:`~lang_neuron_jax.models.activations.pooled_taps`; only ``[B, L, U]`` per site leaves the
device. Each site's responses go to ``{site}.npy`` (float32 ``[M, L, U]``, M texts in
the caller's order) as the batches finish.

Resuming: this is a :class:`~lang_neuron_jax.runtime.stages.Stage` named ``responses``. The
batches are planned the same way on every run, and each process records the batches it
has written in the stage's journal (after the arrays are flushed). A re-run with the
same configuration runs only the batches no journal lists and gives identical arrays;
``responses.stage.json`` is written last and marks a finished stage. A directory written
with another configuration is refused, never overwritten.

Several processes (:mod:`lang_neuron_jax.runtime.distributed`): each runs every
``process_count``-th unfinished batch on its own devices and writes its rows into the
same memory maps (a shared file system), so the result does not depend on how many
processes ran it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

import jax
import numpy as np
from tqdm import tqdm

from lang_neuron_jax.generation import batching
from lang_neuron_jax.runtime import distributed, sharding, stages
from lang_neuron_jax.models.activations import POSITIVE_SUFFIX, pooled_taps
from lang_neuron_jax.errors import NonFiniteError, UserError

class Responses(dict):
  """``{site: float32 [M, L, U]}`` read-only memory maps of the mean responses, with

  * ``positive``: ``{site: float32 [M, L, U]}``, per text the number of tokens at which
    each unit is positive (only for the ``positive_sites`` asked for; LAPE's statistic),
  * ``lengths``: int ``[M]``, each text's token count (BOS included),
  * ``stamp``: the :class:`~lang_neuron_jax.runtime.stages.Stamp` of the stage that computed them.
  """

  def __init__(self, arrays: dict[str, np.ndarray], stamp: stages.Stamp, *,
               positive: dict[str, np.ndarray] | None = None,
               lengths: np.ndarray | None = None):
    super().__init__(arrays)
    self.stamp = stamp
    self.positive = positive or {}
    self.lengths = lengths


def compute_responses(lm, tokens: Sequence[Sequence[int]], workdir: str, *,
                      sites: Sequence[str] | None = None,
                      positive_sites: Sequence[str] = (), batch_size: int = 32,
                      config_id: dict | None = None, progress: bool = True) -> Responses:
  """Computes (or resumes, or reuses) every site's responses to every text.

  Args:
    lm: A :class:`~lang_neuron_jax.LanguageModel`.
    tokens: Token ids of M texts.
    workdir: Directory for ``{site}.npy``, the stage's journals and its stamp.
    sites: Tap sites to record (default: the model's neuron sites).
    positive_sites: Sites whose per-text counts of positive tokens are recorded too
      (``{site}.positive.npy``), from the same forward pass.
    batch_size: Texts per batch (rounded up to a multiple of the local device count;
      batches are split over the devices along the batch axis, or with ``lm.layout ==
      "model"`` seen whole by every device).
    config_id: Extra JSON-serialisable identity of the run, part of the fingerprint
      that guards the directory.
    progress: Show a progress bar.

  Returns:
    A :class:`Responses`: ``{site: float32 [M, L, U]}`` read-only memory maps, the
    positive counts, the texts' lengths and the stage's ``stamp``.
  """
  cfg = lm.config
  sites = cfg.neuron_sites if sites is None else tuple(sites)
  positive_sites = tuple(positive_sites)
  devices = jax.local_devices()
  batch_size = -(-batch_size // len(devices)) * len(devices)
  lengths = [len(t) for t in tokens]
  if not tokens:
    raise UserError("No texts to run.")
  digest = hashlib.sha256(json.dumps([list(map(int, t)) for t in tokens]).encode()).hexdigest()
  stage = stages.Stage(workdir, "responses", model_id=lm.model_id, keep_other=False, config={
      "tokens": digest, "sites": sites, "batch_size": batch_size, "extra": config_id or {},
      **({"positive_sites": positive_sites} if positive_sites else {})})
  # Outputs by key (also the files' names): a site's means under its name, its positive
  # counts under "{site}.positive", as pooled_taps returns them.
  keys = sites + tuple(s + POSITIVE_SUFFIX for s in positive_sites)
  width = lambda key: cfg.site_widths[key.removesuffix(POSITIVE_SUFFIX)]
  shapes = {k: (len(tokens), cfg.num_layers, width(k)) for k in keys}
  paths = {k: stage.path(f"{k}.npy") for k in keys}
  lengths_array = np.asarray(lengths, np.int64)

  def read():
    arrays = {k: np.load(p, mmap_mode="r") for k, p in paths.items()}
    return Responses({s: arrays[s] for s in sites}, stage.stamp, lengths=lengths_array,
                     positive={s: arrays[s + POSITIVE_SUFFIX] for s in positive_sites})

  finished = stage.reuse(read)
  if finished is not None:
    return finished

  def fresh_arrays():  # Memory maps that the batches fill in place.
    for k in keys:
      np.lib.format.open_memmap(paths[k], mode="w+", dtype=np.float32, shape=shapes[k]).flush()

  stage.prepare(fresh_arrays)
  journal = stage.journal()
  done = journal.start()  # Every process refuses a journal of another configuration.
  arrays = {k: np.load(p, mmap_mode="r+") for k, p in paths.items()}
  by_text = sharding.rows_sharding(lm.layout)
  batches = batching.plan_batches(lengths, batch_size)
  mine = distributed.share([b for b in range(len(batches)) if b not in done])
  bar = tqdm(total=len(tokens), desc="responses", unit="text", disable=not progress,
             initial=sum(len(batches[b]) for b in done))
  for index in mine:
    rows = batches[index]
    ids, row_lengths = batching.pad([tokens[r] for r in rows], cfg.pad_token_id,
                                    rows=batch_size, buckets=batching.RESPONSE_BUCKETS)
    mask = np.arange(ids.shape[1]) < row_lengths[:, None]  # [B, W]; padding rows all False
    pooled = pooled_taps(cfg, lm.params, jax.device_put(ids, by_text),
                         jax.device_put(mask, by_text), sites=sites,
                         positive_sites=positive_sites)
    for k in keys:
      values = np.asarray(pooled[k])[:len(rows)]
      if not np.isfinite(values).all():
        raise NonFiniteError(
            f"Non-finite responses at site {k!r} for texts {rows[:5].tolist()}...; try "
            "float32 instead of bfloat16, or check the checkpoint.")
      arrays[k][rows] = values
    for a in arrays.values():
      a.flush()
    journal.append([{"unit": int(index)}])  # Recorded only after the rows are flushed.
    bar.update(len(rows))
  bar.close()
  del arrays
  journal.gather()
  stage.commit(lambda: {"texts": len(tokens), "shapes": {s: list(v) for s, v in shapes.items()}},
               summary=lambda info: info)
  return read()
