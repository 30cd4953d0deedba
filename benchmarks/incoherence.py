"""Calibration of the incoherence rule on natural text (where its threshold comes from),
and what scoring every sample costs.

A sample is incoherent when its coherence under the unintervened model (nats per token
that its own earlier tokens add to each token's log-likelihood,
lang_neuron_jax/evaluation/scoring.py) is below its language's threshold,
``INCOHERENT_BELOW`` (lang_neuron_jax/evaluation/measures.py: 1 nat below the lowest
natural window of the language, rounded down). This script measures coherence, and perplexity
beside it, on text scored exactly as a sample is (a continuation of the unconditional
prompt, the model's document start):

1. windows: each language's shipped positive sentences (the paper's corpora, the first
   ``--sentences`` in file order), joined by spaces, tokenized, cut into consecutive
   non-overlapping windows of 64 tokens (a sample's length; the remainder is left out);
2. baseline: ``--samples`` unconditional samples without intervention (64 new tokens,
   temperature 0.8, seed 0): sample ``i`` is the study's baseline sample ``i`` (common
   random numbers), so the first 24 are the default run's baseline;
3. ``--find`` (optional): a finished find work directory: ``--fixed_samples`` samples per
   language with every neuron fixed (N capped at the model's neurons, the sweep's top
   point), judged by language ID, the loop rule and this rule: the word salad the rule
   is for (issue 30); beside it, how many a perplexity threshold at the windows' 99th
   percentile would flag (why the rule is not on perplexity alone);
4. ``--run`` (optional): a control work directory's ``unconditional.jsonl``, every
   sample scored from its recorded tokens and judged, per condition, and the run's
   metrics recomputed with the rule (``run_metrics`` in the JSON: metrics.json's
   "unconditional" section, intervals and paired tests included), which re-judges a
   run evaluated before every sample was scored without generating it again.

In the same run it times a scored row (batches of ``--batch_size``, as the control stage
scores) against a generated row (the study's sampler, batches of ``--generate_batch``),
each after it has compiled: the ratio is what scoring every sample adds to generating it.

  python benchmarks/incoherence.py [--model=gemma3-270m] [--sentences=200] [--samples=100]
      [--find=workdir/reproduce/find] [--run=workdir/reproduce/control]
      [--nocalibrate] [--output=incoherence.json]

The figures measures.py's comment and docs/evaluation.md quote are this script's output.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time

from absl import app, flags, logging
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lang_neuron_jax as lnj  # noqa: E402
from lang_neuron_jax.control import conditions, rows as control  # noqa: E402
from lang_neuron_jax.data import corpora as data  # noqa: E402
from lang_neuron_jax.evaluation import measures, metrics, scoring  # noqa: E402
from lang_neuron_jax.find import stage as find_stage  # noqa: E402
from lang_neuron_jax.generation import sampling  # noqa: E402
from lang_neuron_jax.neurons import selection  # noqa: E402
from lang_neuron_jax.runtime import artifacts  # noqa: E402

_MODEL = flags.DEFINE_string("model", lnj.DEFAULT_MODEL, "Model that scores (the judge).")
_SENTENCES = flags.DEFINE_integer("sentences", 200, "Positive sentences per language (0: all).")
_SAMPLES = flags.DEFINE_integer("samples", 100, "Baseline samples.")
_FIXED_SAMPLES = flags.DEFINE_integer("fixed_samples", 24, "--find's samples per language "
                                      "(24: the default run's).")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Scored rows per call.")
_GENERATE_BATCH = flags.DEFINE_integer("generate_batch", 20, "Generated rows per call.")
_CALIBRATE = flags.DEFINE_bool("calibrate", True, "Score the windows and the baseline "
                                "(--nocalibrate: only --find and --run).")
_FIND = flags.DEFINE_string("find", None, "A find work directory: judge samples with every "
                            "neuron fixed towards each language.")
_RUN = flags.DEFINE_string("run", None, "A control work directory to judge.")
_OUTPUT = flags.DEFINE_string("output", None, "Write every score here (JSON).")

WINDOW_TOKENS = 64  # The study's max_new_tokens: windows as long as a sample.


def windows(tokenizer, language: str, sentences: int | None) -> list[list[int]]:
  """Consecutive non-overlapping 64-token windows of the first ``sentences`` positive
  sentences (all when None) of ``language``'s shipped corpus, joined by spaces."""
  with open(os.path.join(data.SENSE_DIR, f"{language}.json"), encoding="utf-8") as f:
    texts = json.load(f)["sentences"]["positive"][:sentences]
  ids = tokenizer(" ".join(texts), add_special_tokens=False)["input_ids"]
  return [ids[i:i + WINDOW_TOKENS] for i in range(0, len(ids) - WINDOW_TOKENS + 1, WINDOW_TOKENS)]


