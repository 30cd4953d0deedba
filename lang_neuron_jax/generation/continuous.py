"""Continuous batching: generation where a row that stops hands its slot to a queued row.

:func:`~lang_neuron_jax.generation.sampling.generate` runs a batch until its slowest row ends. The
translation experiment's rows stop after their first line (a median of 14 tokens on the
embedded model) but some run the full 128 tokens, so a fixed batch spends most of its
steps on finished rows. Here ``S`` *slots* decode together; every ``steps_per_call``
steps the host collects the rows that stopped and prefills queued prompts into the freed
slots. A refilled slot's old cache entries lie past its new row's position, where the
causal mask hides them, and are overwritten as the row advances.

A row's tokens depend only on its prompt, its intervention, its row id and the seed: the
keys are those of :func:`~lang_neuron_jax.generation.sampling.generate`
(``fold_in(fold_in(key(seed), row_id), new_tokens_so_far)``), so a row gives the same
tokens whichever slot, neighbours or refill order it meets (tests/test_continuous.py).
"""

from __future__ import annotations

import collections
import functools
from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from lang_neuron_jax.generation import batching, sampling
from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.models.decoder import Decoder, init_cache
from lang_neuron_jax.models.taps import Intervention
from lang_neuron_jax.errors import UserError


@flax.struct.dataclass
class Slots:
  """The state of ``S`` decoding slots (every array has the slots as its leading axis).

  Attributes:
    last_hidden: ``[S, D]`` final hidden state of each slot's last fed token.
    cache: The :class:`~lang_neuron_jax.models.decoder.KVCache` (``S`` rows).
    lengths: int32 ``[S]`` prompt lengths.
    num_tokens: int32 ``[S]`` new tokens produced, the stopping token included.
    done: bool ``[S]`` rows that stopped (and free slots).
    has_content: bool ``[S]`` rows whose current line has a non-space character.
    tokens: int32 ``[S, max_new_tokens]`` new tokens, then padding.
    row_ids: int32 ``[S]`` identities of the rows (they choose the random keys).
    intervention: Per-slot edits (``[S, L, U]`` per site), or None for no row.
  """

  last_hidden: jax.Array
  cache: Any
  lengths: jax.Array
  num_tokens: jax.Array
  done: jax.Array
  has_content: jax.Array
  tokens: jax.Array
  row_ids: jax.Array
  intervention: Intervention | None


def empty_slots(config: DecoderConfig, params, num_slots: int, cache_length: int,
                max_new_tokens: int, intervention: Intervention | None) -> Slots:
  """Free slots (every row done). ``intervention``: one with ``[B, L, U]`` edits (any B,
  e.g. one row) whose ``[L, U]`` shapes and dtypes the slots take for their ``[S, L, U]``
  edits (its values are not used), or None when no row will have one."""
  dtype = jax.tree.leaves(params)[0].dtype
  return Slots(
      last_hidden=jnp.zeros((num_slots, config.width), dtype),
      cache=init_cache(config, num_slots, cache_length, dtype),
      lengths=jnp.ones(num_slots, jnp.int32), num_tokens=jnp.zeros(num_slots, jnp.int32),
      done=jnp.ones(num_slots, bool), has_content=jnp.zeros(num_slots, bool),
      tokens=jnp.full((num_slots, max_new_tokens), config.pad_token_id, jnp.int32),
      row_ids=jnp.zeros(num_slots, jnp.int32),
      intervention=None if intervention is None else jax.tree.map(
          lambda x: jnp.zeros((num_slots,) + x.shape[1:], x.dtype), intervention))


@functools.partial(jax.jit, static_argnames=("config", "intervene_prompt"),
                   donate_argnames=("slots",))
