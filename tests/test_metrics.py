"""Degeneration, incoherence, valid shares, the fluency cost and metrics.json's intervals
and paired tests."""

import numpy as np
import pytest
import sacrebleu

from lang_neuron_jax.data import corpora as data
from lang_neuron_jax.errors import ConfigError, StageMismatchError, UserError
from lang_neuron_jax.evaluation import cost, measures as evaluation, metrics, uncertainty

# A sample with every neuron fixed (README's default run): German by language ID, not a
# loop, but its own context hardly makes its tokens likelier (coherence about 1 nat per
# token under the unintervened model; natural text 8-15).
SALAD = "und in an St in und am der Lim im in z und der G in in der für jüng B im la zu"


@pytest.mark.parametrize("text", ["色" * 64, "基本" * 32, "、" * 40, " パー" + "\n" * 60,
                                  "Ich bin müde. " * 8, "the the the the the the the the"])
def test_loops_are_degenerate(text):
  assert evaluation.is_degenerate(text)


def test_natural_text_is_not_degenerate():
  import json

  for lang in data.PAPER_LANGUAGES:
    with open(f"{data.SENSE_DIR}/{lang}.json") as f:
      sentences = json.load(f)["sentences"]["positive"][:200]
    # Sample-sized windows: about 64 tokens of consecutive sentences.
    width = 80 if lang in ("zh", "ja") else 250
    text = " ".join(sentences)
    windows = [text[i:i + width] for i in range(0, len(text) - width, width)]
    flagged = [w for w in windows if evaluation.is_degenerate(w)]
    assert not flagged, (lang, flagged[:2])
  assert not evaluation.is_degenerate("Hallo")  # too short to repeat itself


def test_degeneration_boundary():
  """Strictly below 0.5 is degenerate; a text too short for two 4-grams never is; a
  sentence said twice is not (one repeat is not a loop), three times is."""
  assert evaluation.distinct_ngram_ratio("aaaaa") == 0.5  # two 4-grams, one distinct
  assert not evaluation.is_degenerate("aaaaa")  # exactly at the threshold: not below it
  assert evaluation.is_degenerate("aaaaaa")  # 1 of 3
  for short in ("", "a", "aaaa"):  # fewer than two 4-grams: ratio 1.0
    assert evaluation.distinct_ngram_ratio(short) == 1.0 and not evaluation.is_degenerate(short)
  sentence = "Die Stadt liegt am Fluss und hat viele alte Brücken aus Stein. "
  assert evaluation.distinct_ngram_ratio(sentence * 2) == pytest.approx(0.512, abs=1e-3)
  assert not evaluation.is_degenerate(sentence * 2)
  assert evaluation.is_degenerate(sentence * 3)


def test_degeneration_calibration_as_quoted():
  """benchmarks/degeneration.py gives the figures measures.py quotes, and natural text
  is never flagged."""
  import importlib.util
  import os

  path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks",
                      "degeneration.py")
  spec = importlib.util.spec_from_file_location("degeneration", path)
  calibration = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(calibration)
  for sentences, windows, p1 in ((200, 681, (0.79, 0.88)), (None, 1687, (0.80, 0.90))):
    result = calibration.calibration(sentences)
    assert sum(r["windows"] for r in result.values()) == windows
    assert round(min(r["lowest"] for r in result.values()), 2) == 0.71
    assert (round(min(r["p1"] for r in result.values()), 2),
            round(max(r["p1"] for r in result.values()), 2)) == p1
    assert sum(r["flagged"] for r in result.values()) == 0
  with open(os.path.join(os.path.dirname(path), "..", "lang_neuron_jax", "evaluation",
                         "measures.py")) as f:
    comment = f.read()
  for quoted in ("681 windows, lowest ratio 0.71, 1st percentile 0.79-0.88",
                 "1,687 windows, lowest 0.71, 1st percentile 0.80-0.90", "0.512"):
    assert quoted in comment, quoted