def below(language: str) -> float:
  """``language``'s threshold under --model's calibration (the embedded model's where it
  has none yet: what this script's output then helps to set)."""
  return measures.incoherent_below(language, _MODEL.value)


def scored(lm, prompt, continuations) -> tuple[np.ndarray, np.ndarray]:
  """Perplexity and coherence ``[R]`` each (NaN where not defined)."""
  s = scoring.score(lm, [prompt] * len(continuations), continuations, batch_size=_BATCH.value)
  return s.perplexity, s.coherence


def line(name: str, ppl, coherence, languages) -> str:
  """A group's coherence (its low end is what the rule sees), how many the rule flags
  (each text judged in its language, ``languages``) and perplexity (high end)."""
  keep = [i for i, x in enumerate(coherence) if not np.isnan(x)]
  c = np.asarray([coherence[i] for i in keep])
  p = np.asarray([x for x in ppl if not np.isnan(x)])
  flagged = sum(measures.is_incoherent(coherence[i], languages[i], below=below(languages[i]))
                for i in keep)
  return (f"{name}: {c.size} texts; coherence lowest {c.min():.2f}, p1 "
          f"{np.percentile(c, 1):.2f}, p5 {np.percentile(c, 5):.2f}, median {np.median(c):.2f}, "
          f"highest {c.max():.2f}; flagged incoherent: {flagged}; perplexity median "
          f"{np.median(p):.1f}, p95 {np.percentile(p, 95):.1f}, p99 {np.percentile(p, 99):.1f}, "
          f"highest {p.max():.1f}")


def timed_scores(lm, prompt, continuations) -> tuple[np.ndarray, np.ndarray, float]:
  """Scores and seconds per row, compilation left out (a first batch warms up)."""
  scored(lm, prompt, continuations[:_BATCH.value])
  start = time.perf_counter()
  ppl, coherence = scored(lm, prompt, continuations)
  return ppl, coherence, (time.perf_counter() - start) / len(continuations)


def baseline_samples(lm, prompt) -> tuple[list[dict], float]:
  """The baseline's samples and seconds per generated row (batches after the first,
  which compiles)."""
  jobs = conditions.unconditional_jobs(prompt, [conditions.BASELINE], _SAMPLES.value)
  stamps = [time.perf_counter()]
  records = control.run_jobs(lm, None, jobs, max_new_tokens=WINDOW_TOKENS,
                             sampler=sampling.Sampler(temperature=0.8), seed=0,
                             batch_size=_GENERATE_BATCH.value, progress=False,
                             on_batch=lambda rows: stamps.append(time.perf_counter()))
  warm = np.diff(stamps)[1:]
  per_row = float(np.median(warm)) / _GENERATE_BATCH.value if warm.size else float("nan")
  return records, per_row