def fill(config: DecoderConfig, params, slots: Slots, slot_index: jax.Array, ids: jax.Array,
         lengths: jax.Array, row_ids: jax.Array, intervention: Intervention | None, *,
         intervene_prompt: bool = True) -> Slots:
  """Prefills ``R`` prompts and puts them in the slots ``slot_index``.

  Args:
    slots: The current slots (donated).
    slot_index: int32 ``[R]``; an index of ``S`` or more drops that row (padding).
    ids: int32 ``[R, P]`` right-padded prompts; ``lengths`` int32 ``[R]``.
    row_ids: int32 ``[R]``.
    intervention: The rows' edits (``[R, L, U]``), None when the slots have none.
    intervene_prompt: Apply the edits to the prompt too (the paper).
  """
  R = ids.shape[0]
  cache = init_cache(config, R, slots.cache.max_length, slots.last_hidden.dtype)
  prefill = Decoder(config).apply(
      {"params": params}, ids, cache=cache, compute_logits=False,
      intervention=intervention if intervene_prompt else None)
  put = lambda old, new: old.at[slot_index].set(new.astype(old.dtype), mode="drop")
  return Slots(
      last_hidden=put(slots.last_hidden, prefill.hidden[jnp.arange(R), lengths - 1]),
      cache=jax.tree.map(put, slots.cache, prefill.cache),
      lengths=put(slots.lengths, lengths), num_tokens=put(slots.num_tokens, jnp.zeros(R, jnp.int32)),
      done=put(slots.done, jnp.zeros(R, bool)), has_content=put(slots.has_content, jnp.zeros(R, bool)),
      tokens=put(slots.tokens, jnp.full((R, slots.tokens.shape[1]), config.pad_token_id)),
      row_ids=put(slots.row_ids, row_ids),
      intervention=None if intervention is None else jax.tree.map(put, slots.intervention,
                                                                  intervention))


@functools.partial(jax.jit, static_argnames=("config", "num_steps", "sampler"),
                   donate_argnames=("slots",))
def decode(config: DecoderConfig, params, slots: Slots, *, num_steps: int,
           sampler: sampling.Sampler, seed: int | jax.Array = 0,
           line_stop: sampling.LineStop | None = None) -> Slots:
  """Up to ``num_steps`` decode steps of every slot (fewer if all rows stop).

  A row stops at EOS, at the end of its first line (with ``line_stop``) or after
  ``max_new_tokens``; stopped rows keep their tokens until their slot is refilled.
  """
  module = Decoder(config)
  S, max_new_tokens = slots.tokens.shape
  rows = jnp.arange(S)
  last_slot = slots.cache.max_length - 1

  def body(carry):
    i, s = carry
    keys = jax.vmap(lambda r, n: jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), r), n))(
        s.row_ids, s.num_tokens)
    nxt, stop, has_content = sampling.choose_tokens(config, params, s.last_hidden, keys, s.done,
                                                    s.has_content, sampler, line_stop)
    stop |= s.num_tokens + 1 >= max_new_tokens
    # Stopped rows feed padding at a clamped position: their cache rows are refilled later.
    positions = jnp.minimum(s.lengths + s.num_tokens, last_slot)[:, None]
    out = module.apply({"params": params}, nxt[:, None], positions=positions,
                       cache=s.cache, intervention=s.intervention, compute_logits=False)
    slot = jnp.minimum(s.num_tokens, max_new_tokens - 1)
    tokens = s.tokens.at[rows, slot].set(jnp.where(s.done, s.tokens[rows, slot], nxt))
    return i + 1, s.replace(last_hidden=out.hidden[:, 0], cache=out.cache, done=s.done | stop,
                            has_content=has_content, tokens=tokens,
                            num_tokens=jnp.where(s.done, s.num_tokens, s.num_tokens + 1))

  cond = lambda carry: (carry[0] < num_steps) & ~jnp.all(carry[1].done)
  return jax.lax.while_loop(cond, body, (jnp.int32(0), slots))[1]


