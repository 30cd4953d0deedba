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
import os
import time
from typing import Mapping, Sequence

import numpy as np

from lang_neuron_jax.runtime import artifacts, distributed, stages
from lang_neuron_jax.control import conditions, rows as control, stage as control_stage
from lang_neuron_jax.data import corpora as data
from lang_neuron_jax.report import figures
from lang_neuron_jax.find import stage as find
from lang_neuron_jax.generation import sampling
from lang_neuron_jax.evaluation import metrics as metrics_lib
from lang_neuron_jax.runtime.locks import workdir_locked
from lang_neuron_jax.methods import ap, base, diffmean, lape, probe
from lang_neuron_jax.errors import UserError
from lang_neuron_jax.errors import ConfigError

METHODS: Mapping[str, type[base.Method]] = {
    "ap": ap.APNeurons, "lape": lape.LAPE, "diffmean": diffmean.DiffMean,
    "probe": probe.LinearProbe}
# Compared unless ``methods`` says otherwise: with the probe the default comparison runs
# past its time budget on a 2-core CPU (docs/performance.md has the measurements).
DEFAULT_METHODS = ("ap", "lape", "diffmean")


def make_method(name: str, config: "CompareConfig | None" = None) -> base.Method:
  """The method called ``name`` with the options ``config`` gives it (defaults without);
  a ValueError names the known methods."""
  if name not in METHODS:
    raise ConfigError(f"Unknown method {name!r}; use one of {sorted(METHODS)}.")
  return METHODS[name](**(dict(config.options).get(name, {}) if config else {}))


@dataclasses.dataclass(frozen=True, kw_only=True)
class CompareConfig:
  """What the comparison does.

  Attributes:
    languages: Target languages (scored by the find stage).
    methods: Names in :data:`METHODS` (default :data:`DEFAULT_METHODS`).
    strengths: ``((method, (strength, ...)), ...)`` overriding a method's default sweep
      (``Method.strengths``).
    samples: Unconditional samples per condition.
    max_new_tokens, temperature: Unconditional sampling, as the paper's (64, 0.8).
    perplexity_samples: Samples per condition whose perplexity under the unintervened
      model is computed (the first ones by index).
    fluency_cost: A setting is within the fluency cost when its median perplexity is at
      most this many times the baseline's.
    batch_size: Generation rows per compiled call.
    translation_sets: ``(dataset, language)`` sets translated into; None for the
      FLORES-200 set of every target language that has one (the shipped sets' only
      dataset with all five non-English languages). English has none.
    translation_pairs: Pairs per set (0: no translation). Each method translates at the
      strength :func:`translation_strengths` chooses from the unconditional results.
    translation_tokens, translation_slots: Greedy new tokens (the paper: 128; rows stop
      after their first line) and rows decoded together, as in the control stage.
    seed: Base seed.
    options: ``((method, {argument: value}), ...)``: constructor arguments of a method
      (``("diffmean", {"layer": 9})``, ``("lape", {"intervention": "deactivate_others"})``).
  """

  languages: tuple[str, ...] = data.PAPER_LANGUAGES
  methods: tuple[str, ...] = DEFAULT_METHODS
  strengths: tuple[tuple[str, tuple[float, ...]], ...] = ()
  samples: int = 16
  max_new_tokens: int = 64
  temperature: float = 0.8
  perplexity_samples: int = 16
  fluency_cost: float = 2.0
  batch_size: int = 128
  translation_sets: tuple[tuple[str, str], ...] | None = None
  translation_pairs: int = 8
  translation_tokens: int = 128
  translation_slots: int = 64
  seed: int = 0
  options: tuple[tuple[str, Mapping], ...] = ()

  def methods_built(self) -> dict[str, base.Method]:
    """``{name: Method}`` of every method compared, with its options."""
    return {m: make_method(m, self) for m in self.methods}

  def sweep(self) -> dict[str, tuple[float, ...]]:
    """``{method: strengths}`` of every method compared."""
    override = dict(self.strengths)
    return {m: tuple(override.get(m, make_method(m).strengths)) for m in self.methods}

  def validate(self, scored_languages: Sequence[str], num_layers: int) -> None:
    """Raises a ValueError saying what to fix (before any forward pass)."""
    for m in dict(self.options):
      if m not in self.methods:
        raise ConfigError(f"Options given for {m!r}, which is not compared ({list(self.methods)}).")
    for method in self.methods_built().values():
      method.check_model(num_layers)
    unknown = set(self.languages) - set(scored_languages)
    if unknown or not self.languages:
      raise ConfigError(f"Target languages {sorted(unknown) or '(none)'} are not among the "
                       f"scored languages {list(scored_languages)}.")
    if not self.methods:
      raise ConfigError("Give at least one method.")
    for m, values in dict(self.strengths).items():
      if m not in self.methods:
        raise ConfigError(f"Strengths given for {m!r}, which is not compared ({list(self.methods)}).")
      if not values:
        raise ConfigError(f"Give at least one strength for {m!r}.")
    for m, values in self.sweep().items():
      for v in values:
        make_method(m).check_strength(v)
    for name in ("samples", "max_new_tokens", "batch_size", "translation_tokens",
                 "translation_slots"):
      if getattr(self, name) < 1:
        raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
    # Checked here, not after the generation that needs them: a NaN, infinite or
    # sub-1 cost makes every setting fail (or pass) the limit, and no perplexity sample
    # leaves the baseline without the median the limit is relative to.
    if not np.isfinite(self.fluency_cost) or self.fluency_cost < 1:
      raise UserError(f"fluency_cost must be a finite number of at least 1 (times the "
                      f"baseline's median perplexity), got {self.fluency_cost}.")
    if self.perplexity_samples < 1:
      raise UserError(f"perplexity_samples must be at least 1 (the fluency cost compares "
                      f"median perplexities), got {self.perplexity_samples}.")
    if self.translation_pairs < 0:
      raise ConfigError(f"translation_pairs must not be negative, got {self.translation_pairs}.")
    shipped = data.available_translation_sets()
    for dataset, lang in self.sets():
      if (dataset, lang) not in shipped:
        raise ConfigError(f"No translation set {dataset}_en_{lang}; shipped: "
                         f"{[f'{d}_en_{l}' for d, l in shipped]}.")
      if lang not in self.languages:
        raise ConfigError(f"Translation set {dataset}_en_{lang} targets {lang!r}, which is "
                         f"not a target language ({list(self.languages)}).")

  def sets(self) -> list[tuple[str, str]]:
    """The ``(dataset, language)`` translation sets used (none when translation_pairs is 0)."""
    if not self.translation_pairs:
      return []
    if self.translation_sets is not None:
      return list(self.translation_sets)
    return [(d, l) for d, l in data.available_translation_sets()
            if d == "flores200" and l in self.languages]


