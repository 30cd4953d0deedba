"""The method comparison: AP neurons, LAPE neurons, mean-difference directions and
linear-probe (ITI) directions on the same model, texts, samples and evaluator.

Layout of ``workdir``::

    find/                 the find stage, with every method's statistics recorded in its
                          one forward pass over the corpora (lang_neuron_jax/find/stage.py)
    comparison.jsonl      one record per unconditional sample of the choosing half, every
                          setting (condition, method, strength, sample, tokens, text,
                          detected language, perplexity, coherence)
    held_out.jsonl        the same for the held-out half: the baseline and each method's
                          chosen setting per language
    translation.jsonl     one record per English->X translation, with no intervention and
                          with each method at its chosen strength (source, reference,
                          output, detected language)
    comparison.json       per condition and half: shares with 95% intervals and exact
                          paired tests, perplexity; per method and language: the setting
                          chosen on the choosing half and its held-out figures; overlaps of
                          neuron sets; where each method edits
    pareto.png, method_layers.png, translation_{bleu,valid_share}.png
    comparison.md         the report
    {comparison,held_out,translation,summary}.stage.json   the stages' stamps

Every condition samples with the same keys (common random numbers), so each is compared
with the baseline on the same samples, as in the control stage. Each method's strength
is chosen on one half of the sample indices and reported on the other
(:mod:`~lang_neuron_jax.compare.choice`). The methods sit behind one interface
(:mod:`lang_neuron_jax.methods`); nothing here branches on their names.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Mapping, Sequence

from lang_neuron_jax.compare.config import CompareConfig
from lang_neuron_jax.compare.summary import best_settings, summarize, translation_strengths
from lang_neuron_jax.control import conditions, experiment, rows as control
from lang_neuron_jax.evaluation import metrics as metrics_lib
from lang_neuron_jax.find import stage as find
from lang_neuron_jax.methods import base
from lang_neuron_jax.report import comparison as comparison_report, figures
from lang_neuron_jax.runtime import artifacts, distributed, stages
from lang_neuron_jax.runtime.locks import workdir_locked


def corpus_statistics(lm, found: find.FindResult) -> base.CorpusStatistics:
  """The find stage's responses and scores, as the methods read them."""
  resp = found.responses
  return base.CorpusStatistics(
      languages=found.corpus.languages, language_of_text=found.corpus.language_of_text,
      responses=resp, positive=resp.positive, lengths=resp.lengths,
      site_widths=lm.config.site_widths, num_layers=lm.config.num_layers,
      expertise=found.expertise)


def unconditional_jobs(lm, conds: Sequence[conditions.Condition], samples: Sequence[int]
                       ) -> list[conditions.Job]:
  """Every condition at each of the sample indices ``samples`` (sample ``i`` shares its
  random numbers across conditions)."""
  prompt = tuple(conditions.unconditional_prompt(lm.config))
  return [conditions.Job(c, prompt, i) for c in conds for i in samples]


def comparison_jobs(lm, config: CompareConfig) -> list[conditions.Job]:
  """The choosing half: the baseline and every (language, method, strength)."""
  return unconditional_jobs(
      lm, [conditions.BASELINE] + [conditions.method_condition(lang, m, s)
                                   for lang in config.languages
                                   for m, values in config.sweep().items() for s in values],
      config.split()[0])


def held_out_jobs(lm, config: CompareConfig, chosen: Mapping[str, dict]) -> list[conditions.Job]:
  """The held-out half: the baseline and each method's chosen setting per language
  (``chosen``: :func:`best_settings` of the choosing half; none where it is None)."""
  return unconditional_jobs(
      lm, [conditions.BASELINE] + [
          conditions.method_condition(lang, m, chosen[m][lang]["strength"])
          for lang in config.languages for m in config.methods if chosen[m][lang]],
      config.split()[1])


def translation_jobs(lm, config: CompareConfig, strengths: Mapping[str, dict]
                     ) -> list[conditions.Job]:
  """Every set's pairs with no intervention and with each method at its strength."""
  return conditions.translation_jobs(
      lm.tokenizer, config.sets(), config.translation_pairs,
      lambda lang: [conditions.BASELINE] + [
          conditions.method_condition(lang, m, strengths[m][lang]) for m in config.methods])


def method_steering(fits: Mapping[str, base.Fitted], shapes) -> control.Steering:
  """Rows of condition ``c`` do ``fits[c.kind].steer(c.language, c.strength)``."""
  return control.Steering(lambda c: fits[c.kind].steer(c.language, c.strength), shapes)


FIGURES = ("pareto", "method_layers", "translation_bleu", "translation_valid_share")


