"""The method comparison end to end on a tiny model with the real tokenizer (the binary's
flag handling is in test_bad_input_binaries.py)."""

import dataclasses
import json
import math
import os

import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax import compare
from lang_neuron_jax.compare import choice
from lang_neuron_jax.find import stage as find
from lang_neuron_jax import study as presets
from lang_neuron_jax.data import corpora as data
from lang_neuron_jax.errors import ConfigError, UserError
from lang_neuron_jax.evaluation import cost
from lang_neuron_jax.runtime import artifacts, stages
from tests.conftest import write_small_corpus


def _condition(lang, method, strength, valid, broken, ppl=10.0):
  """One condition of ``comparison.json`` as best_settings reads it. Its ``within_cost``
  key is stale on purpose (always True): the choice must apply the config's bound itself,
  not read the key ``summarize_unconditional`` computed at the default one."""
  return {"kind": method, "language": lang, "strength": strength, "valid_share": valid,
          "valid_share_ci": [valid / 2, (1 + valid) / 2], "target_share": valid,
          "target_share_ci": [0.0, 1.0], "broken_share": broken,
          "broken_share_ci": [broken / 2, (1 + broken) / 2], "median_perplexity": ppl,
          "significant_valid": valid > 0.5, "within_cost": True}


def _conditions(*rows, baseline_broken=0.1, baseline_ppl=10.0):
  out = {"baseline": {"kind": None, "language": None, "broken_share": baseline_broken,
                      "median_perplexity": baseline_ppl}}
  out.update({f"{r[0]}/{r[1]}/{r[2]:g}": _condition(*r) for r in rows})
  return out


RULE_CONFIG = compare.CompareConfig(languages=("de", "fr"), methods=("ap", "lape"),
                                    strengths=(("ap", (20, 4, 200)), ("lape", (0.02, 0.01))),
                                    max_extra_broken=0.25)
WITHIN, OVER = 0.2, 0.5  # broken shares either side of the default limit 0.1 + 0.25


def test_best_setting_is_the_highest_valid_share_within_the_cost():
  """Limit: the baseline's broken share 2/20 + 0.25 = 7/20, inclusive: a better setting
  over it loses to a worse one under it; one exactly at it counts; other methods' and
  languages' rows do not leak in; the config's bound, not the entries' own within_cost
  key, decides."""
  cond = _conditions(("de", "ap", 4, 0.3, 4 / 20), ("de", "ap", 20, 0.9, 8 / 20),
                     ("de", "ap", 200, 0.5, 7 / 20),  # exactly at the limit
                     ("fr", "ap", 4, 0.2, 0.3), ("fr", "ap", 20, 1.0, 0.6),
                     ("fr", "ap", 200, 0.95, 0.9),
                     ("de", "lape", 0.01, 1.0, 0.5), ("de", "lape", 0.02, 1.0, 0.6),
                     ("fr", "lape", 0.01, 0.1, 0.5), ("fr", "lape", 0.02, 0.7, 0.0),
                     baseline_broken=2 / 20)
  best = compare.best_settings(cond, RULE_CONFIG)
  assert best["ap"]["de"]["strength"] == 200 and best["ap"]["de"]["valid_share"] == 0.5
  assert best["ap"]["de"] == {k: cond["de/ap/200"][k] for k in best["ap"]["de"]}
  assert best["ap"]["de"]["broken_share"] == 7 / 20
  assert best["ap"]["fr"]["strength"] == 4
  assert best["lape"]["de"] is None  # nothing within the cost
  assert best["lape"]["fr"]["strength"] == 0.02
  # The bound is added to the baseline's share: at 0.5, the 0.9 at 8/20 wins.
  wide = compare.best_settings(cond, dataclasses.replace(RULE_CONFIG, max_extra_broken=0.5))
  assert wide["ap"]["de"]["strength"] == 20 and wide["lape"]["de"]["strength"] == 0.01
  # At 0, only settings that break no more often than the baseline.
  tight = compare.best_settings(cond, dataclasses.replace(RULE_CONFIG, max_extra_broken=0.0))
  assert tight["ap"]["de"] is None and tight["lape"]["fr"]["strength"] == 0.02