def find_config(config: find.FindConfig, model_config, methods: Sequence[str]) -> find.FindConfig:
  """``config`` recording what every method needs, in the one forward pass."""
  sites, positive = [], []
  for m in methods:
    s, p = make_method(m).needs(model_config)
    sites += [x for x in s if x not in model_config.neuron_sites and x not in sites]
    positive += [x for x in p if x not in positive]
  return dataclasses.replace(config, extra_sites=tuple(sites), positive_sites=tuple(positive))


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


def translation_strengths(best: Mapping[str, dict], config: CompareConfig) -> dict:
  """``{method: {language: strength}}`` each method translates with: its best setting
  within the fluency cost (:func:`best_settings`), or its weakest strength (the smallest:
  every method's effect grows with its strength) where none is within the cost."""
  sweep = config.sweep()
  return {m: {lang: best[m][lang]["strength"] if best[m][lang] else min(sweep[m])
              for lang in config.languages} for m in config.methods}


def translation_jobs(lm, config: CompareConfig, strengths: Mapping[str, dict]
                     ) -> list[conditions.Job]:
  """Every set's pairs with no intervention and with each method at its strength."""
  return conditions.translation_jobs(
      lm.tokenizer, config.sets(), config.translation_pairs,
      lambda lang: [conditions.BASELINE] + [
          conditions.method_condition(lang, m, strengths[m][lang]) for m in config.methods])


def translation_role(record: dict) -> str:
  """Translation rows are summarized per method ("baseline": no intervention)."""
  return record["kind"] or "baseline"


def method_steering(fits: Mapping[str, base.Fitted], shapes) -> control.Steering:
  """Rows of condition ``c`` do ``fits[c.kind].steer(c.language, c.strength)``."""
  return control.Steering(lambda c: fits[c.kind].steer(c.language, c.strength), shapes)