@dataclasses.dataclass(frozen=True)
class CompareResult:
  """What the comparison gives its report: ``comparison.json``'s summary, the evaluated
  unconditional records of the choosing half, the translation records, the figures
  drawn, the choosing stage's stamp and the held-out half's records."""

  summary: dict
  records: list[dict]
  translations: list[dict]
  figures: dict[str, str]
  stamp: stages.Stamp
  held_out: list[dict] = dataclasses.field(default_factory=list)


def _unconditional_stage(lm, steering, config: CompareConfig, stage: stages.Stage, name: str,
                         jobs: list[conditions.Job], progress: bool) -> list[dict]:
  """One half's evaluated records (generated resumably, reused when finished)."""
  return experiment.evaluated_records(
      stage, name,
      lambda: experiment.generate_resumable(
          lm, steering, jobs, stage.journal(), batch_size=config.batch_size, seed=config.seed,
          progress=progress,
          **experiment.unconditional_settings(max_new_tokens=config.max_new_tokens,
                                              temperature=config.temperature)),
      # Every sample is scored (perplexity and coherence: the fluency cost counts broken
      # samples, issue 30). CompareConfig's old perplexity_samples and fluency_cost
      # fields are gone, so work directories evaluated before have other fingerprints
      # and their stages run again instead of being reused with the old metrics.
      functools.partial(experiment.evaluate_unconditional, lm))


@workdir_locked  # A second run on the same workdir is refused (lang_neuron_jax/runtime/locks.py).
def run_comparison(lm, found: find.FindResult, config: CompareConfig, workdir: str, *,
                   progress: bool = True) -> CompareResult:
  """Fits every method, generates every setting on the choosing half, chooses, generates
  the chosen settings on the held-out half and translates (each resumable), evaluates,
  summarizes.

  ``found``: a find stage run with :func:`find_config` (its responses hold every
  method's statistics).
  """
  config.validate(found.expertise.languages, lm.config.num_layers)
  os.makedirs(workdir, exist_ok=True)
  timings = artifacts.Timings()
  with timings.measure("fit"):
    stats = corpus_statistics(lm, found)
    methods = config.methods_built()
    fits = {m: method.fit(stats) for m, method in methods.items()}
    steering = method_steering(fits, {
        s: stats.shape(s) for method in methods.values() for s in method.needs(lm.config)[0]})

  with timings.measure("generation"):
    stage = stages.Stage(workdir, "comparison", config=config, model_id=lm.model_id,
                         inputs=[found.stamp])
    records = _unconditional_stage(lm, steering, config, stage, "comparison.jsonl",
                                   comparison_jobs(lm, config), progress)
    choosing = metrics_lib.summarize_unconditional(records, seed=config.seed)
    # The choice: one call per method and language (compare/choice.py's choose, which
    # applies the fluency cost through evaluation.cost.within_cost), on the choosing
    # half only.
    chosen = best_settings(choosing, config)

  # The held-out half and the translation depend on the choice, so their stages' input
  # is the choosing stage (its stamp fixes the choice).
  with timings.measure("held_out"):
    held = stages.Stage(workdir, "held_out", config=config, model_id=lm.model_id,
                        inputs=[stage.stamp])
    held_records = _unconditional_stage(lm, steering, config, held, "held_out.jsonl",
                                        held_out_jobs(lm, config, chosen), progress)

  with timings.measure("translation"):
    strengths = translation_strengths(chosen, config)
    translation = stages.Stage(workdir, "translation", config=config, model_id=lm.model_id,
                               inputs=[stage.stamp])
    jobs = translation_jobs(lm, config, strengths)
    translations = experiment.evaluated_records(
        translation, "translation.jsonl",
        lambda: experiment.generate_resumable(
            lm, steering, jobs, translation.journal(), batch_size=config.translation_slots,
            seed=config.seed, progress=progress,
            **experiment.translation_settings(lm, max_new_tokens=config.translation_tokens))
        if jobs else [],
        experiment.evaluate_translation)

  summary = summarize(choosing, metrics_lib.summarize_unconditional(held_records, seed=config.seed),
                      fits, config, translations)

  def write_summary():
    artifacts.write_json(os.path.join(workdir, "comparison.json"), summary)
    comparison_report.draw(summary, workdir)
    artifacts.write_run_json(workdir, stage="compare", config=config, timings=timings,
                             extra={"model": lm.model_id,
                                    "processes": distributed.process_count()})
    return summary

  stages.Stage(workdir, "summary", inputs=[stage.stamp, held.stamp, translation.stamp]).commit(
      write_summary, lambda: summary)
  return CompareResult(summary, records, translations, figures.existing(workdir, FIGURES),
                       stage.stamp, held_records)