def test_valid_target_needs_language_no_loop_and_no_salad():
  good = "Die Stadt liegt am Fluss und hat viele Brücken."
  assert evaluation.is_valid_target("de", good, "de", coherence=9.0)
  assert not evaluation.is_valid_target("zh", "色" * 64, "zh", coherence=12.0)
  assert not evaluation.is_valid_target("fr", good, "de", coherence=9.0)
  assert not evaluation.is_degenerate(SALAD)  # the loop rule passes it...
  assert not evaluation.is_valid_target("de", SALAD, "de", coherence=0.8)  # ...this does not
  assert evaluation.is_valid_target("de", good, "de", coherence=None)  # a translation's line


def test_incoherence_boundary():
  """Strictly below the language's threshold is incoherent (English and languages
  outside the six: the lowest); no coherence is not judged; reading as text needs a
  non-empty text that is neither a loop nor salad."""
  assert evaluation.INCOHERENT_BELOW == {"en": 5.0, "de": 8.0, "fr": 8.0, "es": 8.0,
                                         "zh": 8.0, "ja": 8.0}  # as measures.py derives them
  for lang, t in (("de", 8.0), ("en", 5.0), ("it", 5.0), ("", 5.0)):
    assert evaluation.incoherent_below(lang) == t
    assert not evaluation.is_incoherent(t, lang)
    assert evaluation.is_incoherent(np.nextafter(t, -np.inf), lang)
  assert evaluation.is_incoherent(7.3, "es") and not evaluation.is_incoherent(7.3, "en")
  assert not evaluation.is_incoherent(None, "de")
  assert evaluation.reads_as_text("Die Stadt liegt am Fluss.", 9.0, "de")
  assert not evaluation.reads_as_text("Die Stadt liegt am Fluss.", 6.0, "de")
  assert not evaluation.reads_as_text(" \n ", None, "")
  assert not evaluation.reads_as_text("色" * 64, 12.0, "zh")


def _records(condition, language, texts, detected, kind="both", n=2, coherence=10.0):
  return [{"condition": condition, "language": language, "kind": kind if language else None,
           "n": n if language else None, "sample": i, "text": t, "detected": d,
           "perplexity": float(i + 1), "coherence": coherence}
          for i, (t, d) in enumerate(zip(texts, detected))]


def test_every_neuron_fixed_salad_is_never_valid():
  """Issue 30's case: with every neuron fixed, samples are German by language ID and no
  loop, but word salad; none counts as valid, all are incoherent and broken, and the
  setting is over the fluency cost, while fluent German is valid and within it."""
  good = "Die Stadt liegt am Fluss und hat viele alte Brücken aus Stein."
  base = _records("baseline", None, [good] * 10, ["en"] * 10)
  salad = _records("de/both/124416", "de", [SALAD] * 10, ["de"] * 10, n=124416,
                   coherence=1.0)
  fluent = _records("de/both/200", "de", [good] * 10, ["de"] * 10, n=200)
  out = metrics.summarize_unconditional(base + salad + fluent)
  m = out["de/both/124416"]
  assert m["target_share"] == 1.0 and m["degenerate_share"] == 0.0
  assert m["valid_share"] == 0.0 and m["incoherent_share"] == 1.0 and m["broken_share"] == 1.0
  assert m["incoherent_share_ci"] == pytest.approx(uncertainty.wilson_interval(10, 10))
  assert m["within_cost"] is False and not m["significant_valid"]
  f = out["de/both/200"]
  assert f["valid_share"] == 1.0 and f["incoherent_share"] == 0.0 and f["within_cost"] is True
  assert out["baseline"]["within_cost"] is None and out["baseline"]["broken_share"] == 0.0


