"""``metrics.json``: each condition's shares with their uncertainty, from evaluated records.

For every unconditional condition: the language mix, the *target share* (language ID
says the target) and the *valid share* (the target language, and the sample reads as
text: not degenerate and not incoherent, see
:func:`lang_neuron_jax.evaluation.measures.is_valid_target`), each with a 95% Wilson interval
and McNemar's exact test against the baseline's samples of the same index (paired by
common random numbers), Holm-adjusted over every intervened condition (None, printed
"n/a", where a condition's sample indices differ from the baseline's); the median
perplexity under the unintervened model (every sample's) with a bootstrap interval; the
repetition measure (median distinct character 4-gram ratio); the degenerate, incoherent
and *broken* shares (broken: does not read as text, in any language) with Wilson
intervals; and whether the condition is within the fluency cost
(:func:`lang_neuron_jax.evaluation.cost.within_cost`; None for the baseline). For every
translation set, the same target and valid shares per condition (paired by source
sentence; a translation's line has no coherence, so its valid share uses the loop rule
alone), and corpus BLEU and chrF with bootstrap intervals over pairs.
"""

from __future__ import annotations

import collections
from typing import Callable, Sequence

import numpy as np

from lang_neuron_jax.errors import StageMismatchError
from lang_neuron_jax.evaluation import cost, measures as evaluation, uncertainty

BOOTSTRAP_RESAMPLES = 1000


def _outcomes(rows: Sequence[dict], language: str, text_key: str) -> dict[str, np.ndarray]:
  """bool ``[n]`` per outcome: in ``language``; in it and reads as text (a row's
  ``coherence``, where it has one, judges incoherence: unconditional samples)."""
  return {"target": np.array([r["detected"] == language for r in rows]),
          "valid": np.array([evaluation.is_valid_target(
              r["detected"], r[text_key], language, coherence=r.get("coherence"),
              below=evaluation.record_threshold(r)) for r in rows])}


def _share_fields(outcomes: dict[str, np.ndarray]) -> dict:
  out = {}
  for name, x in outcomes.items():
    s = uncertainty.share_summary(x)
    out[f"{name}_share"], out[f"{name}_share_ci"] = s["share"], s["ci"]
  return out


def _repetition_fields(texts: Sequence[str]) -> dict:
  ratios = [evaluation.distinct_ngram_ratio(t) for t in texts]
  return {"median_distinct4": float(np.median(ratios)),
          "degenerate_share": float(np.mean([evaluation.is_degenerate(t) for t in texts]))}


def _text_fields(rows: Sequence[dict]) -> dict:
  """Degenerate, incoherent and broken (does not read as text) shares of unconditional
  samples, each with a Wilson interval."""
  out = {}
  for name, judge in (("degenerate", lambda r: evaluation.is_degenerate(r["text"])),
                      ("incoherent", lambda r: evaluation.is_incoherent(
                          r.get("coherence"), r["detected"],
                          below=evaluation.record_threshold(r))),
                      ("broken", lambda r: not evaluation.reads_as_text(
                          r["text"], r.get("coherence"), r["detected"],
                          below=evaluation.record_threshold(r)))):
    s = uncertainty.share_summary([judge(r) for r in rows])
    out[f"{name}_share"], out[f"{name}_share_ci"] = s["share"], s["ci"]
  return out


def _check_scored(rows: Sequence[dict]) -> None:
  """Generated samples (records with ``tokens``) must carry their ``coherence``: records
  evaluated before every sample was scored (issue 30) would otherwise pass the
  incoherence rule unjudged."""
  unscored = [r for r in rows if "tokens" in r and "coherence" not in r]
  if unscored:
    raise StageMismatchError(
        f"{len(unscored)} unconditional samples (e.g. {unscored[0]['condition']} sample "
        f"{unscored[0]['sample']}) have no coherence: they were evaluated before every "
        "sample was scored for it. Run the stage again in a new work directory (or "
        "delete its unconditional.stage.json).")


