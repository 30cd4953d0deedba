"""The method comparison: AP neurons, LAPE neurons, mean-difference directions and
linear-probe (ITI) directions on the same model, texts, samples and evaluator.

Layout of ``workdir``::

    find/                 the find stage, with every method's statistics recorded in its
                          one forward pass over the corpora (lang_neuron_jax/find/stage.py)
    comparison.jsonl      one record per unconditional sample (condition, method,
                          strength, tokens, text, detected language, perplexity)
    translation.jsonl     one record per English->X translation, with no intervention and
                          with each method at its chosen strength (source, reference,
                          output, detected language)
    comparison.json       per condition: shares with 95% intervals and exact paired tests,
                          perplexity; per method and language: the best setting within the
                          fluency cost; overlaps of neuron sets; where each method edits
    pareto.png, method_layers.png, translation_{bleu,valid_share}.png
    comparison.md         the report
    {comparison,translation,summary}.stage.json   the stages' stamps

Every condition samples with the same keys (common random numbers), so each is compared
with the baseline on the same samples, as in the control stage. The methods sit behind
one interface (:mod:`lang_neuron_jax.methods`); nothing here branches on their names.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Mapping

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


def comparison_jobs(lm, config: CompareConfig) -> list[conditions.Job]:
  """The baseline and every (language, method, strength), ``samples`` rows each."""
  return conditions.unconditional_jobs(
      conditions.unconditional_prompt(lm.config),
      [conditions.BASELINE] + [conditions.method_condition(lang, m, s)
                               for lang in config.languages
                               for m, values in config.sweep().items() for s in values],
      config.samples)


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
  unconditional and translation records, the figures drawn and the unconditional
  stage's stamp."""

  summary: dict
  records: list[dict]
  translations: list[dict]
  figures: dict[str, str]
  stamp: stages.Stamp


@workdir_locked  # A second run on the same workdir is refused (lang_neuron_jax/runtime/locks.py).
def run_comparison(lm, found: find.FindResult, config: CompareConfig, workdir: str, *,
                   progress: bool = True) -> CompareResult:
  """Fits every method, generates every condition (resumable), evaluates, summarizes.

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
    records = experiment.evaluated_records(
        stage, "comparison.jsonl",
        lambda: experiment.generate_resumable(
            lm, steering, comparison_jobs(lm, config), stage.journal(),
            batch_size=config.batch_size, seed=config.seed, progress=progress,
            **experiment.unconditional_settings(max_new_tokens=config.max_new_tokens,
                                                temperature=config.temperature)),
        functools.partial(experiment.evaluate_unconditional, lm,
                          perplexity_samples=config.perplexity_samples))

  # Translation: each method at the strength its unconditional results choose, so the
  # stage's input is the unconditional stage (its stamp fixes those choices).
  with timings.measure("translation"):
    by_condition = metrics_lib.summarize_unconditional(records, seed=config.seed)
    strengths = translation_strengths(best_settings(by_condition, config), config)
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

  summary = summarize(by_condition, fits, config, translations)

  def write_summary():
    artifacts.write_json(os.path.join(workdir, "comparison.json"), summary)
    comparison_report.draw(summary, workdir)
    artifacts.write_run_json(workdir, stage="compare", config=config, timings=timings,
                             extra={"model": lm.model_id,
                                    "processes": distributed.process_count()})
    return summary

  stages.Stage(workdir, "summary", inputs=[stage.stamp, translation.stamp]).commit(
      write_summary, lambda: summary)
  return CompareResult(summary, records, translations, figures.existing(workdir, FIGURES),
                       stage.stamp)