def test_thresholds_follow_the_model_that_scored(monkeypatch):
  """A record is judged by the calibration of its ``judge`` (the model that scored it),
  read at judging time; records without one, and models not calibrated, get the embedded
  model's thresholds, and metrics.json's definitions say which applied."""
  monkeypatch.setitem(evaluation.INCOHERENT_BELOW_BY_MODEL, "lenient-model",
                      {"en": 2.0, "de": 4.0})
  good = "Die Stadt liegt am Fluss und hat viele alte Brücken aus Stein."
  base = _records("baseline", None, [good] * 4, ["en"] * 4)
  steered = _records("de/both/2", "de", [good] * 4, ["de"] * 4, coherence=6.0)
  old = metrics.summarize(base + steered, [])  # no judge: the embedded model's de 8
  assert old["unconditional"]["de/both/2"]["incoherent_share"] == 1.0
  assert old["definitions"]["incoherent_below"] == evaluation.INCOHERENT_BELOW
  assert old["definitions"]["incoherence_calibration"] == "calibrated for gemma3-270m"
  for r in base + steered:
    r["judge"] = "lenient-model"
  new = metrics.summarize(base + steered, [])
  assert new["unconditional"]["de/both/2"]["valid_share"] == 1.0
  assert new["unconditional"]["de/both/2"]["incoherent_share"] == 0.0
  assert new["definitions"]["incoherent_below"] == {"en": 2.0, "de": 4.0}
  assert new["definitions"]["incoherence_calibration"] == "calibrated for lenient-model"
  assert evaluation.record_threshold({"detected": "it", "judge": "lenient-model"}) == 2.0
  for r in base + steered:
    r["judge"] = "some-checkpoint"
  other = metrics.summarize(base + steered, [])
  assert other["unconditional"]["de/both/2"]["incoherent_share"] == 1.0
  assert "not calibrated for some-checkpoint" in other["definitions"]["incoherence_calibration"]
  assert evaluation.incoherence_thresholds("some-checkpoint") == (evaluation.INCOHERENT_BELOW,
                                                                 False)


def test_qwen_thresholds_follow_the_rule_from_its_calibration():
  """1 nat below the lowest natural window of each language, rounded down, from
  benchmarks/incoherence.py's figures for Qwen2.5-Coder-0.5B (measures.py's comment)."""
  import math

  lowest = {"en": 5.40, "de": 6.43, "fr": 6.21, "es": 7.00, "zh": 3.99, "ja": 5.93}
  table, calibrated = evaluation.incoherence_thresholds("qwen2.5-coder-0.5b")
  assert calibrated and table == {lang: float(math.floor(x - 1)) for lang, x in lowest.items()}
  assert evaluation.incoherent_below("it", "qwen2.5-coder-0.5b") == 2.0  # the lowest


def test_records_without_coherence_are_refused():
  """Generated records (with tokens) evaluated before every sample was scored would pass
  the incoherence rule unjudged; an empty sample (coherence None) is fine."""
  rows = _records("baseline", None, ["Hallo Welt, wie geht es?", ""], ["de", ""])
  rows[0]["tokens"], rows[1]["tokens"], rows[1]["coherence"] = [5, 6, 7], [], None
  assert metrics.summarize_unconditional(rows)["baseline"]["broken_share"] == 0.5  # empty
  del rows[0]["coherence"]
  with pytest.raises(StageMismatchError, match="no coherence"):
    metrics.summarize_unconditional(rows)