def every_neuron_fixed(lm, prompt, directory: str, ppl_limit: float | None) -> dict[str, dict]:
  """Per language of a find stage: ``--fixed_samples`` samples with every neuron fixed to its
  median on the language (64 tokens, temperature 0.8, seed 0), judged: language ID, loop
  rule, this rule, and a perplexity threshold ``ppl_limit`` (if given) for comparison."""
  # Not load_scores(directory, lm): a find stage from before e676ae9 (which changed how
  # model ids hash) holds the same model's medians under another id. A different model's
  # scores would not fit its sites' shapes, and neuron_steering would refuse them.
  exp, _ = find_stage.load_scores(directory)
  if exp.index.model_id != lm.model_id:
    logging.warning("%s scored %s; using its medians on %s", directory, exp.index.model_id,
                    lm.model_id)
  n = selection.cap_n(200_000, exp.index.size, "both")
  jobs = conditions.unconditional_jobs(
      prompt, [conditions.condition(lang, "both", n) for lang in exp.languages],
      _FIXED_SAMPLES.value)
  records = control.run_jobs(lm, control.neuron_steering(exp), jobs,
                             max_new_tokens=WINDOW_TOKENS, sampler=sampling.Sampler(temperature=0.8),
                             seed=0, batch_size=_GENERATE_BATCH.value, progress=True)
  detected = measures.identify_language([r["text"] for r in records])
  ppl, coherence = scored(lm, prompt, [r["tokens"] for r in records])
  out = {}
  for r, lang, p, c in zip(records, detected, ppl, coherence):
    c = None if np.isnan(c) else float(c)
    o = out.setdefault(r["language"], {"n": n, "samples": 0, "target": 0, "degenerate": 0,
                                       "incoherent": 0, "perplexity_above_limit": 0,
                                       "valid_loop_rule_only": 0, "valid": 0,
                                       "perplexity": [], "coherence": [], "detected": [],
                                       "texts": []})
    o["samples"] += 1
    o["target"] += lang == r["language"]
    o["degenerate"] += measures.is_degenerate(r["text"])
    o["incoherent"] += measures.is_incoherent(c, lang, below=below(lang))
    o["perplexity_above_limit"] += bool(ppl_limit and p > ppl_limit)
    o["valid_loop_rule_only"] += lang == r["language"] and not measures.is_degenerate(r["text"])
    o["valid"] += measures.is_valid_target(lang, r["text"], r["language"], coherence=c,
                                           below=below(lang))
    o["perplexity"].append(float(p))
    o["coherence"].append(c)
    o["detected"].append(lang)
    o["texts"].append(r["text"])
  return out


def judge_run(lm, prompt, directory: str) -> tuple[dict[str, dict], dict, list]:
  """A control work directory's samples, every one scored from its recorded tokens and
  judged with --model's thresholds: ``(per condition: perplexity, coherence and detected
  language lists, the run's metrics as metrics.json's "unconditional" section, each
  record's coherence in file order (None where not scored), so that a later calibration
  can re-judge them without scoring again)``. The
  metrics re-judge a run evaluated before every sample was scored (issue 30) without
  generating it again: its samples, language IDs and paired tests are the run's own."""
  records = artifacts.read_jsonl(os.path.join(directory, "unconditional.jsonl"))
  scoreable = [r for r in records if len(r["tokens"]) >= 2]
  ppl, coherence = scored(lm, prompt, [r["tokens"] for r in scoreable])
  for r in records:
    r["perplexity"] = r["coherence"] = None
    r["judge"] = _MODEL.value
  by = collections.defaultdict(lambda: {"perplexity": [], "coherence": [], "detected": []})
  for r, p, c in zip(scoreable, ppl, coherence):
    r["perplexity"] = None if np.isnan(p) else float(p)
    r["coherence"] = None if np.isnan(c) else float(c)
    by[r["condition"]]["perplexity"].append(float(p))
    by[r["condition"]]["coherence"].append(float(c))
    by[r["condition"]]["detected"].append(r["detected"])
  return (dict(by), metrics.summarize_unconditional(records),
          [r["coherence"] for r in records])


