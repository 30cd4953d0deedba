"""Corpora for finding neurons, and translation sets for the control experiments.

A corpus is one JSON file per language in the paper's format::

    {"concept": "de", "sentences": {"positive": [texts in the language],
                                    "negative": [texts in the other languages]}}

The six shipped files hold 18,000 texts but 5,873 distinct sentences: most of a file's
negatives are other files' positives. :func:`load_corpus` keeps each distinct sentence
once (so it runs through the model once) and each language's own list as counts, so a
language's scores are computed over exactly its own texts, repeats included.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import numpy as np

from lang_neuron_jax.errors import CorpusError, UserError

# The shipped corpora and translation sets sit beside this module (the data package).
DATA_DIR = os.path.dirname(os.path.abspath(__file__))
SENSE_DIR = os.path.join(DATA_DIR, "sense")
TRANSLATION_DIR = os.path.join(DATA_DIR, "translation")
PAPER_LANGUAGES = ("en", "de", "fr", "es", "zh", "ja")
# One short prompt per paper language, the same sentence in each (smoke tests, demos).
EXAMPLE_PROMPTS = {
    "en": "The history of the city begins",
    "de": "Die Geschichte der Stadt beginnt",
    "fr": "L'histoire de la ville commence",
    "es": "La historia de la ciudad comienza",
    "zh": "这座城市的历史始于",
    "ja": "この町の歴史は",
}


@dataclasses.dataclass(frozen=True)
class Corpus:
  """Distinct sentences and each language's list of them.

  Attributes:
    languages: L language codes.
    texts: M distinct sentences, in first-appearance order (languages in order,
      positives before negatives).
    weights: int32 ``[L, M]``: how often sentence m appears in language l's file.
    positive: bool ``[L, M]``: sentence m is among language l's positives.
  """

  languages: tuple[str, ...]
  texts: tuple[str, ...]
  weights: np.ndarray
  positive: np.ndarray

  @property
  def language_of_text(self) -> np.ndarray:
    """int ``[M]``: the language whose positives contain each text (-1 if none)."""
    has = self.positive & (self.weights > 0)
    return np.where(has.any(0), np.argmax(has, axis=0), -1)


def language_index(languages: Sequence[str], language: str, *, what: str = "scored") -> int:
  """Position of ``language`` in ``languages``, or a :class:`~lang_neuron_jax.errors.UserError` listing them (the
  one lookup every method and the scores share)."""
  if language not in languages:
    raise UserError(f"Unknown language {language!r}; {what} languages: {list(languages)}.")
  return list(languages).index(language)


def available_languages(corpus_dir: str = SENSE_DIR) -> list[str]:
  if not os.path.isdir(corpus_dir):
    raise CorpusError(f"Corpus directory {corpus_dir!r} does not exist.")
  return sorted(f[:-5] for f in os.listdir(corpus_dir) if f.endswith(".json"))


def _read_language(corpus_dir: str, lang: str) -> tuple[list[str], list[str]]:
  path = os.path.join(corpus_dir, f"{lang}.json")
  if not os.path.exists(path):
    raise CorpusError(f"Unknown language {lang!r}: no {path}. Available in {corpus_dir}: "
                      f"{available_languages(corpus_dir)}.")
  try:
    with open(path, encoding="utf-8") as f:
      doc = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CorpusError(f"{path} is not valid JSON ({e}); fix or re-create the file.") from e
  try:
    sentences = doc["sentences"]
    pos, neg = sentences["positive"], sentences["negative"]
  except (KeyError, TypeError) as e:
    raise CorpusError(f"{path} lacks sentences.positive / sentences.negative; expected "
                      '{"sentences": {"positive": [...], "negative": [...]}}.') from e
  for name, texts in (("positive", pos), ("negative", neg)):
    if not isinstance(texts, list) or not texts:
      raise CorpusError(f"{path}: sentences.{name} must be a non-empty list of texts.")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
      raise CorpusError(f"{path}: sentences.{name} items {bad[:5]} are not non-empty strings.")
  return pos, neg


def _read_tfds_language(name: str, lang: str, data_dir: str | None
                        ) -> tuple[list[str], list[str]]:
  """Positives and negatives of config ``lang`` of TFDS dataset ``name``, in file order."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    source = tfds.data_source(f"{name}/{lang}", split="train", data_dir=data_dir,
                              download=False)
  except Exception as e:  # tfds raises several types for missing datasets and configs.
    raise CorpusError(
        f"Cannot read TFDS dataset {name}/{lang} from {data_dir or 'the default data dir'} "
        f"({type(e).__name__}: {e}). Prepare it first (for the shipped corpora: "
        "lang_neuron_jax.data.tfds.prepare(data_dir)), or check the language code.") from e
  records = [source[i] for i in range(len(source))]  # key-hash order; "index" restores it
  missing = {"text", "positive", "index"} - set(records[0] if records else ())
  if not records or missing:
    raise CorpusError(f"TFDS dataset {name}/{lang} is empty or lacks features {sorted(missing)}; "
                      "expected text, positive and index (see tfds_datasets.LangNeuronSense).")
  records.sort(key=lambda r: int(r["index"]))
  text = lambda r: r["text"].decode("utf-8") if isinstance(r["text"], bytes) else str(r["text"])
  pos = [text(r) for r in records if r["positive"]]
  neg = [text(r) for r in records if not r["positive"]]
  if not pos or not neg:
    raise CorpusError(f"TFDS dataset {name}/{lang} has no {'positive' if not pos else 'negative'}"
                      " texts.")
  return pos, neg


