"""Control experiments' generation: rows of many conditions per batch, each steered.

A *condition* (:mod:`lang_neuron_jax.control.conditions`) is "no intervention" or a way of
steering towards a language; :class:`Steering` turns conditions into edits (the paper's:
fix a neuron set to a statistic, :func:`neuron_steering`). Every row of
a generation batch carries its own intervention (``[B, L, U]`` masks and values), so the
baseline, every language, every N and the random controls run side by side through one
compiled sampler; changing neurons never recompiles.

Row ``r`` of a condition samples with key ``fold_in(seed, sample_index)``: all conditions
share their random numbers (common random numbers make the comparison sharper), and a
sample does not depend on its batch.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import numpy as np
from tqdm import tqdm

from lang_neuron_jax.generation import batching, continuous, sampling
from lang_neuron_jax.neurons import selection
from lang_neuron_jax.control.conditions import Condition, Job
from lang_neuron_jax.methods.base import Steer, stack_steers
from lang_neuron_jax.models.taps import Intervention
from lang_neuron_jax.neurons.expertise import Expertise
from lang_neuron_jax.errors import UserError


class Steering:
  """How an experiment's conditions edit generation rows.

  Args:
    steer: A condition's :class:`~lang_neuron_jax.methods.base.Steer` (called for
      conditions with a language; cached per condition).
    shapes: ``{site: (L, U)}`` of every site an edit may touch: every batch holds these
      sites, so every batch shares one compilation.
  """

  def __init__(self, steer: Callable[[Condition], Steer], shapes: Mapping[str, tuple[int, int]]):
    self._steer = steer
    self.shapes = dict(shapes)
    self._cache: dict[Condition, Steer] = {}

  def steer(self, condition: Condition) -> Steer | None:
    if condition.language is None:
      return None
    if condition not in self._cache:
      self._cache[condition] = self._steer(condition)
    return self._cache[condition]

  def intervention(self, conditions: Sequence[Condition]) -> Intervention:
    """The batched intervention of rows under ``conditions`` (``[B, L, U]`` per site)."""
    return stack_steers([self.steer(c) for c in conditions], self.shapes)


def neuron_steering(expertise: Expertise, *, statistic: str = "on_p50",
                    seed: int = 0) -> Steering:
  """The paper's conditions: each fixes :meth:`Condition.neurons` to ``statistic``."""
  if statistic not in selection.STATISTICS + ("zero",):
    raise UserError(f"Unknown statistic {statistic!r}; use one of "
                     f"{selection.STATISTICS + ('zero',)}.")
  index = expertise.index
  return Steering(lambda c: selection.neuron_steer(c.neurons(expertise, seed), statistic),
                  {s: (index.num_layers, w) for s, w in zip(index.sites, index.widths)})