def test_cost_counts_broken_samples_not_the_median_perplexity():
  """The old rule (median perplexity at most 2 x the baseline's) and the shared one
  disagree here, and the choice follows the shared one (evaluation.cost.within_cost):
  AP de at N = 20,000 in the 2026-12-03 comparison, 88% degenerate at a median perplexity
  of 7.6 against the baseline's 6.8, passed the old rule and is out; a setting whose
  text stays whole at a high perplexity (hard text, not salad) was out and is in."""
  cond = _conditions(("de", "ap", 20000, 0.12, 0.88, 7.6),  # loops: low perplexity
                     ("de", "ap", 200, 0.06, 0.20, 30.0),   # whole text, over 2 x 6.8
                     ("fr", "ap", 200, 0.0, 0.0, 6.9),
                     baseline_broken=0.05, baseline_ppl=6.8)
  config = dataclasses.replace(RULE_CONFIG, languages=("de",), methods=("ap",),
                               strengths=(("ap", (200, 20000)),))
  best = compare.best_settings(cond, config)
  assert best["ap"]["de"]["strength"] == 200
  assert compare.translation_strengths(best, config) == {"ap": {"de": 200}}
  # The held-out flag applies the same rule: the 200 there, and 20,000 if it were chosen.
  summary = compare.summarize(cond, cond, {}, config)
  assert summary["best"]["ap"]["de"]["within_cost"] is True
  assert summary["max_extra_broken"] == 0.25 and "fluency_cost" not in summary
  assert cost.within_cost(cond["de/ap/200"], cond["baseline"])
  assert not cost.within_cost(cond["de/ap/20000"], cond["baseline"])
  assert choice.describe_cost(cond["baseline"], 0.25) == \
      "broken share at most 25 points above the baseline's 5%"
  # Metrics summarized before broken shares existed are refused, not judged.
  del cond["de/ap/200"]["broken_share"]
  with pytest.raises(UserError, match="broken_share"):
    compare.best_settings(cond, config)


def test_best_setting_ties_go_to_the_weaker_strength():
  # Listed strongest first, so the rule and not the order decides.
  cond = _conditions(("de", "ap", 200, 0.5, 0.1), ("de", "ap", 20, 0.5, 0.1),
                     ("de", "ap", 4, 0.5, WITHIN), ("fr", "ap", 200, 0.25, 0.1),
                     ("fr", "ap", 20, 0.25, 0.1), ("fr", "ap", 4, 0.0, 0.1))
  config = dataclasses.replace(RULE_CONFIG, methods=("ap",), strengths=(("ap", (200, 20, 4)),))
  best = compare.best_settings(cond, config)
  assert best["ap"]["de"]["strength"] == 4 and best["ap"]["fr"]["strength"] == 20


def test_translation_strengths_fall_back_to_the_weakest():
  """The best setting where there is one; the smallest strength of the sweep (not its
  first) where nothing is within the cost."""
  cond = _conditions(("de", "ap", 20, 0.4, WITHIN), ("de", "ap", 4, 0.1, OVER),
                     ("de", "ap", 200, 0.9, OVER), ("fr", "ap", 20, 0.9, OVER),
                     ("fr", "ap", 4, 0.1, OVER), ("fr", "ap", 200, 0.9, OVER),
                     ("de", "lape", 0.02, 0.1, OVER), ("de", "lape", 0.01, 0.0, OVER),
                     ("fr", "lape", 0.02, 0.3, WITHIN), ("fr", "lape", 0.01, 0.0, OVER))
  best = compare.best_settings(cond, RULE_CONFIG)
  assert best["ap"]["fr"] is None and best["lape"]["de"] is None
  assert compare.translation_strengths(best, RULE_CONFIG) == {
      "ap": {"de": 20, "fr": 4}, "lape": {"de": 0.01, "fr": 0.02}}


