"""One generation experiment as a stage, for the control stage and the comparison alike:
generate every job once, resumably (:func:`generate_resumable`), evaluate the rows
(language ID, perplexity, the translation's first line) and commit them
(:func:`evaluated_records`). Nothing here knows which method steers the rows.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Callable, Sequence

import numpy as np
from absl import logging

from lang_neuron_jax.control import conditions, rows as control
from lang_neuron_jax.control.conditions import Job
from lang_neuron_jax.evaluation import measures as evaluation, scoring
from lang_neuron_jax.generation import batching, sampling
from lang_neuron_jax.runtime import artifacts, distributed, stages


def unconditional_settings(*, max_new_tokens: int, temperature: float) -> dict:
  """``run_jobs`` arguments of an unconditional experiment (the paper: 64 tokens, 0.8)."""
  return {"max_new_tokens": max_new_tokens, "sampler": sampling.Sampler(temperature=temperature)}


def translation_settings(lm, *, max_new_tokens: int) -> dict:
  """``run_jobs`` arguments of a translation experiment (greedy)."""
  # Only the first non-empty line is scored, so rows stop once it is complete: the
  # same lines as generating all translation_tokens and cutting, at a fraction of the cost.
  # Continuous batching refills the slots of stopped rows, so the machine stays on
  # unfinished rows instead of waiting for each batch's slowest one
  # (lang_neuron_jax/generation/continuous.py).
  return {"max_new_tokens": max_new_tokens, "sampler": sampling.GREEDY,
          "line_stop": sampling.line_stop_for(lm.tokenizer, lm.config.vocab_size),
          "refill": True}


def evaluate_unconditional(lm, records: list[dict], *,
                           perplexity_samples: int | None = None) -> list[dict]:
  """Adds each sample's detected language, and its perplexity and coherence under the
  unintervened model (:func:`lang_neuron_jax.evaluation.scoring.score`; None for an
  empty sample, coherence None for a one-token one).

  Every sample is scored, so that the incoherence rule
  (:func:`lang_neuron_jax.evaluation.measures.is_incoherent`) can judge each one: about one
  forward pass with the output head per sample, in batches of 16 (docs/evaluation.md
  has what it costs). ``perplexity_samples`` is deprecated and ignored (it scored only
  the first samples of each condition, issue 30).
  """
  if perplexity_samples is not None:
    warnings.warn("evaluate_unconditional(perplexity_samples=...) is ignored: every sample "
                  "is scored (issue 30).", DeprecationWarning, stacklevel=2)
  texts = [r["text"] for r in records]
  for r, lang in zip(records, evaluation.identify_language(texts, progress=True)):
    r["detected"] = lang
  prompt = tuple(conditions.unconditional_prompt(lm.config))
  scores = scoring.score(lm, [prompt] * len(records), [r["tokens"] for r in records],
                         progress=True)
  _, calibrated = evaluation.incoherence_thresholds(lm.source)
  if not calibrated:
    logging.warning("The incoherence rule is not calibrated for %s: its samples are judged "
                    "by the embedded model's thresholds. Run benchmarks/incoherence.py "
                    "--model=%s to calibrate it (docs/evaluation.md).", lm.source, lm.source)
  for r, p, c in zip(records, scores.perplexity, scores.coherence):
    r["perplexity"] = None if np.isnan(p) else float(p)
    r["coherence"] = None if np.isnan(c) else float(c)
    r["judge"] = lm.source  # whose calibration judges its coherence (measures.record_threshold)
  return records


def evaluate_translation(records: list[dict]) -> list[dict]:
  """Adds each translation's output (its first non-empty line) and detected language."""
  for r in records:
    r["output"] = conditions.cut_translation(r["text"])
  outputs = [r["output"] for r in records]
  for r, lang in zip(records, evaluation.identify_language(outputs, progress=True)):
    r["detected"] = lang
  return records


def generate_resumable(lm, steering: control.Steering | None, jobs: Sequence[Job],
                       journal: stages.Journal, *, batch_size: int, seed: int,
                       progress: bool = True, **settings) -> list[dict]:
  """Generates every job once, continuing an interrupted run.

  Each finished row is appended to the stage's journal; a re-run skips the rows the
  journals hold and gives the records an uninterrupted run would (rows are independent
  of their batch). With several processes, each runs its share of the remaining jobs,
  and the journals are also how the processes see each other's rows.

  Returns:
    One record per job, in job order, on every process (with a ``job`` index).
  """
  jobs = [dataclasses.replace(j, meta={**j.meta, "job": i}) for i, j in enumerate(jobs)]
  done = journal.start()
  mine = distributed.share([j for j in jobs if j.meta["job"] not in done])
  # Every process and every resumption pads prompts to the width of all the jobs, so
  # that each row is computed exactly as in one uninterrupted run.
  width = batching.bucket_length(max(len(j.prompt) for j in jobs))
  control.run_jobs(lm, steering, mine, batch_size=batch_size, seed=seed,
                   on_batch=lambda batch: journal.append({"unit": r["job"], **r} for r in batch),
                   prompt_width=width, progress=progress, **settings)
  rows = journal.gather()
  if len(rows) != len(jobs):
    raise RuntimeError(f"{journal.stage.name}: {len(rows)} of {len(jobs)} rows in the journals "
                       f"of {journal.stage.directory}; was one removed while the run was going?")
  return [{k: v for k, v in rows[i].items() if k != "unit"} for i in range(len(jobs))]


def evaluated_records(stage: stages.Stage, name: str, generate: Callable[[], list[dict]],
                      evaluate: Callable[[list[dict]], list[dict]]) -> list[dict]:
  """A generation stage's evaluated records, ``{name}`` (JSON lines) in its directory:
  reused when the stage finished; else ``generate()`` (resumable, every process) and
  ``evaluate(rows)``, written and committed by process 0."""
  path = stage.path(name)
  read = functools.partial(artifacts.read_jsonl, path)
  records = stage.reuse(read)
  if records is not None:
    return records
  rows = generate()

  def write():
    evaluated = evaluate(rows)
    artifacts.write_jsonl(path, evaluated)
    return evaluated

  return stage.commit(write, read)