def test_fluency_cost_counts_broken_samples():
  """Within the cost at most MAX_EXTRA_BROKEN above the baseline's broken share (the bound
  itself counts), whatever the median perplexity; bad bounds and old entries refused."""
  base = {"broken_share": 2 / 24}
  assert cost.within_cost({"broken_share": 2 / 24 + 6 / 24}, base)  # 25 points: at the bound
  assert not cost.within_cost({"broken_share": 2 / 24 + 7 / 24}, base)
  # AP de at N = 20,000 in the comparison: 88% degenerate at a median perplexity of 7.6.
  assert not cost.within_cost({"broken_share": 0.88, "median_perplexity": 7.6},
                              {"broken_share": 0.0, "median_perplexity": 6.8})
  assert cost.within_cost({"broken_share": 0.5}, base, max_extra_broken=0.5)
  for bad in (-0.1, 1.5, float("nan")):
    with pytest.raises(ConfigError, match="max_extra_broken"):
      cost.within_cost({"broken_share": 0.1}, base, max_extra_broken=bad)
  with pytest.raises(UserError, match="broken_share"):
    cost.within_cost({"median_perplexity": 7.6}, base)


def test_summarize_unconditional_shares_intervals_and_paired_test():
  good = "Die Stadt liegt am Fluss und hat viele alte Brücken aus Stein."
  base = _records("baseline", None, [good] * 10, ["en"] * 10)
  steered = _records("de/both/2", "de", [good] * 6 + ["色" * 60] * 4, ["de"] * 6 + ["de"] * 4)
  out = metrics.summarize_unconditional(base + steered)
  m = out["de/both/2"]
  assert m["target_share"] == 1.0 and m["valid_share"] == 0.6
  assert m["target_share_ci"] == pytest.approx(uncertainty.wilson_interval(10, 10))
  assert m["valid_share_ci"] == pytest.approx(uncertainty.wilson_interval(6, 10))
  assert m["degenerate_share"] == 0.4 and m["broken_share"] == 0.4
  assert m["degenerate_share_ci"] == pytest.approx(uncertainty.wilson_interval(4, 10))
  assert m["incoherent_share"] == 0.0 and m["within_cost"] is False  # 40 points over
  # 10 of 10 pairs gained German: p = 2 / 2^10; the only comparison, so Holm keeps it.
  assert m["p_target"] == pytest.approx(2 / 1024) and m["significant_target"]
  assert m["p_valid"] == pytest.approx(2 / 64) and m["significant_valid"]
  assert m["median_perplexity"] == 5.5
  lo, hi = m["median_perplexity_ci"]
  assert lo <= 5.5 <= hi
  b = out["baseline"]
  assert b["by_language"]["de"]["target_share"] == 0.0
  assert b["by_language"]["de"]["target_share_ci"][1] == pytest.approx(0.2775, abs=1e-4)


def test_paired_test_uses_the_same_sample_indices():
  base = _records("baseline", None, ["x"] * 6, ["de", "de", "en", "en", "en", "en"])
  steered = _records("de/both/2", "de", ["x"] * 6, ["en", "en", "de", "de", "de", "de"])
  # Records arrive in any order; pairs are matched by sample index: 4 gained, 2 lost.
  shuffled = [steered[i] for i in (3, 0, 5, 1, 4, 2)] + base[::-1]
  m = metrics.summarize_unconditional(shuffled)["de/both/2"]
  assert m["target_share"] == pytest.approx(4 / 6)
  assert m["p_target"] == pytest.approx(2 * (1 + 6 + 15) / 64)


def test_summarize_translation_scores_and_intervals():
  refs = ["Der Hund läuft schnell über die Straße.", "Die Katze schläft auf dem Sofa.",
          "Wir gehen morgen ins Kino.", "Das Wetter ist heute schön."]
  rows = []
  for cond, outs, det in (("baseline", ["The dog runs.", "The cat sleeps.", "We go.", "Nice."],
                           ["en"] * 4),
                          ("de/both/2", refs[:3] + ["Das Wetter"], ["de"] * 4)):
    rows += [{"dataset": "wmt", "target": "de", "condition": cond, "sample": i, "output": o,
              "reference": r, "detected": d} for i, (o, r, d) in enumerate(zip(outs, refs, det))]
  t = metrics.summarize_translation(rows)["wmt_en_de"]
  outputs = [r["output"] for r in rows[4:]]
  assert t["intervention"]["bleu"] == pytest.approx(sacrebleu.corpus_bleu(outputs, [refs]).score)
  assert t["intervention"]["chrf"] == pytest.approx(sacrebleu.corpus_chrf(outputs, [refs]).score)
  assert 0 < t["intervention"]["bleu"] < 100
  for c in t.values():
    lo, hi = c["bleu_ci"]
    assert lo <= c["bleu"] <= hi
  assert t["baseline"]["target_share"] == 0 and t["intervention"]["target_share"] == 1
  assert t["intervention"]["p_target"] == pytest.approx(2 / 16)
  assert "p_target" not in t["baseline"]