@pytest.mark.parametrize("field,value,message", [
    ("max_extra_broken", math.nan, "max_extra_broken"),
    ("max_extra_broken", math.inf, "max_extra_broken"),
    ("max_extra_broken", -0.1, "max_extra_broken"), ("max_extra_broken", 1.5, "max_extra_broken"),
    ("max_extra_broken", True, "max_extra_broken"), ("max_extra_broken", "0.2", "max_extra_broken"),
    ("samples", 0, "samples"), ("choose_samples", 0, "choose_samples"),
    ("translation_pairs", -1, "translation_pairs")])
def test_validate_refuses_bad_numbers_before_any_work(field, value, message):
  config = dataclasses.replace(compare.CompareConfig(), **{field: value})
  with pytest.raises(ConfigError, match=message):
    config.validate(data.PAPER_LANGUAGES, 18)
  compare.CompareConfig().validate(data.PAPER_LANGUAGES, 18)  # the defaults pass
  for edge in (0, 1.0):  # the bound's range is closed
    dataclasses.replace(compare.CompareConfig(), max_extra_broken=edge).validate(
        data.PAPER_LANGUAGES, 18)
  # Without translation, the cost is still checked (it once sat after sets()' return).
  no_translation = dataclasses.replace(config, translation_pairs=0)
  if field != "translation_pairs":
    with pytest.raises(ValueError, match=message):
      no_translation.validate(data.PAPER_LANGUAGES, 18)


def test_old_cost_fields_are_gone_and_old_work_directories_run_again(tmp_path):
  """CompareConfig lost fluency_cost and perplexity_samples for max_extra_broken (issue
  30), so a comparison stage finished under the old fields has another fingerprint: it
  is run again, not reused with metrics judged by the old rule. The bound is part of the
  fingerprint too (it changes the choice, so the held-out half)."""
  fields = {f.name for f in dataclasses.fields(compare.CompareConfig)}
  assert "max_extra_broken" in fields and not fields & {"fluency_cost", "perplexity_samples"}
  assert compare.CompareConfig().max_extra_broken == cost.MAX_EXTRA_BROKEN
  config = compare.CompareConfig()
  old = {k: v for k, v in artifacts.to_jsonable(config).items() if k != "max_extra_broken"}
  old.update(fluency_cost=2.0, perplexity_samples=None)
  work = str(tmp_path)
  artifacts.write_json(stages.stamp_path(work, "comparison"), {
      "stage": "comparison",
      "fingerprint": artifacts.fingerprint(stage="comparison", config=old, model="m",
                                           inputs=[])})
  stage = stages.Stage(work, "comparison", config=config, model_id="m")
  assert stage.finished() is None  # not reused: run again (keep_other)
  same = stages.Stage(work, "comparison", config=dataclasses.replace(config), model_id="m")
  assert same.fingerprint == stage.fingerprint
  assert stages.Stage(work, "comparison", model_id="m", config=dataclasses.replace(
      config, max_extra_broken=0.5)).fingerprint != stage.fingerprint