def _by_sample(rows: Sequence[dict], key: str) -> list[dict]:
  return sorted(rows, key=lambda r: r[key])


def _untested(fields: dict) -> None:
  """Marks a condition whose samples do not pair with the baseline's (other sample
  indices, or no baseline): its test fields are None, which the reports print as "n/a",
  so a missing test never reads as "not significant"."""
  for name in ("target", "valid"):
    fields[f"p_{name}"] = fields[f"p_{name}_holm"] = fields[f"significant_{name}"] = None


def _paired_tests(entries: list[tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]]):
  """Adds ``p_{target,valid}`` (exact McNemar), their Holm adjustment over ``entries``,
  and ``significant_{target,valid}`` to each entry's dict."""
  for name in ("target", "valid"):
    p = [uncertainty.mcnemar_exact(base[name], treated[name]) for _, base, treated in entries]
    adjusted = uncertainty.holm(p) if p else []
    for (fields, _, _), raw, adj in zip(entries, p, adjusted):
      fields[f"p_{name}"] = float(raw)
      fields[f"p_{name}_holm"] = float(adj)
      fields[f"significant_{name}"] = bool(adj < uncertainty.ALPHA)


def summarize_unconditional(records: Sequence[dict], *, seed: int = 0) -> dict:
  """Per condition name, the fields of the module docstring (``records`` hold
  ``condition, language, kind, n, sample, text, detected, perplexity, coherence``;
  ``coherence`` may be left out only by records without ``tokens``, such as tests')."""
  by_condition = collections.defaultdict(list)
  for r in records:
    by_condition[r["condition"]].append(r)
  _check_scored(records)
  languages = sorted({r["language"] for r in records if r["language"]})
  baseline = _by_sample(by_condition.get("baseline", []), "sample")
  out, tests = {}, []
  for name, rows in by_condition.items():
    rows = _by_sample(rows, "sample")
    ppl = [r["perplexity"] for r in rows if r["perplexity"] is not None]
    fields = {
        "language": rows[0]["language"], "kind": rows[0]["kind"], "n": rows[0]["n"],
        **({"strength": rows[0]["strength"]} if "strength" in rows[0] else {}),
        "samples": len(rows),
        "empty_share": sum(r["detected"] == "" for r in rows) / len(rows),
        "median_perplexity": float(np.median(ppl)) if ppl else None,
        "median_perplexity_ci": uncertainty.median_interval(
            ppl, resamples=BOOTSTRAP_RESAMPLES, seed=seed),
        "perplexity_samples": len(ppl),
        # Share of samples in each language; for the baseline, the model's own mix.
        "share": {l: sum(r["detected"] == l for r in rows) / len(rows) for l in languages},
        "median_distinct4": float(np.median([evaluation.distinct_ngram_ratio(r["text"])
                                             for r in rows])),
        **_text_fields(rows),
    }
    target = rows[0]["language"]
    if target:
      outcomes = _outcomes(rows, target, "text")
      fields.update(_share_fields(outcomes))
      if [r["sample"] for r in baseline] == [r["sample"] for r in rows]:
        tests.append((fields, _outcomes(baseline, target, "text"), outcomes))
      else:
        _untested(fields)
    else:
      fields["by_language"] = {l: _share_fields(_outcomes(rows, l, "text")) for l in languages}
    out[name] = fields
  _paired_tests(tests)
  for name, fields in out.items():
    fields["within_cost"] = (cost.within_cost(fields, out["baseline"])
                             if name != "baseline" and "baseline" in out else None)
  return out


def intervention_role(record: dict) -> str:
  """The control stage's two translation conditions: "baseline" and "intervention"."""
  return "baseline" if record["condition"] == "baseline" else "intervention"