def load_corpus(languages: Sequence[str] = PAPER_LANGUAGES, *,
                corpus_dir: str | None = None, tfds_name: str | None = None,
                tfds_data_dir: str | None = None, positives_per_language: int | None = None
                ) -> Corpus:
  """Reads each language's list of texts and deduplicates the sentences.

  Args:
    languages: Two or more language codes; ``{corpus_dir}/{code}.json`` must exist (or
      the TFDS config ``{tfds_name}/{code}``).
    corpus_dir: Directory of the JSON files (default: the paper's shipped corpora).
    tfds_name: Read a TensorFlow Datasets dataset instead, one config per language with
      the features of :class:`~lang_neuron_jax.data.tfds.LangNeuronSense` (``text``,
      ``positive``, ``index``), e.g. ``"lang_neuron_sense"`` once prepared with
      :func:`~lang_neuron_jax.data.tfds.prepare`. Read with ``tfds.data_source``
      (array_record files; TensorFlow is not needed).
    tfds_data_dir: The TFDS data directory (default: TFDS's own default).
    positives_per_language: Keep only each file's first this many positives, and as
      many of its negatives as keeps their proportion, evenly spaced through the list
      (for quick runs); None keeps everything.

  Raises:
    CorpusError: naming the file and what to fix.
  """
  if corpus_dir and tfds_name:
    raise CorpusError("Give corpus_dir or tfds_name, not both.")
  corpus_dir = corpus_dir or SENSE_DIR
  languages = tuple(languages)
  if len(languages) < 2 or len(set(languages)) != len(languages):
    raise CorpusError(f"Give two or more distinct languages, got {list(languages)}.")
  index: dict[str, int] = {}
  lists = []
  for lang in languages:
    if tfds_name:
      pos, neg = _read_tfds_language(tfds_name, lang, tfds_data_dir)
    else:
      pos, neg = _read_language(corpus_dir, lang)
    if positives_per_language is not None:
      if positives_per_language < 1:
        raise CorpusError(f"positives_per_language must be positive, got {positives_per_language}.")
      keep_neg = min(len(neg), max(1, round(positives_per_language * len(neg) / len(pos))))
      # Negatives evenly spaced through the list: the files group them by language, so
      # a prefix would hold only one other language.
      pos = pos[:positives_per_language]
      neg = [neg[i * len(neg) // keep_neg] for i in range(keep_neg)]
    for t in pos + neg:
      index.setdefault(t, len(index))
    lists.append((pos, neg))
  weights = np.zeros((len(languages), len(index)), np.int32)
  positive = np.zeros((len(languages), len(index)), bool)
  for l, (pos, neg) in enumerate(lists):
    pos_ids = np.array([index[t] for t in pos])
    neg_ids = np.array([index[t] for t in neg])
    clash = np.intersect1d(pos_ids, neg_ids)
    if clash.size:
      texts = list(index)
      raise CorpusError(f"Language {languages[l]!r}: {clash.size} texts are both positive and "
                        f"negative (e.g. {texts[clash[0]][:60]!r}); remove them from one list.")
    np.add.at(weights[l], pos_ids, 1)
    np.add.at(weights[l], neg_ids, 1)
    positive[l, pos_ids] = True
  return Corpus(languages, tuple(index), weights, positive)


def filter_corpus(corpus: Corpus, keep: np.ndarray) -> Corpus:
  """Drops texts (e.g. over the length limit); ``keep`` is bool ``[M]``."""
  keep = np.asarray(keep, bool)
  out = Corpus(corpus.languages, tuple(t for t, k in zip(corpus.texts, keep) if k),
               corpus.weights[:, keep], corpus.positive[:, keep])
  for l, lang in enumerate(out.languages):
    w = out.weights[l]
    if not (w * out.positive[l]).any() or not (w * ~out.positive[l]).any():
      raise CorpusError(f"After dropping long texts, language {lang!r} has no "
                        f"{'positive' if not (w * out.positive[l]).any() else 'negative'} "
                        "texts left; raise the length limit or fix the corpus.")
  return out


def available_translation_sets(data_dir: str = TRANSLATION_DIR) -> list[tuple[str, str]]:
  """``(dataset, target language)`` pairs of the shipped ``{dataset}_en_{xx}.jsonl`` files."""
  out = []
  for name in sorted(os.listdir(data_dir)):
    if name.endswith(".jsonl") and "_en_" in name:
      dataset, lang = name[:-6].rsplit("_en_", 1)
      out.append((dataset, lang))
  return out


def load_translation_pairs(dataset: str, target_language: str, *,
                           data_dir: str | None = None) -> list[tuple[str, str]]:
  """``(English source, reference)`` pairs of one translation set."""
  data_dir = data_dir or TRANSLATION_DIR
  path = os.path.join(data_dir, f"{dataset}_en_{target_language}.jsonl")
  if not os.path.exists(path):
    raise CorpusError(f"No translation set {path}; available: "
                      f"{available_translation_sets(data_dir)}.")
  pairs = []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        doc = json.loads(line)
        pairs.append((doc["en"], doc[target_language]))
      except (json.JSONDecodeError, KeyError) as e:
        raise CorpusError(f"{path}:{n}: expected {{\"en\": ..., \"{target_language}\": ...}}"
                          f" ({e}).") from e
  if not pairs:
    raise CorpusError(f"{path} holds no pairs.")
  return pairs