def test_comparison_end_to_end_and_reuse(tiny_gemma3_with_tokenizer, tmp_path, recwarn):
  lm = lnj.load_model(tiny_gemma3_with_tokenizer)
  corpus = write_small_corpus(str(tmp_path / "corpus"), positives=12, negatives=24)
  work = str(tmp_path / "work")
  preset = presets.COMPARE_QUICK
  config = dataclasses.replace(
      preset.compare, languages=("en", "de", "ja"), samples=3, choose_samples=3,
      methods=tuple(compare.METHODS),
      strengths=(("ap", (4, 20)), ("lape", (0.1,)), ("diffmean", (1.0,)), ("probe", (8.0,))))
  find_config = compare.find_config(dataclasses.replace(
      preset.find, languages=("en", "de", "ja"), corpus_dir=corpus), lm.config, config.methods)

  def run():
    found = find.find_neurons(lm, find_config, f"{work}/find", progress=False)
    return compare.run_comparison(lm, found, config, work, progress=False)

  result = run()
  # The stage no longer passes the deprecated perplexity_samples (which only warns now),
  # and every sample is scored for the cost's incoherence rule.
  assert not [w for w in recwarn if "perplexity_samples" in str(w.message)]
  assert all("coherence" in r for r in result.records + result.held_out)
  compare.write_report(work, result, config, model_id=lm.model_id)
  for name in ("comparison.md", "comparison.json", "comparison.jsonl", "held_out.jsonl",
               "pareto.png", "method_layers.png", "find/expertise.npz", "find/responses/resid.npy",
               "find/responses/gate_act.positive.npy", "translation.jsonl",
               "translation_bleu.png"):
    assert os.path.exists(os.path.join(work, name)), name
  with open(os.path.join(work, "comparison.json")) as f:
    summary = json.load(f)
  # The baseline and 3 languages x (2 AP + 1 LAPE + 1 DiffMean + 1 probe) conditions, 3
  # samples each.
  assert len(summary["conditions"]) == 1 + 3 * 5
  assert all(v["samples"] == 3 for v in summary["conditions"].values())
  assert summary["conditions"]["de/ap/20"]["strength"] == 20
  assert set(summary["best"]) == {"ap", "lape", "diffmean", "probe"}
  assert set(summary["best"]["lape"]) == {"en", "de", "ja"}
  assert list(summary["overlap"]) == ["ap@20 vs lape@0.1"]
  assert len(summary["layers"]["diffmean"]) == lm.config.num_layers
  for m in ("diffmean", "probe"):  # one layer per language
    assert sum(summary["layers"][m]) == 3 * lm.config.width
  assert set(summary["fits"]["probe"]["layer"]) == {"en", "de", "ja"}
  # Chosen on one half, reported on the other: the held-out half holds the baseline and
  # exactly the chosen settings, on the other sample indices.
  choosing, held = config.split()
  assert sorted(choosing + held) == list(range(6)) and summary["split"]["held_out"] == list(held)
  assert {r["sample"] for r in result.records} == set(choosing)
  assert {r["sample"] for r in result.held_out} == set(held)
  chosen = {f"{l}/{m}/{b['strength']:g}" for m, by in summary["chosen_on"].items()
            for l, b in by.items() if b}
  assert set(summary["held_out"]) == {"baseline"} | chosen
  assert all(v["samples"] == 3 for v in summary["held_out"].values())
  for m, by in summary["best"].items():
    for lang, b in by.items():
      assert (b is None) == (summary["chosen_on"][m][lang] is None)
      if b:
        h = summary["held_out"][f"{lang}/{m}/{b['strength']:g}"]
        assert b["valid_share"] == h["valid_share"]
        assert b["strength"] == summary["chosen_on"][m][lang]["strength"]
  # Translation: FLORES-200 into de and ja (English has no set), 2 pairs, no intervention
  # and each method at the strength chosen from its unconditional results.
  assert set(summary["translation"]) == {"flores200_en_de", "flores200_en_ja"}
  for by_role in summary["translation"].values():
    assert set(by_role) == {"baseline", "ap", "lape", "diffmean", "probe"}
    assert all(v["pairs"] == 2 and "p_valid_holm" in v for r, v in by_role.items() if r != "baseline")
  chosen = summary["translation_strengths"]
  assert chosen["ap"]["de"] in (4, 20) and chosen["lape"]["ja"] == 0.1
  assert len(result.translations) == 2 * 2 * 5
  for r in result.translations:
    if r["kind"] is not None:
      assert r["strength"] == chosen[r["kind"]][r["target"]] and r["language"] == r["target"]
  with open(os.path.join(work, "comparison.md")) as f:
    report = f.read()
  assert "Best setting per method within the fluency cost" in report and "| de/lape/0.1 |" in report
  assert "## Translation" in report and "| flores200_en_ja |" in report
  from tests import report_cells
  assert report_cells.check_comparison_report(report, summary, config.methods,
                                              config.languages) >= 2 * 3 * 5
  # A second run reuses every stage and gives the same records.
  with open(os.path.join(work, "comparison.jsonl")) as f:
    first = f.read()
  stamps = {n: os.path.getmtime(os.path.join(work, n)) for n in (
      "comparison.jsonl", "comparison.stage.json", "held_out.jsonl", "held_out.stage.json",
      "translation.jsonl", "translation.stage.json")}
  again = run()
  assert again.records == result.records and again.translations == result.translations
  assert again.held_out == result.held_out
  for name, mtime in stamps.items():
    assert os.path.getmtime(os.path.join(work, name)) == mtime, name
  with open(os.path.join(work, "comparison.jsonl")) as f:
    assert f.read() == first


