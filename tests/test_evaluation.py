"""Language ID on real sentences in six languages; BLEU and chrF."""

import json

import pytest
import sacrebleu

from lang_neuron_jax.data import corpora as data
from lang_neuron_jax.evaluation import measures as evaluation


def test_identify_language_on_shipped_sentences():
  langs, expected = [], []
  for lang in data.PAPER_LANGUAGES:
    with open(f"{data.SENSE_DIR}/{lang}.json") as f:
      positives = json.load(f)["sentences"]["positive"][:20]
    langs += positives
    expected += [lang] * len(positives)
  got = evaluation.identify_language(langs)
  accuracy = sum(g == e for g, e in zip(got, expected)) / len(expected)
  assert accuracy >= 0.95, accuracy


def test_empty_and_multiline_texts():
  assert evaluation.identify_language(["", "  \n ", "Bonjour tout le monde.\nComment ça va ?"]) \
      == ["", "", "fr"]
  shares = evaluation.language_shares(["Hallo Welt, wie geht es?", "", "Hello there, friend."],
                                      "de")
  assert shares == {"target_share": pytest.approx(1 / 3), "empty_share": pytest.approx(1 / 3)}


def test_translation_scores():
  ref = ["Der Hund läuft schnell über die Straße."]
  assert evaluation.translation_scores(ref, ref, "de")["bleu"] == pytest.approx(100.0)
  hyp = ["Der Hund läuft langsam über die Straße."]
  got = evaluation.translation_scores(hyp, ref, "de")
  assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyp, [ref]).score)
  assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyp, [ref]).score)
  assert 0 < got["chrf"] < 100  # a real partial match, not a degenerate 0 or 100
  # Chinese and Japanese: sacrebleu's public functions with the tokenizers we claim.
  for lang, tokenize, hyp, ref in (
      ("zh", "zh", ["我喜欢吃苹果", "今天天气很好"], ["我喜欢吃香蕉", "今天天气不错"]),
      ("ja", "char", ["私はりんごが好きです"], ["私はバナナが好きです"])):
    got = evaluation.translation_scores(hyp, ref, lang)
    assert got["bleu_tokenizer"] == tokenize
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyp, [ref], tokenize=tokenize).score)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyp, [ref]).score)
    assert 0 < got["bleu"] < 100
    # The default tokenizer would score Chinese otherwise: the choice matters here.
    assert got["bleu"] != pytest.approx(sacrebleu.corpus_bleu(hyp, [ref]).score)
  with pytest.raises(ValueError, match="references"):
    evaluation.translation_scores(["a"], ["a", "b"], "de")