def balanced_batch_size(num_rows: int, batch_size: int, num_devices: int = 1) -> int:
  """Rows per batch when ``num_rows`` run in as few batches of at most ``batch_size`` as
  possible, equally filled (1,320 rows at 128: 11 batches of 120, not 10 of 128 and one
  of 40 padded to 128), rounded up to a multiple of ``num_devices``."""
  batches = -(-num_rows // batch_size)
  size = -(-num_rows // batches)
  return -(-size // num_devices) * num_devices


def run_jobs(lm, steering: Steering | None, jobs: Sequence[Job], *, max_new_tokens: int,
             sampler: sampling.Sampler, seed: int = 0, batch_size: int = 64,
             intervene_prompt: bool = True,
             on_batch: Callable[[list[dict]], None] | None = None,
             line_stop: sampling.LineStop | None = None, refill: bool = False,
             prompt_width: int | None = None, progress: bool = True) -> list[dict]:
  """Generates every job, batching rows of different conditions together.

  Args:
    lm: The :class:`~lang_neuron_jax.LanguageModel`.
    steering: How conditions edit rows (:func:`neuron_steering` for the paper's
      neurons); None if every job is the baseline.
    jobs: The rows to generate.
    max_new_tokens: New tokens per row.
    sampler: Greedy or sampling.
    seed: Base seed (rows use ``fold_in(seed, sample_index)``).
    batch_size: Rows per compiled call. Fixed batches are equally filled
      (:func:`balanced_batch_size`); rows are split across the local devices when their
      count divides the batch.
    intervene_prompt: Intervene on the prompt too (the paper) or only new tokens.
    on_batch: Called with finished records (for streaming to disk).
    line_stop: Stop rows after their first non-empty line (translation).
    refill: Continuous batching (:mod:`lang_neuron_jax.generation.continuous`): ``batch_size``
      slots, each refilled from the queue as its row stops; for rows that stop early.
      The rows' tokens are the same either way.
    prompt_width: Prompt width of every batch (default: the bucket of the longest
      prompt among ``jobs``). A row's float results depend on it, so a resumed run
      passes the width of all its jobs, not of the remaining ones.
    progress: Show a progress bar.

  Returns:
    One record per job, in job order: condition fields, sample index, ``tokens``, ``text``.
  """
  def record(job: Job, new: list[int]) -> dict:
    text = lm.tokenizer.decode(new, skip_special_tokens=True) if lm.tokenizer else ""
    c = job.condition
    strength = {} if c.strength is None else {"strength": c.strength}
    return {"condition": c.name, "language": c.language, "kind": c.kind, "n": c.n, **strength,
            "sample": job.sample_index, "tokens": new, "text": text, **job.meta}

  if not jobs:
    return []
  records: list[dict | None] = [None] * len(jobs)
  bar = tqdm(total=len(jobs), desc="generate", unit="row", disable=not progress)

  def finished(rows: list[tuple[int, list[int]]]) -> None:
    batch_records = [record(jobs[i], new) for i, new in rows]
    for (i, _), r in zip(rows, batch_records):
      records[i] = r
    if on_batch:
      on_batch(batch_records)
    bar.update(len(rows))

  def intervention(rows: Sequence[int]):
    conditions = [jobs[i].condition for i in rows]
    if all(c.language is None for c in conditions) and not refill:
      return None  # A batch of baseline rows compiles without edits.
    return steering.intervention(conditions)

  prompt_width = prompt_width or batching.bucket_length(max(len(j.prompt) for j in jobs))
  settings = dict(max_new_tokens=max_new_tokens, sampler=sampler, seed=seed,
                  intervene_prompt=intervene_prompt, line_stop=line_stop)
  size = balanced_batch_size(len(jobs), batch_size, jax.local_device_count())
  if refill:
    any_edits = any(j.condition.language is not None for j in jobs)
    continuous.generate_continuously(
        lm.config, lm.params, [j.prompt for j in jobs], num_slots=size,
        row_ids=[j.sample_index for j in jobs], interventions=intervention if any_edits else None,
        prompt_width=prompt_width, on_rows=finished, layout=lm.layout, **settings)
  else:
    for start in range(0, len(jobs), size):
      rows = list(range(start, min(start + size, len(jobs))))
      padded = rows + [rows[-1]] * (size - len(rows))  # One shape for every batch.
      ids, lengths = batching.pad_prompts([jobs[i].prompt for i in padded],
                                          lm.config.pad_token_id, prompt_width)
      row_ids = np.asarray([jobs[i].sample_index for i in padded], np.int32)
      ids, lengths, row_ids, edits = sampling.shard_rows(
          (ids, lengths, row_ids, intervention(padded)), lm.layout)
      tokens, counts = sampling.generate(lm.config, lm.params, ids, lengths, row_ids=row_ids,
                                         intervention=edits, **settings)
      tokens, counts = np.asarray(tokens), np.asarray(counts)
      finished([(i, tokens[r, :counts[r]].tolist()) for r, i in enumerate(rows)])
  bar.close()
  return records