def _records(condition, lang, kind, strength, detected, ppl, samples=10, first=0):
  """Unconditional records of one condition, sample indices ``first, first + 1, ...``;
  sample ``i`` is detected as ``detected[i]``."""
  text = "Die Stadt liegt am Fluss und hat viele alte Brücken aus Stein."
  return [{"condition": condition, "language": lang, "kind": kind, "n": None,
           **({"strength": strength} if kind else {}), "sample": first + i, "text": text,
           "detected": d, "perplexity": ppl * (1 + i / 10)}
          for i, d in zip(range(samples), detected)]


def _translations(by_role, pairs=10):
  """Translation records: ``by_role`` is ``{(target, kind or None): gained}``, the first
  ``gained`` pairs of each in the target language (English otherwise)."""
  return [{"dataset": "flores200", "target": lang, "kind": kind, "strength": None,
           "condition": "x", "sample": i, "reference": "Der Hund.",
           "output": "Der Hund." if i < gained else "The dog.",
           "detected": lang if i < gained else "en"}
          for (lang, kind), gained in by_role.items() for i in range(pairs)]


def _marks(summary, method):
  """Every test field of ``method`` in a comparison summary."""
  fields = ("p_valid_holm", "significant_valid", "p_target_holm", "significant_target")
  out = {}
  for part in ("conditions", "held_out"):
    for name, v in summary[part].items():
      if v["kind"] == method:
        out[(part, name)] = [v[f] for f in fields]
  for part in ("best", "chosen_on"):
    out[part] = summary[part][method]
  for key, by_role in summary["translation"].items():
    out[("translation", key)] = [by_role[method].get(f) for f in fields]
  return out


def test_marks_do_not_change_when_a_method_is_added():
  """Tests are Holm-adjusted within each method's own family, so adding the probe (six
  null tests per table, as when it joined the real comparison) leaves AP's and LAPE's
  choices and marks as they were; over the whole table, Holm would take AP's marks away
  (de/ap/4 on the choosing half: p = 2/256, x 4 tests of AP = 0.031, x 11 of the whole
  table = 0.086; held out and in translation: p = 2/128, x 2 = 0.031, x 5 = 0.078)."""
  from lang_neuron_jax.evaluation import metrics as metrics_lib

  two = compare.CompareConfig(languages=("de", "fr"), methods=("ap", "lape"),
                              strengths=(("ap", (4, 20)), ("lape", (0.01,))),
                              samples=10, choose_samples=10, translation_pairs=10)
  three = dataclasses.replace(two, methods=("ap", "lape", "probe"),
                              strengths=two.strengths + (("probe", (2, 8, 32)),))
  assert two.split() == three.split()  # the samples do not depend on the methods
  en, gained = ["en"] * 10, lambda lang, k: [lang] * k + ["en"] * (10 - k)
  choosing_hits = {("de", "ap", 4): 8, ("fr", "lape", 0.01): 10}  # every other: none
  held_hits = {("de", "ap", 4): 7, ("fr", "lape", 0.01): 10}

  def summary(config):
    sweep = config.sweep()
    choosing = _records("baseline", None, None, None, en, 10.0) + [
        r for lang in config.languages for m in config.methods for s in sweep[m]
        for r in _records(f"{lang}/{m}/{s:g}", lang, m, s,
                          gained(lang, choosing_hits.get((lang, m, s), 0)), 10.0)]
    by_choosing = metrics_lib.summarize_unconditional(choosing)
    chosen = compare.best_settings(by_choosing, config)
    held = _records("baseline", None, None, None, en, 10.0, first=10) + [
        r for lang in config.languages for m in config.methods
        for s in [chosen[m][lang]["strength"]]
        for r in _records(f"{lang}/{m}/{s:g}", lang, m, s,
                          gained(lang, held_hits.get((lang, m, s), 0)), 10.0, first=10)]
    translations = _translations({(lang, kind): {("de", "ap"): 7, ("fr", "lape"): 10}.get(
        (lang, kind), 0) for lang in config.languages for kind in (None, *config.methods)})
    return compare.summarize(by_choosing, metrics_lib.summarize_unconditional(held), {},
                             config, translations)

  before, after = summary(two), summary(three)
  for m in ("ap", "lape"):
    assert _marks(after, m) == _marks(before, m), m
  assert after["chosen_on"]["ap"]["de"]["strength"] == 4
  assert after["conditions"]["de/ap/4"]["significant_valid"] is True
  assert after["held_out"]["de/ap/4"]["significant_valid"] is True
  assert after["best"]["ap"]["de"]["significant_valid"] is True
  assert after["translation"]["flores200_en_de"]["ap"]["significant_valid"] is True
  assert not any(v["significant_valid"] for v in after["conditions"].values()
                 if v["kind"] == "probe")