def generate_continuously(
    config: DecoderConfig, params, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
    num_slots: int, sampler: sampling.Sampler = sampling.GREEDY, seed: int = 0,
    row_ids: Sequence[int] | None = None,
    interventions: Callable[[Sequence[int]], Intervention] | None = None,
    intervene_prompt: bool = True, line_stop: sampling.LineStop | None = None,
    prompt_width: int | None = None, steps_per_call: int = 4, fill_size: int = 16,
    on_rows: Callable[[list[tuple[int, list[int]]]], None] | None = None,
    layout: str = "data") -> list[list[int]]:
  """Generates every prompt through ``num_slots`` slots that are refilled as rows stop.

  Args:
    config, params: The model.
    prompts: R token lists (at least one token each).
    max_new_tokens: New tokens per row at most.
    num_slots: Rows decoded together (split across the local devices when their count
      divides it).
    sampler: Greedy by default.
    seed: Base seed; row ``r`` uses its row id (default ``r``) as
      :func:`~lang_neuron_jax.generation.sampling.generate` does.
    row_ids: R row identities.
    interventions: Given prompt indices, their edits with a leading row axis; None for
      no intervention on any row.
    intervene_prompt: Apply the edits to the prompts too (the paper).
    line_stop: Stop rows after their first non-empty line.
    prompt_width: Prompt slots of the cache (default: the bucket of the longest
      prompt). Rows compute alike only at the same width, so a run that resumes with
      fewer prompts passes the width of the whole experiment.
    steps_per_call: Decode steps between refills (a stopped row idles half of it on
      average; each call is one host round trip).
    fill_size: Prompts prefilled per call (the last call's are padded to it, so one
      shape compiles); slots are refilled once this many are free or the queue fits.
    on_rows: Called with ``[(prompt index, new tokens)]`` as rows finish.
    layout: Where the slots' rows go on the devices (:func:`sampling.shard_rows`).

  Returns:
    Each prompt's new tokens (the stopping EOS or newline token included).
  """
  n = len(prompts)
  row_ids = list(range(n)) if row_ids is None else list(row_ids)
  if not n:
    return []
  if any(len(p) == 0 for p in prompts):
    raise UserError("Every prompt needs at least one token (e.g. BOS).")
  longest = max(len(p) for p in prompts)
  prompt_width = prompt_width or batching.bucket_length(longest)
  if longest > prompt_width:
    raise UserError(f"A prompt of {longest} tokens does not fit prompt_width={prompt_width}.")
  fill_size = min(fill_size, num_slots)
  example = interventions([0]) if interventions else None  # Only its shapes are used.
  slots = sampling.shard_rows(empty_slots(config, params, num_slots,
                                          prompt_width + max_new_tokens, max_new_tokens, example),
                             layout)
  queue = collections.deque(range(n))
  owner = np.full(num_slots, -1)  # Prompt index of each slot's row; -1 for a free slot.
  out: list[list[int] | None] = [None] * n
  while True:
    done = np.asarray(slots.done)
    finished = np.flatnonzero(done & (owner >= 0))
    if finished.size:
      tokens, counts = np.asarray(slots.tokens)[finished], np.asarray(slots.num_tokens)[finished]
      rows = [(int(owner[s]), tokens[i, :counts[i]].tolist()) for i, s in enumerate(finished)]
      for index, new in rows:
        out[index] = new
      owner[finished] = -1
      if on_rows:
        on_rows(rows)
    free = np.flatnonzero(owner < 0)
    while queue and len(free) >= min(fill_size, len(queue)):
      take = [queue.popleft() for _ in range(min(fill_size, len(free), len(queue)))]
      slot_index = np.full(fill_size, num_slots, np.int32)  # Out of range: dropped.
      slot_index[:len(take)] = free[:len(take)]
      owner[free[:len(take)]] = take
      free = free[len(take):]
      padded = take + [take[-1]] * (fill_size - len(take))
      ids, lengths = batching.pad_prompts([prompts[i] for i in padded], config.pad_token_id,
                                          prompt_width)
      slots = fill(config, params, slots, jnp.asarray(slot_index), jnp.asarray(ids),
                   jnp.asarray(lengths),
                   jnp.asarray([row_ids[i] for i in padded], jnp.int32),
                   interventions(padded) if interventions else None,
                   intervene_prompt=intervene_prompt)
    if not (owner >= 0).any():
      return out
    slots = decode(config, params, slots, num_steps=steps_per_call, sampler=sampler, seed=seed,
                   line_stop=line_stop)
