"""Corpus loading, deduplication and its errors; translation sets."""

import collections
import json

import numpy as np
import pytest

from lang_neuron_jax.data import corpora as data


def test_shipped_corpus_dedup_keeps_every_language_list():
  corpus = data.load_corpus()
  assert len(corpus.texts) == 5873
  for l, lang in enumerate(corpus.languages):
    with open(f"{data.SENSE_DIR}/{lang}.json") as f:
      s = json.load(f)["sentences"]
    expanded = collections.Counter()
    for m in np.flatnonzero(corpus.weights[l]):
      expanded[corpus.texts[m]] += int(corpus.weights[l, m])
    assert expanded == collections.Counter(s["positive"] + s["negative"])
    assert int((corpus.weights[l] * corpus.positive[l]).sum()) == 500
    assert int(corpus.weights[l].sum()) == 3000
  # Some negatives are no language's positive: they have no known language.
  assert (corpus.language_of_text >= 0).sum() == 2990


def write(tmp_path, lang, doc):
  (tmp_path / f"{lang}.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))


def test_user_corpus_with_other_languages(tmp_path):
  write(tmp_path, "xx", {"sentences": {"positive": ["a b", "c d"], "negative": ["e f"]}})
  write(tmp_path, "yy", {"sentences": {"positive": ["e f"], "negative": ["a b", "a b"]}})
  corpus = data.load_corpus(["xx", "yy"], corpus_dir=str(tmp_path))
  assert corpus.texts == ("a b", "c d", "e f")
  assert corpus.weights.tolist() == [[1, 1, 1], [2, 0, 1]]


@pytest.mark.parametrize("doc,match", [
    ("{not json", "not valid JSON"),
    ({"sentences": {"positive": ["a"]}}, "lacks sentences"),
    ({"sentences": {"positive": [], "negative": ["b"]}}, "non-empty list"),
    ({"sentences": {"positive": ["a", 3], "negative": ["b"]}}, "not non-empty strings"),
    ({"sentences": {"positive": ["a"], "negative": ["a"]}}, "both positive and negative"),
])
def test_malformed_files(tmp_path, doc, match):
  write(tmp_path, "xx", doc)
  write(tmp_path, "yy", {"sentences": {"positive": ["q"], "negative": ["r"]}})
  with pytest.raises(data.CorpusError, match=match):
    data.load_corpus(["xx", "yy"], corpus_dir=str(tmp_path))


def test_unknown_language_and_too_few():
  with pytest.raises(data.CorpusError, match="Unknown language 'xx'.*Available"):
    data.load_corpus(["en", "xx"])
  with pytest.raises(data.CorpusError, match="two or more"):
    data.load_corpus(["en"])


def test_filter_corpus():
  corpus = data.load_corpus(["en", "de"])
  keep = np.ones(len(corpus.texts), bool)
  keep[:3] = False
  assert len(data.filter_corpus(corpus, keep).texts) == len(corpus.texts) - 3
  only_negatives = ~corpus.positive[0]
  with pytest.raises(data.CorpusError, match="'en' has no positive"):
    data.filter_corpus(corpus, only_negatives)


def test_translation_sets():
  sets = data.available_translation_sets()
  assert ("flores200", "ja") in sets and ("wmt", "zh") in sets and len(sets) == 12
  pairs = data.load_translation_pairs("flores200", "de")
  assert len(pairs) == 100 and all(isinstance(p, str) for pair in pairs for p in pair)
  with pytest.raises(data.CorpusError, match="No translation set"):
    data.load_translation_pairs("wmt", "ja")