def test_default_held_out_count_separates_shares_30_points_apart():
  """The default's held-out count is the smallest from which any two shares at least 30
  points apart have disjoint 95% Wilson intervals (CompareConfig's docstring)."""
  from lang_neuron_jax.evaluation.uncertainty import wilson_interval

  def separates(n):
    gap = math.ceil(0.3 * n - 1e-9)
    return all(wilson_interval(k, n)[1] < wilson_interval(k + gap, n)[0]
               for k in range(n - gap + 1))

  n = compare.CompareConfig().samples
  assert separates(n) and not separates(n - 1)
  assert all(separates(m) for m in range(n, 120))


def test_split_is_fixed_by_the_seed_and_disjoint():
  config = compare.CompareConfig()
  choosing, held = config.split()
  assert (len(choosing), len(held)) == (config.choose_samples, config.samples)
  assert sorted(choosing + held) == list(range(config.choose_samples + config.samples))
  assert config.split() == (choosing, held)
  assert dataclasses.replace(config, seed=1).split() != (choosing, held)


def test_comparison_report_cells_match_the_summary(tmp_path):
  """comparison.md's best-setting, every-condition and translation tables, parsed back,
  show comparison.json's shares, intervals, marks ("*", nothing, "(test n/a)") and
  strengths."""
  from lang_neuron_jax.evaluation import metrics as metrics_lib
  from tests import report_cells

  config = compare.CompareConfig(languages=("de",), methods=("ap", "lape"),
                                 strengths=(("ap", (4, 20)), ("lape", (0.01,))),
                                 translation_pairs=12, samples=10, choose_samples=10)
  records = (_records("baseline", None, None, None, ["en"] * 10, 10.0)
             + _records("de/ap/4", "de", "ap", 4, ["de"] * 10, 12.0)  # significant
             + _records("de/ap/20", "de", "ap", 20, ["de"] * 8, 9.0, samples=8)  # unpaired, over the cost
             + _records("de/lape/0.01", "de", "lape", 0.01, ["en"] * 9 + ["de"], 11.0))
  for r in records[10:12]:  # de/ap/4: 2 loops (within the cost), so its valid share
    r["text"] = "色" * 60   # differs from its target share
  for r in records[20:23]:  # de/ap/20: 3 loops of 8, 37.5 points over the baseline's 0
    r["text"] = "色" * 60
  by_condition = metrics_lib.summarize_unconditional(records)
  assert by_condition["de/ap/4"]["valid_share"] == 0.8
  assert compare.best_settings(by_condition, config)["ap"]["de"]["strength"] == 4
  held = (_records("baseline", None, None, None, ["en"] * 10, 10.0, first=10)
          + _records("de/ap/4", "de", "ap", 4, ["de"] * 7 + ["en"] * 3, 12.0, first=10)
          + _records("de/lape/0.01", "de", "lape", 0.01, ["en"] * 10, 11.0, first=10))
  for r in held[17:20]:  # held-out de/ap/4: its 3 English samples loop, 30 points over
    r["text"] = "色" * 60
  translations = [{"dataset": "flores200", "target": "de", "kind": kind, "strength": s,
                   "condition": "x", "sample": i, "output": out, "reference": "Der Hund.",
                   "detected": det}
                  for kind, s, out, det in ((None, None, "The dog.", "en"),
                                            ("ap", 4, "Der Hund.", "de"),
                                            ("lape", 0.01, "The dog.", "en"))
                  for i in range(12)]
  summary = compare.summarize(by_condition, metrics_lib.summarize_unconditional(held), {},
                              config, translations)
  assert summary["best"]["ap"]["de"]["valid_share"] == 0.7  # held out, not the chosen 0.6
  # Held out, its broken share (30%) is over the limit (the baseline's 0 + 25 points),
  # though its median perplexity is as low as on the choosing half.
  assert summary["best"]["ap"]["de"]["broken_share"] == 0.3
  assert summary["best"]["ap"]["de"]["within_cost"] is False
  result = compare.CompareResult(summary, records, translations, {}, None, held)
  with open(compare.write_report(str(tmp_path), result, config, model_id="m")) as f:
    text = f.read()
  assert report_cells.check_comparison_report(text, summary, config.methods, config.languages) > 0
  assert "(over the cost)" in text
  assert "broken share at most 25 points above the baseline's 0%, on the choosing half" in text
  marks = set()
  _, rows = report_cells.table(text, "| method |")
  for m in config.methods:
    b = summary["best"][m]["de"]
    strength = report_cells.check_share(rows[m][1], b["valid_share"], b["valid_share_ci"],
                                        b["significant_valid"], style="compare")
    assert float(strength) == b["strength"]
  base = summary["held_out"]["baseline"]["by_language"]["de"]
  report_cells.check_share(rows["none"][1], base["valid_share"], base["valid_share_ci"],
                           style="compare")
  header, rows = report_cells.table(text, "| condition |")
  assert set(rows) == set(by_condition) - {"baseline"}
  for name, row in rows.items():
    c = summary["conditions"][name]
    for col, field in ((1, "target"), (2, "valid")):
      report_cells.check_share(row[col], c[f"{field}_share"], c[f"{field}_share_ci"],
                               c[f"significant_{field}"], style="compare")
      marks.add(c[f"significant_{field}"])
    assert abs(float(row[3].rstrip("%")) - 100 * c["degenerate_share"]) <= 0.5
    broken, dagger = row[4].removesuffix("†"), row[4].endswith("†")
    assert abs(float(broken.rstrip("%")) - 100 * c["broken_share"]) <= 0.5
    assert dagger == (name == "de/ap/20")  # over the cost on the choosing half
    assert float(row[5]) == pytest.approx(c["median_perplexity"], abs=0.0501)
  assert marks == {True, False, None}
  header, rows = report_cells.table(text, "| set |")
  t = summary["translation"]["flores200_en_de"]
  for role, cell in zip(("baseline", "ap", "lape"), rows["flores200_en_de"][1:]):
    share, bleu, chrf = cell.split(", BLEU ")[0], *cell.split(", BLEU ")[1].split(", chrF ")
    v = t[role]
    report_cells.check_share(share, v["valid_share"], v["valid_share_ci"],
                             v.get("significant_valid", False), style="compare")
    assert float(bleu) == pytest.approx(v["bleu"], abs=0.0501)
    assert float(chrf) == pytest.approx(v["chrf"], abs=0.0501)
  assert t["ap"]["significant_valid"] is True
