"""The control experiments' conditions and jobs: what each generation row is.

A :class:`Condition` is "no intervention" or one way of steering towards a language (the
paper's neuron sets: top/bottom/both/random at N; a method of
:mod:`lang_neuron_jax.methods` at a strength). A :class:`Job` is one row: a prompt under a
condition, with its sample index (which fixes its random numbers). This module builds
the paper's unconditional sweep and its English->X translation jobs; how rows are
generated is :mod:`lang_neuron_jax.control.rows`, the resumable stages
:mod:`lang_neuron_jax.control.stage`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from lang_neuron_jax.data import corpora as data
from lang_neuron_jax.neurons import selection
from lang_neuron_jax.neurons.selection import Expertise, NeuronSet, select

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
    strength: A method's strength (N, a rate, alpha) when ``kind`` names a method of
      :mod:`lang_neuron_jax.methods` (the method comparison), else None.
  """

  name: str
  language: str | None = None
  kind: str | None = None
  n: int | None = None
  strength: float | None = None

  def neurons(self, expertise: Expertise, seed: int = 0) -> NeuronSet | None:
    """The paper's neuron set of this condition (None for the baseline); random sets are
    drawn per (seed, language, N)."""
    if self.language is None:
      return None
    return select(expertise, self.language, self.n, self.kind, seed=seed)


BASELINE = Condition("baseline")


def condition(language: str, kind: str, n: int) -> Condition:
  """Fixing ``language``'s neurons of selection ``kind`` ("both": top N/2 + bottom N/2,
  "top", "bottom", "random") at N = ``n`` in all."""
  return Condition(f"{language}/{kind}/{n}", language, kind, n)


def unconditional_conditions(languages: Sequence[str], num_neurons: int, *,
                             ns: Sequence[int] = UNCONDITIONAL_NS,
                             main_n: int = MAIN_N) -> list[Condition]:
  """The paper's unconditional sweep; N is always the total number of fixed neurons.

  No intervention; for each language, its top N/2 + bottom N/2 for each N of ``ns``; and
  three controls of the main condition ``main_n``: its top half alone (top ``main_n / 2``),
  its bottom half alone, and ``main_n`` random neurons (the paper: top 1,000, bottom
  1,000, random 2,000 against ``limited_2000_both``). Every N must fit the model's
  ``num_neurons`` (``ControlConfig.resolve`` caps the paper's 200,000 to it).
  """
  ns = sorted(set(ns))
  for n in ns + [main_n]:
    selection.check_n(n, num_neurons, "both")
  out = [BASELINE]
  for lang in languages:
    out += [condition(lang, "both", n) for n in ns]
    out += [condition(lang, "top", main_n // 2), condition(lang, "bottom", main_n // 2),
            condition(lang, "random", main_n)]
  return out


def unconditional_prompt(config) -> list[int]:
  """The family's prompt for unconditional generation: the token that starts a document.

  The authors' prompt is the tokenizer's BOS alone. A family names its own start in
  ``config.document_start_token_id`` where that is not BOS (Qwen has no BOS; it starts
  from ``<|endoftext|>``, its pre-training's document separator); otherwise it is BOS,
  or EOS for a family without one (BLOOM starts from ``</s>``).
  """
  for token in (config.document_start_token_id, config.bos_token_id):
    if token is not None:
      return [token]
  return [config.eos_token_id]


@dataclasses.dataclass(frozen=True)
class Job:
  """One generation row: a prompt under a condition."""

  condition: Condition
  prompt: tuple[int, ...]
  sample_index: int
  meta: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)


def method_condition(language: str, method: str, strength: float) -> Condition:
  """Steering towards ``language`` with a method of :mod:`lang_neuron_jax.methods`."""
  return Condition(f"{language}/{method}/{strength:g}", language, method,
                   strength=float(strength))


def unconditional_jobs(prompt: Sequence[int], conditions: Sequence[Condition],
                       samples: int) -> list[Job]:
  """``samples`` rows of ``prompt`` under every condition (sample ``i`` of every
  condition shares its random numbers)."""
  return [Job(c, tuple(prompt), i) for c in conditions for i in range(samples)]


def translation_jobs(tokenizer, sets: Sequence[tuple[str, str]], pairs_per_set: int,
                     conditions: Callable[[str], Sequence[Condition]]) -> list[Job]:
  """English->X translation jobs: the first ``pairs_per_set`` pairs of every
  ``(dataset, target)`` set under each of ``conditions(target)``, in the paper's prompt
  (:data:`TRANSLATION_PROMPT`). ``meta`` holds the dataset, target, source and reference."""
  jobs = []
  for dataset, lang in sets:
    pairs = data.load_translation_pairs(dataset, lang)[:pairs_per_set]
    for cond in conditions(lang):
      for i, (source, reference) in enumerate(pairs):
        prompt = tokenizer(TRANSLATION_PROMPT.format(source=source)).input_ids
        jobs.append(Job(cond, tuple(prompt), i, meta={
            "dataset": dataset, "target": lang, "source": source, "reference": reference}))
  return jobs


def cut_translation(text: str) -> str:
  """The part of a translation continuation that is the translation.

  The model continues the prompt's pattern after its answer (a new "English:" line,
  another instruction...), so we keep the first non-empty line, stripped.
  """
  for line in text.split("\n"):
    if line.strip():
      return line.strip()
  return ""
