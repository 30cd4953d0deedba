"""Control experiments: generation with language-specific neurons fixed, many conditions
per batch.

A *condition* is "no intervention" or "fix this neuron set to a statistic". Every row of
a generation batch carries its own intervention (``[B, L, U]`` masks and values), so the
baseline, every language, every N and the random controls run side by side through one
compiled sampler; changing neurons never recompiles.

Row ``r`` of a condition samples with key ``fold_in(seed, sample_index)``: all conditions
share their random numbers (common random numbers make the comparison sharper), and a
sample does not depend on its batch.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from lang_neuron_jax import sampling, selection
from lang_neuron_jax.selection import Expertise, NeuronSet, build_intervention, select

TRANSLATION_PROMPT = ("Translate an English sentence into a target language.\n"
                      "English: {source}\nTarget Language:")
# The paper's sweep of N (total fixed neurons) and its main condition (the authors'
# main_prod_env.sh runs limited_{2,20,200,2000,20000,200000}_both; limited_2000_both is
# the one they also run top-only, bottom-only and on translation).
UNCONDITIONAL_NS = (2, 20, 200, 2_000, 20_000, 200_000)
MAIN_N = 2_000


@dataclasses.dataclass(frozen=True)
class Condition:
  """One experimental condition.

  Attributes:
    name: Unique, readable name ("baseline", "de/both/200", ...).
    language: Target language, or None for the baseline.
    kind: Selection kind ("both", "top", "bottom", "random"), or None.
    n: N, the total number of neurons fixed (both: N/2 top + N/2 bottom), or None.
  """

  name: str
  language: str | None = None
  kind: str | None = None
  n: int | None = None

  def neurons(self, expertise: Expertise, seed: int = 0) -> NeuronSet | None:
    if self.language is None:
      return None
    return select(expertise, self.language, self.n, self.kind, seed=seed)


BASELINE = Condition("baseline")


def condition(language: str, kind: str, n: int) -> Condition:
  return Condition(f"{language}/{kind}/{n}", language, kind, n)


def unconditional_conditions(languages: Sequence[str], num_neurons: int, *,
                             ns: Sequence[int] = UNCONDITIONAL_NS,
                             main_n: int = MAIN_N) -> list[Condition]:
  """The paper's unconditional sweep; N is always the total number of fixed neurons.

  No intervention; for each language, its top N/2 + bottom N/2 for each N of ``ns``
  (capped at the model's neuron count, where every neuron is fixed); and three controls
  of the main condition ``main_n``: its top half alone (top ``main_n / 2``), its bottom
  half alone, and ``main_n`` random neurons (the paper: top 1,000, bottom 1,000, random
  2,000 against ``limited_2000_both``).
  """
  main_n = selection.cap_n(main_n, num_neurons, "both")
  capped = sorted({selection.cap_n(n, num_neurons, "both") for n in ns})
  for n in capped + [main_n]:
    selection.check_n(n, num_neurons, "both")
  out = [BASELINE]
  for lang in languages:
    out += [condition(lang, "both", n) for n in capped]
    out += [condition(lang, "top", main_n // 2), condition(lang, "bottom", main_n // 2),
            condition(lang, "random", main_n)]
  return out


def unconditional_prompt(config) -> list[int]:
  """The family's prompt for unconditional generation: its BOS, or EOS if it has none
  (BLOOM starts from ``</s>``)."""
  return [config.bos_token_id if config.bos_token_id is not None else config.eos_token_id]


@dataclasses.dataclass(frozen=True)
class Job:
  """One generation row: a prompt under a condition."""

  condition: Condition
  prompt: tuple[int, ...]
  sample_index: int
  meta: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)


def run_jobs(lm, expertise: Expertise | None, jobs: Sequence[Job], *, max_new_tokens: int,
             sampler: sampling.Sampler, seed: int = 0, batch_size: int = 64,
             statistic: str = "on_p50", intervene_prompt: bool = True,
             on_batch: Callable[[list[dict]], None] | None = None,
             line_stop: sampling.LineStop | None = None,
             progress: bool = True) -> list[dict]:
  """Generates every job, batching rows of different conditions together.

  Args:
    lm: The :class:`~lang_neuron_jax.LanguageModel`.
    expertise: Scores to select neurons from (None if every job is the baseline).
    jobs: The rows to generate.
    max_new_tokens: New tokens per row.
    sampler: Greedy or sampling.
    seed: Base seed (rows use ``fold_in(seed, sample_index)``).
    batch_size: Rows per compiled call (the last batch is padded to it, so one shape).
      Rows are split across the local devices when their count divides it.
    statistic: Value the neurons are fixed to.
    intervene_prompt: Intervene on the prompt too (the paper) or only new tokens.
    on_batch: Called with each finished batch's records (for streaming to disk).
    line_stop: Stop rows after their first non-empty line (translation).
    progress: Show a progress bar.

  Returns:
    One record per job: condition fields, sample index, ``tokens`` and ``text``.
  """
  cache: dict[Condition, NeuronSet | None] = {}

  def neurons(c: Condition):
    if c not in cache:
      cache[c] = c.neurons(expertise, seed) if c.language is not None else None
    return cache[c]

  records = []
  bar = tqdm(total=len(jobs), desc="generate", unit="row", disable=not progress)
  for start in range(0, len(jobs), batch_size):
    chunk = list(jobs[start:start + batch_size])
    padded = chunk + [chunk[-1]] * (batch_size - len(chunk))  # One shape for every batch.
    ids, lengths = sampling.pad_prompts([j.prompt for j in padded], lm.config.pad_token_id)
    sets = [neurons(j.condition) for j in padded]
    intervention = None
    if any(s is not None for s in sets):
      intervention = build_intervention(sets, statistic=statistic, batched=True)
    row_ids = np.asarray([j.sample_index for j in padded], np.int32)
    ids, lengths, row_ids, intervention = sampling.shard_rows((ids, lengths, row_ids, intervention))
    tokens, counts = sampling.generate(
        lm.config, lm.params, ids, lengths, max_new_tokens=max_new_tokens, sampler=sampler,
        seed=seed, row_ids=row_ids, intervention=intervention,
        intervene_prompt=intervene_prompt, line_stop=line_stop)
    tokens, counts = np.asarray(tokens), np.asarray(counts)
    batch_records = []
    for r, job in enumerate(chunk):
      new = tokens[r, :counts[r]].tolist()
      text = lm.tokenizer.decode(new, skip_special_tokens=True) if lm.tokenizer else ""
      batch_records.append({"condition": job.condition.name, "language": job.condition.language,
                            "kind": job.condition.kind, "n": job.condition.n,
                            "sample": job.sample_index, "tokens": new, "text": text,
                            **job.meta})
    if on_batch:
      on_batch(batch_records)
    records += batch_records
    bar.update(len(chunk))
  bar.close()
  return records


def cut_translation(text: str) -> str:
  """The part of a translation continuation that is the translation.

  The model continues the prompt's pattern after its answer (a new "English:" line,
  another instruction...), so we keep the first non-empty line, stripped.
  """
  for line in text.split("\n"):
    if line.strip():
      return line.strip()
  return ""


def perplexity(lm, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]], *,
               batch_size: int = 16) -> np.ndarray:
  """Perplexity of each continuation given its prompt, under the unintervened model.

  Returns:
    float ``[R]`` (NaN for empty continuations).
  """
  out = np.full(len(prompts), np.nan)
  rows = [i for i, c in enumerate(continuations) if len(c)]
  # Similar lengths together; widths rounded up to 16 (not the sampler's power-of-two
  # prompt buckets: a 65-token text would pay for 128 positions of a 262k-entry head).
  rows.sort(key=lambda i: len(prompts[i]) + len(continuations[i]))
  for start in range(0, len(rows), batch_size):
    chunk = rows[start:start + batch_size]
    full = [list(prompts[i]) + list(continuations[i]) for i in chunk]
    full += [full[-1]] * (batch_size - len(chunk))
    width = -(-max(len(f) for f in full) // 16) * 16
    ids = np.full((batch_size, width), lm.config.pad_token_id, np.int32)
    for r, f in enumerate(full):
      ids[r, :len(f)] = f
    nll = np.asarray(_next_token_nll(lm.config, lm.params, jnp.asarray(ids)))  # [B, T-1]
    for r, i in enumerate(chunk):
      p, c = len(prompts[i]), len(continuations[i])
      out[i] = float(np.exp(nll[r, p - 1:p - 1 + c].mean()))
  return out


@functools.partial(jax.jit, static_argnames=("config",))
def _next_token_nll(config, params, ids: jax.Array) -> jax.Array:
  """float32 ``[B, T-1]``: negative log-likelihood of token t+1 given tokens 0..t."""
  from lang_neuron_jax.models.decoder import Decoder, output_logits

  hidden = Decoder(config).apply({"params": params}, ids, compute_logits=False)[:, :-1]
  logits = output_logits(config, params, hidden)  # [B, T-1, V]
  target = jnp.take_along_axis(logits, ids[:, 1:, None], axis=-1)[..., 0]
  return jax.nn.logsumexp(logits, axis=-1) - target
