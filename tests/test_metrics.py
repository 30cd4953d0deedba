"""Degeneration, valid shares and metrics.json's intervals and paired tests."""

import numpy as np
import pytest

from lang_neuron_jax.data import corpora as data
from lang_neuron_jax.evaluation import measures as evaluation, metrics, uncertainty


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


def test_valid_target_needs_language_and_no_loop():
  assert evaluation.is_valid_target("de", "Die Stadt liegt am Fluss und hat viele Brücken.", "de")
  assert not evaluation.is_valid_target("zh", "色" * 64, "zh")
  assert not evaluation.is_valid_target("fr", "Die Stadt liegt am Fluss.", "de")


def _records(condition, language, texts, detected, kind="both", n=2):
  return [{"condition": condition, "language": language, "kind": kind if language else None,
           "n": n if language else None, "sample": i, "text": t, "detected": d,
           "perplexity": float(i + 1)} for i, (t, d) in enumerate(zip(texts, detected))]


def test_summarize_unconditional_shares_intervals_and_paired_test():
  good = "Die Stadt liegt am Fluss und hat viele alte Brücken aus Stein."
  base = _records("baseline", None, [good] * 10, ["en"] * 10)
  steered = _records("de/both/2", "de", [good] * 6 + ["色" * 60] * 4, ["de"] * 6 + ["de"] * 4)
  out = metrics.summarize_unconditional(base + steered)
  m = out["de/both/2"]
  assert m["target_share"] == 1.0 and m["valid_share"] == 0.6
  assert m["target_share_ci"] == pytest.approx(uncertainty.wilson_interval(10, 10))
  assert m["valid_share_ci"] == pytest.approx(uncertainty.wilson_interval(6, 10))
  assert m["degenerate_share"] == 0.4
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
  direct = evaluation.translation_scores([r["output"] for r in rows[4:]], refs, "de")
  assert t["intervention"]["bleu"] == pytest.approx(direct["bleu"])
  assert t["intervention"]["chrf"] == pytest.approx(direct["chrf"])
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
  direct = evaluation.translation_scores(hyps, refs, "zh")
  assert evaluation.scores_from_statistics(stats, "zh") == pytest.approx(
      {"bleu": direct["bleu"], "chrf": direct["chrf"]})
  one = evaluation.scores_from_statistics(stats, "zh", np.array([1, 1]))
  assert one == pytest.approx({k: v for k, v in evaluation.translation_scores(
      [hyps[1]] * 2, [refs[1]] * 2, "zh").items() if k != "bleu_tokenizer"})