def best_settings(metrics: Mapping[str, dict], config: CompareConfig) -> dict:
  """Per method and language, the strength of highest valid share among those whose
  median perplexity is within ``fluency_cost`` times the baseline's (None if none is)."""
  limit = config.fluency_cost * metrics["baseline"]["median_perplexity"]
  out = {}
  for m in config.methods:
    for lang in config.languages:
      rows = [v for v in metrics.values() if v["kind"] == m and v["language"] == lang]
      ok = [v for v in rows if v["median_perplexity"] is not None
            and v["median_perplexity"] <= limit]
      best = max(ok, key=lambda v: (v["valid_share"], -v["strength"]), default=None)
      out.setdefault(m, {})[lang] = None if best is None else {
          k: best[k] for k in ("strength", "valid_share", "valid_share_ci", "target_share",
                               "target_share_ci", "median_perplexity", "significant_valid")}
  return out


def overlaps(fits: Mapping[str, base.Fitted], config: CompareConfig) -> dict:
  """Per language, how much every two neuron methods' sets share, each method at the
  middle of its sweep: Jaccard (intersection over union) and the overlap coefficient
  (intersection over the smaller set: the share of the smaller set the other holds)."""
  sweep = config.sweep()
  middle = {m: sweep[m][len(sweep[m]) // 2] for m in fits}
  sets = {m: {lang: fits[m].neurons(lang, middle[m]) for lang in config.languages}
          for m in fits}
  neuron_methods = [m for m in fits if all(s is not None for s in sets[m].values())]
  out = {}
  for i, a in enumerate(neuron_methods):
    for b in neuron_methods[i + 1:]:
      pair = {}
      for lang in config.languages:
        x, y = sets[a][lang], sets[b][lang]
        pair[lang] = {"jaccard": len(x & y) / max(len(x | y), 1),
                      "overlap": len(x & y) / max(min(len(x), len(y)), 1),
                      "sizes": [len(x), len(y)]}
      out[f"{a}@{middle[a]:g} vs {b}@{middle[b]:g}"] = pair
  return out


def where_they_edit(fits: Mapping[str, base.Fitted], config: CompareConfig) -> dict:
  """Per method, units edited per layer (summed over languages) at the middle strength."""
  sweep = config.sweep()
  return {m: np.sum([fits[m].layers(lang, sweep[m][len(sweep[m]) // 2])
                     for lang in config.languages], axis=0).tolist() for m in fits}


def summarize(by_condition: Mapping[str, dict], fits: Mapping[str, base.Fitted],
              config: CompareConfig, translations: Sequence[dict] = ()) -> dict:
  """``comparison.json``: conditions, best settings, translation per method, overlaps,
  layers, fits. ``by_condition``: ``metrics.summarize_unconditional`` of the records."""
  best = best_settings(by_condition, config)
  return {"conditions": by_condition, "best": best,
          "translation_strengths": translation_strengths(best, config),
          "translation": metrics_lib.summarize_translation(translations, seed=config.seed,
                                                           role=translation_role),
          "overlap": overlaps(fits, config), "layers": where_they_edit(fits, config),
          "fits": {m: f.summary() for m, f in fits.items()},
          "sweep": config.sweep(), "fluency_cost": config.fluency_cost}


def draw(summary: dict, workdir: str) -> None:
  """pareto.png, method_layers.png and the translation figures."""
  by_condition = summary["conditions"]
  base_ppl = by_condition["baseline"]["median_perplexity"]
  curves = {}
  for v in by_condition.values():
    if v["kind"] is None:
      continue
    curves.setdefault(v["language"], {}).setdefault(v["kind"], []).append(
        (v["median_perplexity"] / base_ppl if v["median_perplexity"] else np.nan,
         v["valid_share"], v["valid_share_ci"], v["strength"]))
  baseline_valid = {l: b["valid_share"] for l, b in by_condition["baseline"]["by_language"].items()}
  figures.pareto(curves, os.path.join(workdir, "pareto.png"), cost=summary["fluency_cost"],
                 baseline=baseline_valid)
  figures.layer_distribution({m: np.asarray(c) for m, c in summary["layers"].items()},
                             os.path.join(workdir, "method_layers.png"),
                             title="Units edited per layer, all target languages, middle strength")
  for key, label in (("bleu", "BLEU"), ("valid_share", "valid share in target language")):
    if summary["translation"]:
      figures.paired_bars({k: {m: (v[key], v[f"{key}_ci"]) for m, v in t.items()}
                           for k, t in summary["translation"].items()},
                          os.path.join(workdir, f"translation_{key}.png"), ylabel=label,
                          title=f"Translation: {label} per method (95% CI)")


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
  timings = {}
  start = time.perf_counter()
  stats = corpus_statistics(lm, found)
  methods = config.methods_built()
  fits = {m: method.fit(stats) for m, method in methods.items()}
  steering = method_steering(fits, {
      s: stats.shape(s) for method in methods.values() for s in method.needs(lm.config)[0]})
  timings["fit"] = time.perf_counter() - start

  start = time.perf_counter()
  stage = stages.Stage(workdir, "comparison", config=config, model_id=lm.model_id,
                       inputs=[found.stamp])
  records = control_stage.evaluated_records(
      stage, "comparison.jsonl",
      lambda: control_stage.generate_resumable(
          lm, steering, comparison_jobs(lm, config), stage.journal(),
          batch_size=config.batch_size, seed=config.seed, progress=progress,
          max_new_tokens=config.max_new_tokens,
          sampler=sampling.Sampler(temperature=config.temperature)),
      lambda rows: control_stage.evaluate_unconditional(lm, rows, config))
  timings["generation"] = time.perf_counter() - start

  # Translation: each method at the strength its unconditional results choose, so the
  # stage's input is the unconditional stage (its stamp fixes those choices).
  start = time.perf_counter()
  by_condition = metrics_lib.summarize_unconditional(records, seed=config.seed)
  strengths = translation_strengths(best_settings(by_condition, config), config)
  translation = stages.Stage(workdir, "translation", config=config, model_id=lm.model_id,
                             inputs=[stage.stamp])
  jobs = translation_jobs(lm, config, strengths)
  translations = control_stage.evaluated_records(
      translation, "translation.jsonl",
      lambda: control_stage.generate_resumable(
          lm, steering, jobs, translation.journal(), batch_size=config.translation_slots,
          seed=config.seed, progress=progress,
          **control_stage.generation_settings(lm, "translation", config)) if jobs else [],
      lambda rows: control_stage.evaluate_translation(lm, rows, config))
  timings["translation"] = time.perf_counter() - start

  summary = summarize(by_condition, fits, config, translations)

  def write_summary():
    artifacts.write_json(os.path.join(workdir, "comparison.json"), summary)
    draw(summary, workdir)
    artifacts.write_run_json(workdir, stage="compare", config=config, timings=timings,
                             extra={"model": lm.model_id,
                                    "processes": distributed.process_count()})
    return summary

  stages.Stage(workdir, "summary", inputs=[stage.stamp, translation.stamp]).commit(
      write_summary, lambda: summary)
  return CompareResult(summary, records, translations, figures.existing(workdir, FIGURES),
                       stage.stamp)


def _share(v: dict, key: str) -> str:
  low, high = v[f"{key}_ci"]
  return f"{v[key]:.0%} [{low:.0%}, {high:.0%}]"


def _mark(v: dict, key: str) -> str:
  """After a share: "*" where it differs from no intervention (McNemar, Holm); "(test
  n/a)" where the condition's samples do not pair with the baseline's, so no test ran
  (None in the metrics); nothing where it was not tested (the baseline itself)."""
  significant = v.get(f"significant_{key.removesuffix('_share')}", False)
  return "*" if significant else " (test n/a)" if significant is None else ""


def translation_lines(summary: dict, config: CompareConfig) -> list[str]:
  """The report's translation section: per set, each method's valid share, BLEU and chrF
  next to no intervention's."""
  if not summary["translation"]:
    return []
  roles = ["baseline", *config.methods]
  strengths = summary["translation_strengths"]
  lines = ["", "## Translation", "",
           f"English->X, greedy, the first {config.translation_pairs} pairs of each set; each "
           "method at its best setting within the fluency cost (its weakest where none is): "
           + "; ".join(f"`{m}` " + ", ".join(f"{l} {v:g}" for l, v in strengths[m].items()
                                             if any(k.endswith(f'_en_{l}') for k in summary['translation']))
                       for m in config.methods) + ". Cells: valid share [95% interval] "
           "(`*`: differs from no intervention, McNemar, Holm), BLEU, chrF.", "",
           "| set | " + " | ".join("none" if r == "baseline" else r for r in roles) + " |",
           "|---|" + "---|" * len(roles)]
  for key, by_role in summary["translation"].items():
    cells = []
    for r in roles:
      v = by_role.get(r)
      cells.append("-" if v is None else
                   f"{_share(v, 'valid_share')}{_mark(v, 'valid_share')}, "
                   f"BLEU {v['bleu']:.1f}, chrF {v['chrf']:.1f}")
    lines.append(f"| {key} | " + " | ".join(cells) + " |")
  lines += ["", "![translation BLEU](translation_bleu.png)"]
  return lines


def write_report(workdir: str, result: CompareResult, config: CompareConfig, *,
                 model_id: str, command: str = "", timings: Mapping[str, float] | None = None
                 ) -> str:
  """``comparison.md``: the best setting of each method per language within the fluency
  cost, every condition, overlaps and where each method edits."""
  s = result.summary
  cond = s["conditions"]
  base_ppl = cond["baseline"]["median_perplexity"]
  lines = [
      "# Finding and steering a language: AP neurons, LAPE neurons, mean-difference directions",
      "",
      f"Model `{model_id}`; {config.samples} unconditional samples of {config.max_new_tokens} "
      f"tokens per condition at temperature {config.temperature}, the same random numbers "
      f"in every condition; perplexity under the unintervened model of the first "
      f"{config.perplexity_samples} samples per condition.",
      "",
      "Methods and strengths: " + "; ".join(
          f"`{m}` {make_method(m).strength_name} in {list(v)}" for m, v in s["sweep"].items()),
      "",
      "*Valid*: in the target language (language ID) and not degenerate (see metrics.py). "
      "Intervals: 95% Wilson; `*`: differs from no intervention by McNemar's exact test on "
      "the same samples, Holm-adjusted over all conditions.",
      "",
      f"## Best setting per method within the fluency cost (median perplexity at most "
      f"{config.fluency_cost:g} x the baseline's {base_ppl:.1f})",
      "",
      "| method | " + " | ".join(config.languages) + " |",
      "|---|" + "---|" * len(config.languages),
  ]
  for m in config.methods:
    cells = []
    for lang in config.languages:
      b = s["best"][m][lang]
      cells.append("none within cost" if b is None else
                   f"{_share(b, 'valid_share')}{_mark(b, 'valid_share')} "
                   f"@ {b['strength']:g}")
    lines.append(f"| {m} | " + " | ".join(cells) + " |")
  base_valid = cond["baseline"]["by_language"]
  lines += ["| none | " + " | ".join(
      _share(base_valid[l], "valid_share") if l in base_valid else "-"
      for l in config.languages) + " |", "",
            "![pareto](pareto.png)", "", "## Every condition", "",
            "| condition | target share | valid share | degenerate | median perplexity |",
            "|---|---|---|---|---|"]
  for name, v in cond.items():
    if v["kind"] is None:
      continue
    ppl = "-" if v["median_perplexity"] is None else f"{v['median_perplexity']:.1f}"
    lines.append(f"| {name} | {_share(v, 'target_share')}{_mark(v, 'target_share')}"
                 f" | {_share(v, 'valid_share')}{_mark(v, 'valid_share')}"
                 f" | {v['degenerate_share']:.0%} | {ppl} |")
  lines += translation_lines(s, config)
  lines += ["", "## Overlap of the neuron sets", "",
            "LAPE's units are the MLP nonlinearity's outputs; they are matched to the "
            "projection they transform (`gate`), where AP scores the projection's output.", ""]
  for pair, by_lang in s["overlap"].items():
    lines.append(f"- {pair}: " + ", ".join(
        f"{l} Jaccard {v['jaccard']:.1%}, overlap {v['overlap']:.1%} (sizes {v['sizes'][0]}, "
        f"{v['sizes'][1]})" for l, v in by_lang.items()))
  lines += ["", "## Where each method edits", "",
            "Units edited per layer, summed over the target languages, at the middle strength:",
            ""]
  for m, counts in s["layers"].items():
    lines.append(f"- {m}: {counts}")
  lines += ["", "![layers](method_layers.png)", ""]
  for m, f in s["fits"].items():
    lines.append(f"- `{m}` fit: `{f}`")
  if timings:
    lines += ["", "Timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())]
  if command:
    lines += ["", f"Command: `{command}`"]
  path = os.path.join(workdir, "comparison.md")
  artifacts.write_text(path, "\n".join(lines) + "\n")
  return path