def test_translation_statistics_sum_to_corpus_scores():
  hyps = ["我喜欢吃苹果", "今天天气很好", "他在看书"]
  refs = ["我喜欢吃香蕉", "今天天气不错", "他在读书"]
  stats = evaluation.translation_statistics(hyps, refs, "zh")

  def sacre(h, r):  # sacrebleu's public corpus functions, not our statistics path
    return {"bleu": sacrebleu.corpus_bleu(h, [r], tokenize="zh").score,
            "chrf": sacrebleu.corpus_chrf(h, [r]).score}

  assert evaluation.scores_from_statistics(stats, "zh") == pytest.approx(sacre(hyps, refs))
  # A bootstrap resample (rows with repeats) scores as that corpus would.
  one = evaluation.scores_from_statistics(stats, "zh", np.array([1, 1, 2]))
  assert one == pytest.approx(sacre([hyps[1], hyps[1], hyps[2]], [refs[1], refs[1], refs[2]]))
  assert 0 < one["bleu"] < 100


def _mixed_records():
  """A baseline and three German conditions: one significant, one not, one whose
  samples do not pair with the baseline's (8 of its 10 indices)."""
  good = "Die Stadt liegt am Fluss und hat viele alte Brücken aus Stein."
  base = _records("baseline", None, [good] * 10, ["en"] * 10)
  gained = _records("de/both/2", "de", [good] * 10, ["de"] * 10)
  same = _records("de/random/2", "de", [good] * 10, ["en"] * 9 + ["de"], kind="random")
  short = _records("de/both/20", "de", [good] * 8, ["de"] * 8, n=20)
  for r in same:  # Each condition its own median perplexity.
    r["perplexity"] *= 3
  for r in short[:4]:  # Half salad: incoherent, so over the fluency cost.
    r["coherence"] = 4.0
  return base + gained + same + short


def test_unpaired_condition_records_no_test():
  """A condition whose sample indices differ from the baseline's gets None test fields
  (not False), and the Holm adjustment counts only the tests that ran."""
  out = metrics.summarize_unconditional(_mixed_records())
  short = out["de/both/20"]
  assert short["target_share"] == 1.0 and short["samples"] == 8
  for name in ("target", "valid"):
    assert short[f"p_{name}"] is None and short[f"significant_{name}"] is None
    assert short[f"p_{name}_holm"] is None
  # Two tests ran: the smaller p doubles, the larger keeps its value (Holm over 2).
  assert out["de/both/2"]["p_target"] == pytest.approx(2 / 1024)
  assert out["de/both/2"]["p_target_holm"] == pytest.approx(4 / 1024)
  assert out["de/both/2"]["significant_target"] is True
  assert out["de/random/2"]["p_target_holm"] == 1.0
  assert out["de/random/2"]["significant_target"] is False


def test_unpaired_translation_records_no_test():
  """A set's intervention without the baseline's sources (here: one source missing)."""
  rows = []
  for cond, n in (("baseline", 4), ("de/both/2", 3)):
    rows += [{"dataset": "wmt", "target": "de", "condition": cond, "sample": i,
              "output": "Das Wetter ist schön.", "reference": "Das Wetter ist heute schön.",
              "detected": "de"} for i in range(n)]
  t = metrics.summarize_translation(rows)["wmt_en_de"]
  assert t["intervention"]["significant_valid"] is None and t["intervention"]["p_target"] is None
  assert "significant_valid" not in t["baseline"]