def calibrate(lm, prompt) -> dict:
  """Windows and baseline samples scored, with the cost of a row of each."""
  sentences = _SENTENCES.value or None
  by_language = {lang: windows(lm.tokenizer, lang, sentences) for lang in data.PAPER_LANGUAGES}
  flat = [w for ws in by_language.values() for w in ws]
  ppl, coherence, score_seconds = timed_scores(lm, prompt, flat)
  out, start = {"windows": {}}, 0
  print(f"model {_MODEL.value}; windows of {WINDOW_TOKENS} tokens of the first "
        f"{sentences or 'all'} positive sentences per language, scored after the "
        f"unconditional prompt {prompt}")
  languages = [lang for lang, ws in by_language.items() for _ in ws]
  for lang, ws in by_language.items():
    part = slice(start, start + len(ws))
    print("  " + line(lang, ppl[part], coherence[part], languages[part]))
    out["windows"][lang] = {"perplexity": ppl[part].tolist(), "coherence": coherence[part].tolist()}
    start += len(ws)
  print(line("all windows", ppl, coherence, languages))
  records, generate_seconds = baseline_samples(lm, prompt)
  base_ppl, base_coherence = scored(lm, prompt, [r["tokens"] for r in records])
  detected = measures.identify_language([r["text"] for r in records])
  print(line(f"baseline samples (seed 0, 0-{_SAMPLES.value - 1})", base_ppl, base_coherence,
             detected))
  print(line("baseline samples 0-23 (the default run's)", base_ppl[:24], base_coherence[:24],
             detected[:24]))
  for i in np.argsort(np.nan_to_num(base_coherence, nan=np.inf))[:6]:
    flag = ("incoherent" if measures.is_incoherent(base_coherence[i], detected[i],
                                                   below=below(detected[i])) else "ok")
    print(f"    {base_coherence[i]:.2f} {detected[i]} {flag}: {records[i]['text'][:70]!r}")
  print(f"cost: {score_seconds:.3f} s a scored row (batch {_BATCH.value}, "
        f"{WINDOW_TOKENS + 1} columns), {generate_seconds:.3f} s a generated row (batch "
        f"{_GENERATE_BATCH.value}, {WINDOW_TOKENS} tokens): ratio "
        f"{score_seconds / generate_seconds:.2f}")
  out.update(sentences=sentences, window_perplexity_p99=float(np.nanpercentile(ppl, 99)),
             baseline={"perplexity": base_ppl.tolist(), "coherence": base_coherence.tolist(),
                       "detected": detected, "texts": [r["text"] for r in records]},
             seconds_per_scored_row=score_seconds, seconds_per_generated_row=generate_seconds)
  return out


def main(argv):
  del argv
  lm = lnj.load_model(_MODEL.value)
  prompt = conditions.unconditional_prompt(lm.config)
  table, calibrated = measures.incoherence_thresholds(_MODEL.value)
  out = {"model": _MODEL.value, "incoherent_below": table, "calibrated": calibrated,
         "incoherent_below_otherwise": min(table.values())}
  if _CALIBRATE.value:
    out.update(calibrate(lm, prompt))
  if _FIND.value:
    limit = out.get("window_perplexity_p99")
    out["every_neuron_fixed"] = fixed = every_neuron_fixed(lm, prompt, _FIND.value, limit)
    for lang, o in fixed.items():
      print(line(f"every neuron fixed (N={o['n']:,}) towards {lang}", o["perplexity"],
                 [np.nan if c is None else c for c in o["coherence"]], o["detected"]))
      print(f"  {o['target']} of {o['samples']} in {lang}, {o['degenerate']} degenerate, "
            f"{o['incoherent']} incoherent; valid: {o['valid_loop_rule_only']} by the loop "
            f"rule alone, {o['valid']} with this rule"
            + (f"; perplexity above the windows' p99 ({limit:.0f}): "
               f"{o['perplexity_above_limit']}" if limit else ""))
  if _RUN.value:
    judged, out["run_metrics"], out["run_coherence"] = judge_run(lm, prompt, _RUN.value)
    out["run"] = judged
    for name, j in judged.items():
      m = out["run_metrics"][name]
      shares = (f"; target {m['target_share']:.0%}, valid {m['valid_share']:.0%}"
                if "target_share" in m else "")  # the baseline has no target
      print(f"  {line(name, j['perplexity'], j['coherence'], j['detected'])}{shares}")
  if _OUTPUT.value:
    artifacts.write_json(_OUTPUT.value, out)


if __name__ == "__main__":
  app.run(main)