def summarize_translation(records: Sequence[dict], *, seed: int = 0,
                          role: Callable[[dict], str] = intervention_role) -> dict:
  """Per set (``{dataset}_en_{lang}``) and role (``role(record)``: by default "baseline"
  and "intervention"): BLEU, chrF (bootstrap intervals over pairs), target and valid
  shares (Wilson), and for every role but the baseline McNemar's exact test against the
  baseline on the same sources (Holm-adjusted over all of them)."""
  groups = collections.defaultdict(list)
  for r in records:
    groups[(r["dataset"], r["target"], role(r))].append(r)
  out, tests, baselines = {}, [], {}
  for (dataset, lang, cond), rows in sorted(groups.items(), key=lambda kv: kv[0][2] != "baseline"):
    rows = _by_sample(rows, "sample")
    key = f"{dataset}_en_{lang}"
    hyps, refs = [r["output"] for r in rows], [r["reference"] for r in rows]
    stats = evaluation.translation_statistics(hyps, refs, lang)
    fields = {**evaluation.scores_from_statistics(stats, lang),
              "bleu_tokenizer": evaluation.BLEU_TOKENIZERS.get(lang, "13a"), "pairs": len(rows)}
    for metric in ("bleu", "chrf"):
      fields[f"{metric}_ci"] = list(uncertainty.bootstrap_interval(
          lambda idx, m=metric: evaluation.scores_from_statistics(stats, lang, idx)[m],
          len(rows), resamples=BOOTSTRAP_RESAMPLES, seed=seed))
    outcomes = _outcomes(rows, lang, "output")
    fields.update(_share_fields(outcomes))
    fields["empty_share"] = sum(r["output"] == "" for r in rows) / len(rows)
    fields.update(_repetition_fields(hyps))
    if cond == "baseline":
      baselines[key] = (rows, outcomes)
    elif key in baselines and [r["sample"] for r in baselines[key][0]] == [r["sample"] for r in rows]:
      tests.append((fields, baselines[key][1], outcomes))
    else:
      _untested(fields)
    out.setdefault(key, {})[cond] = fields
  _paired_tests(tests)
  return dict(sorted(out.items()))


def summarize(unconditional: Sequence[dict], translation: Sequence[dict], *,
              seed: int = 0) -> dict:
  """The whole ``metrics.json``: ``{"unconditional": ..., "translation": ...,
  "definitions": ...}``."""
  judges = sorted({r.get("judge") or evaluation.EMBEDDED_JUDGE for r in unconditional})
  thresholds, calibrated = evaluation.incoherence_thresholds(judges[0] if judges else None)
  calibration = (f"calibrated for {judges[0]}" if calibrated and len(judges) == 1 else
                 f"the embedded model's thresholds (not calibrated for {', '.join(judges)})")
  return {"unconditional": summarize_unconditional(unconditional, seed=seed),
          "translation": summarize_translation(translation, seed=seed),
          "definitions": {
              "interval": "95%: Wilson for shares, percentile bootstrap "
                          f"({BOOTSTRAP_RESAMPLES} resamples) for medians, BLEU and chrF",
              "test": "McNemar's exact test against the baseline on the same samples "
                      "(paired by common random numbers, or by source sentence), "
                      f"Holm-adjusted; significant when the adjusted p < {uncertainty.ALPHA}",
              "valid": "in the target language and reads as text (not degenerate and not "
                       "incoherent; a translation's line: not degenerate)",
              "degenerate": (f"fewer than {evaluation.DEGENERATE_BELOW:.0%} of the text's "
                             f"character {evaluation.DEGENERATE_NGRAM}-grams distinct"),
              "incoherent": ("coherence under the unintervened model (nats per token "
                             "the text's own context adds) below its language's threshold "
                             "(incoherent_below; other languages: "
                             f"{min(thresholds.values()):g})"),
              "incoherent_below": dict(thresholds),
              "incoherence_calibration": calibration,
              "broken": "does not read as text: empty, degenerate or incoherent",
              "within_cost": ("broken share at most "
                              f"{100 * cost.MAX_EXTRA_BROKEN:g} points above the baseline's"),
          }}