def test_report_cells_match_the_metrics():
  """Every cell of report.md's share, perplexity and translation tables, parsed back,
  equals metrics.json's value, interval and test mark ("*", nothing, "(test n/a)")."""
  from lang_neuron_jax.report import study as report
  from tests import report_cells

  uncond = metrics.summarize_unconditional(_mixed_records())
  good = "Die Stadt liegt am Fluss."
  trans = []
  for cond, det in (("baseline", "en"), ("de/both/2", "de")):
    trans += [{"dataset": "wmt", "target": "de", "condition": cond, "sample": i,
               "output": good if det == "de" else "The city.", "reference": good,
               "detected": det} for i in range(12)]
  m = {"unconditional": uncond, "translation": metrics.summarize_translation(trans)}
  text = "\n".join(report._control_section({"metrics": m, "counts": {}, "examples": []}, {}))
  columns = {"N=2": ("both", 2), "N=20": ("both", 20), "random 2": ("random", 2)}
  by_key = {(c["kind"], c["n"]): c for c in uncond.values() if c["language"] == "de"}
  marks = set()
  for field, start in (("target", "| target |"), ("valid", "| target |")):
    # The target table comes first, the valid table second: read the right one.
    section = text[text.index("Share of **valid**"):] if field == "valid" else text
    header, rows = report_cells.table(section, start)
    row = rows["de"]
    base = uncond["baseline"]["by_language"]["de"]
    report_cells.check_share(row[1], base[f"{field}_share"], base[f"{field}_share_ci"])
    assert set(header[2:]) == set(columns)
    for label, cell in zip(header[2:], row[2:]):
      c = by_key[columns[label]]
      report_cells.check_share(cell, c[f"{field}_share"], c[f"{field}_share_ci"],
                               c[f"significant_{field}"])
      marks.add(c[f"significant_{field}"])
  assert marks == {True, False, None}  # every kind of mark was read
  header, rows = report_cells.table(text[text.index("Median perplexity"):], "| target |")
  for label, cell in zip(header[2:], rows["de"][2:]):
    c = by_key[columns[label]]
    report_cells.check_score(cell, c["median_perplexity"], c["median_perplexity_ci"])
  # Incoherent and broken shares with their intervals; † exactly where the cost rule says.
  over = set()
  for field in ("incoherent", "broken"):
    header, rows = report_cells.table(text[text.index(f"Share of **{field}**"):], "| target |")
    for label, cell in zip(header[2:], rows["de"][2:]):
      c = by_key[columns[label]]
      shown = cell.removesuffix(" †")
      report_cells.check_share(shown, c[f"{field}_share"], c[f"{field}_share_ci"])
      if field == "broken":
        assert (shown != cell) == (not c["within_cost"]), (label, cell)
        over.add(shown != cell)
  assert over == {True, False}
  _, rows = report_cells.table(text, "| target | N |")
  assert rows["de"][1] == "N=2"  # the only N of the sweep within the cost (N=20: half salad)
  report_cells.check_share(rows["de"][2], by_key[("both", 2)]["valid_share"],
                           by_key[("both", 2)]["valid_share_ci"], True)
  header, rows = report_cells.table(text, "| set |")
  t = m["translation"]["wmt_en_de"]
  cells = dict(zip(header, rows["wmt_en_de"]))
  for col, role, metric in (("BLEU", "baseline", "bleu"), ("chrF (intervention)",
                                                           "intervention", "chrf")):
    report_cells.check_score(cells[col], t[role][metric], t[role][f"{metric}_ci"])
  i = t["intervention"]
  report_cells.check_share(cells["valid (intervention)"], i["valid_share"], i["valid_share_ci"],
                           i["significant_valid"])
  assert i["significant_valid"] is True
