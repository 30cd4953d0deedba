"""The control stage: unconditional and translation experiments, evaluated, in a work dir.

Layout of ``workdir``::

    unconditional.jsonl   one record per generated sample (condition, tokens, text, language)
    translation.jsonl     one record per translation (set, condition, source, output, ...)
    metrics.json          per condition: target-language and valid shares with 95% intervals
                          and exact paired tests against the baseline; degenerate,
                          incoherent and broken shares with intervals; every sample's
                          perplexity summarized; whether it is within the fluency cost;
                          per translation set: BLEU, chrF and the same shares, with and
                          without intervention (see lang_neuron_jax/evaluation/metrics.py)
    share_vs_n.png, translation_bleu.png, translation_target_share.png,
    translation_valid_share.png
    run.json
    {unconditional,translation,metrics}.stage.json   the stages' stamps

Each experiment is a :class:`~lang_neuron_jax.runtime.stages.Stage`: generated rows are appended
to its journal (``{part}.journal{process}.jsonl``) batch by batch, so a killed run
continues where it stopped (with identical results: rows do not depend on their batch);
the evaluated ``{part}.jsonl`` is written when a part finishes, and is reused on a re-run
with the same configuration, model and scores.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
from typing import Sequence

from lang_neuron_jax.runtime import artifacts, distributed, stages
from lang_neuron_jax.control import conditions, experiment, rows as control
from lang_neuron_jax.data import corpora as data
from lang_neuron_jax.report import figures
from lang_neuron_jax.neurons import selection
from lang_neuron_jax.evaluation import metrics as metrics_lib
from lang_neuron_jax.control.conditions import Job
from lang_neuron_jax.runtime.locks import workdir_locked
from lang_neuron_jax.neurons.selection import Expertise
from lang_neuron_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class ControlConfig:
  """What the control stage does.

  Attributes:
    languages: Target languages (must have been scored). The authors steer towards all
      six, English included; English has no translation sets, so translation skips it.
    samples: Unconditional samples per condition (the paper: 100).
    max_new_tokens: Unconditional new tokens (the paper: 64).
    temperature: Unconditional sampling temperature (the paper: 0.8).
    ns: N values of the top N/2 + bottom N/2 sweep; N counts every fixed neuron (capped
      at the model's size; even).
    main_n: The paper's main condition (2,000 = 1,000 + 1,000): its top half alone, its
      bottom half alone and ``main_n`` random neurons are the sweep's controls.
    translation_sets: ``(dataset, language)`` pairs; None for every shipped set whose
      language is in ``languages``.
    translation_pairs: Pairs used per translation set (the shipped sets hold 100).
    translation_n: N (total, top N/2 + bottom N/2) of the set used for translation.
    translation_tokens: Greedy new tokens for translation (the paper: 128).
    statistic: Value the neurons are fixed to.
    batch_size: Unconditional generation rows per compiled call.
    translation_slots: Translation rows decoded together; each slot is refilled as its
      row stops (64 ran the default run's 288 rows faster than 32 on a 2-core CPU;
      docs/performance.md).
    seed: Base seed.
  """

  languages: tuple[str, ...] = data.PAPER_LANGUAGES
  samples: int = 100
  max_new_tokens: int = 64
  temperature: float = 0.8
  ns: tuple[int, ...] = conditions.UNCONDITIONAL_NS
  main_n: int = conditions.MAIN_N
  translation_sets: tuple[tuple[str, str], ...] | None = None
  translation_pairs: int = 100
  translation_n: int = conditions.MAIN_N
  translation_tokens: int = 128
  statistic: str = "on_p50"
  batch_size: int = 128
  translation_slots: int = 64
  seed: int = 0


  def validate(self, num_neurons: int, scored_languages: Sequence[str]) -> None:
    """Raises a ConfigError saying what to fix for what the config alone decides: target
    languages that were not scored, N values (even, from 2; capped at ``num_neurons``),
    counts below one."""
    self.resolve(num_neurons, scored_languages)

  def resolve(self, num_neurons: int, scored_languages: Sequence[str]) -> "ControlConfig":
    """This config checked (:meth:`validate`) with every N capped at ``num_neurons`` (the
    paper's sweep reaches 200,000; the model may have fewer neurons: then every neuron
    is fixed) and the sweep sorted without repeats: the values the stage runs with,
    resolved here once. The stages' fingerprints hash the config as given."""
    unknown = set(self.languages) - set(scored_languages)
    if unknown or not self.languages:
      raise ConfigError(f"Target languages {sorted(unknown) or '(none)'} are not among the "
                       f"scored languages {list(scored_languages)}.")
    cap = lambda n: selection.cap_n(n, num_neurons, "both")
    resolved = dataclasses.replace(self, ns=tuple(sorted({cap(n) for n in self.ns})),
                                   main_n=cap(self.main_n), translation_n=cap(self.translation_n))
    for n in resolved.ns + (resolved.main_n, resolved.translation_n):
      selection.check_n(n, num_neurons, "both")
    for name in ("samples", "max_new_tokens", "translation_pairs", "translation_tokens",
                 "batch_size", "translation_slots"):
      if getattr(self, name) < 1:
        raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
    if self.temperature < 0:
      raise ConfigError(f"temperature must not be negative, got {self.temperature}.")
    return resolved


FIGURES = ("share_vs_n", "translation_bleu", "translation_target_share",
           "translation_valid_share")


@dataclasses.dataclass(frozen=True)
class ControlResult:
  """What the control stage gives the report.

  Attributes:
    metrics: See ``metrics.json`` (:func:`lang_neuron_jax.evaluation.metrics.summarize`).
    records: ``{"unconditional": [...], "translation": [...]}``, the evaluated rows.
    figures: ``{name: path}`` of the figures drawn.
    stamps: The experiments' stamps (:class:`~lang_neuron_jax.runtime.stages.Stamp`).
    config: The config the stage ran with, resolved against the scores
      (:meth:`ControlConfig.resolve`: every N capped).
  """

  metrics: dict
  records: dict[str, list[dict]]
  figures: dict[str, str]
  stamps: tuple[stages.Stamp, ...]
  config: ControlConfig | None = None


def unconditional_jobs(lm, exp: Expertise, config: ControlConfig) -> list[Job]:
  """The paper's sweep (:func:`conditions.unconditional_conditions`), ``samples`` rows each
  (``config`` resolved: :meth:`ControlConfig.resolve`)."""
  return conditions.unconditional_jobs(
      conditions.unconditional_prompt(lm.config),
      conditions.unconditional_conditions(config.languages, exp.index.size, ns=config.ns,
                                          main_n=config.main_n), config.samples)


def translation_sets(config: ControlConfig) -> list[tuple[str, str]]:
  if config.translation_sets is not None:
    return list(config.translation_sets)
  return [(d, l) for d, l in data.available_translation_sets() if l in config.languages]


def translation_jobs(lm, exp: Expertise, config: ControlConfig) -> list[Job]:
  """Every set's pairs with no intervention and with the target's N = translation_n
  (``config`` resolved: :meth:`ControlConfig.resolve`)."""
  del exp  # The N is resolved against its neuron count already.
  return conditions.translation_jobs(
      lm.tokenizer, translation_sets(config), config.translation_pairs,
      lambda lang: (conditions.BASELINE, conditions.condition(lang, "both", config.translation_n)))


def draw(metrics: dict, workdir: str) -> None:
  """share_vs_n.png (raw and valid target share against N, with 95% intervals) and the
  translation figures (BLEU, target share; with and without intervention)."""
  uncond = metrics["unconditional"]
  curves = collections.defaultdict(dict)
  for m in uncond.values():
    if m["kind"] == "both":
      curves[m["language"]][m["n"]] = m
  base = uncond.get("baseline", {}).get("by_language", {})
  if curves:
    figures.share_vs_n(
        {l: {n: (m["target_share"], m["target_share_ci"]) for n, m in by_n.items()}
         for l, by_n in sorted(curves.items())},
        {l: {n: (m["valid_share"], m["valid_share_ci"]) for n, m in by_n.items()}
         for l, by_n in sorted(curves.items())},
        os.path.join(workdir, "share_vs_n.png"),
        baseline={l: (b["target_share"], b["valid_share"]) for l, b in base.items()})
  trans = metrics["translation"]
  if trans:
    for key, label in (("bleu", "BLEU"), ("target_share", "share in target language"),
                       ("valid_share", "valid share in target language")):
      figures.paired_bars({k: {c: (v[key], v[f"{key}_ci"]) for c, v in t.items()}
                           for k, t in trans.items()},
                          os.path.join(workdir, f"translation_{key}.png"), ylabel=label,
                          title=f"Translation: {label}, with and without intervention (95% CI)")


@workdir_locked  # A second run on the same workdir is refused (lang_neuron_jax/runtime/locks.py).
def run_control(lm, exp: Expertise, config: ControlConfig, workdir: str, *,
                expertise_stamp=None, progress: bool = True) -> ControlResult:
  """Runs (or reuses) both experiments, evaluates them, writes metrics and figures.

  Each experiment is a :class:`~lang_neuron_jax.runtime.stages.Stage` (``unconditional``,
  ``translation``), and so are the metrics. ``expertise_stamp``: the find stage's stamp
  of ``exp`` (``FindResult.stamp`` or :func:`lang_neuron_jax.find.stage.load_scores`), an input
  of both experiments.
  """
  resolved = config.resolve(exp.index.size, exp.languages)
  timings, stamps, outputs = artifacts.Timings(), [], {}
  make_jobs = {"unconditional": unconditional_jobs, "translation": translation_jobs}
  settings = {"unconditional": experiment.unconditional_settings(
                  max_new_tokens=resolved.max_new_tokens, temperature=resolved.temperature),
              "translation": experiment.translation_settings(
                  lm, max_new_tokens=resolved.translation_tokens)}
  # Every sample's perplexity is computed (issue 30: the incoherence rule judges each one);
  # the config's old perplexity_samples field is gone, so work directories evaluated
  # before that have other fingerprints and run again.
  evaluate = {"unconditional": functools.partial(experiment.evaluate_unconditional, lm),
              "translation": experiment.evaluate_translation}
  for part in make_jobs:
    with timings.measure(part):
      stage = stages.Stage(workdir, part, config=config, model_id=lm.model_id,
                           inputs=[expertise_stamp])
      # Both callables run inside this iteration, so they see its part, stage and evaluate.
      records = experiment.evaluated_records(
          stage, f"{part}.jsonl",
          lambda: experiment.generate_resumable(
              lm,
              control.neuron_steering(exp, statistic=resolved.statistic, seed=resolved.seed),
              make_jobs[part](lm, exp, resolved), stage.journal(),
              batch_size=(resolved.batch_size if part == "unconditional"
                          else resolved.translation_slots),
              seed=resolved.seed, progress=progress, **settings[part]),
          evaluate[part])
      outputs[part] = records
    stamps.append(stage.stamp)
  metrics = metrics_lib.summarize(outputs["unconditional"], outputs["translation"],
                                  seed=config.seed)

  def write_metrics():
    artifacts.write_json(os.path.join(workdir, "metrics.json"), metrics)
    draw(metrics, workdir)
    artifacts.write_run_json(workdir, stage="control", config=resolved, timings=timings,
                             extra={"model": lm.model_id, "processes": distributed.process_count()})
    return metrics

  stages.Stage(workdir, "metrics", inputs=stamps).commit(write_metrics, lambda: metrics)
  return ControlResult(metrics, outputs, figures.existing(workdir, FIGURES), tuple(stamps),
                       resolved)
