"""Token batches: tokenizing texts, right-padding them into ``[B, W]`` arrays, length buckets.

Every batch of the library is right-padded (the decoder's convention): the responses'
text batches, the sampler's prompts, the perplexity pass. Widths are rounded up to a
*bucket* so that few shapes compile; which buckets depends on the use:

* prompts (:data:`PROMPT_BUCKETS`): powers of two from 1 token, because the
  unconditional prompt is one BOS token, and every slot of padding costs prefill and
  lengthens each decode step's attention (docs/performance.md);
* analysis texts (:data:`RESPONSE_BUCKETS`): the batches are length-sorted, so fine
  buckets waste little padding, and they are few enough that compiling one function per
  bucket stays cheap.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from absl import logging
import numpy as np

from lang_neuron_jax.errors import UserError

PROMPT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
RESPONSE_BUCKETS = (16, 32, 48, 64, 96, 128, 192, 256)


def bucket_length(n: int, buckets: Sequence[int] = PROMPT_BUCKETS) -> int:
  """The smallest bucket that holds ``n`` tokens (multiples of the largest beyond it)."""
  for b in buckets:
    if n <= b:
      return b
  return -(-n // buckets[-1]) * buckets[-1]


def pad(token_lists: Sequence[Sequence[int]], pad_id: int, *, width: int | None = None,
        rows: int | None = None,
        buckets: Sequence[int] = PROMPT_BUCKETS) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads token lists into one array.

  Args:
    token_lists: R token lists.
    pad_id: The padding token.
    width: Columns (default: the bucket of the longest list).
    rows: Rows (default R); rows past the lists are all padding, of length 0.
    buckets: The buckets of the default width.

  Returns:
    ``(ids int32 [rows, width], lengths int32 [rows])``.
  """
  lengths = np.zeros(rows or len(token_lists), np.int32)
  lengths[:len(token_lists)] = [len(t) for t in token_lists]
  width = width or bucket_length(int(lengths.max()), buckets)
  if lengths.max() > width:
    raise UserError(f"A text of {lengths.max()} tokens does not fit width {width}.")
  ids = np.full((len(lengths), width), pad_id, np.int32)
  for row, tokens in enumerate(token_lists):
    ids[row, :len(tokens)] = tokens
  return ids, lengths


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int,
                width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """:func:`pad` for the sampler, whose prompts need at least one token each (e.g. BOS).

  Returns:
    ``(ids int32 [B, P], lengths int32 [B])``.
  """
  if not prompts or any(len(p) == 0 for p in prompts):
    raise UserError("Every prompt needs at least one token (e.g. BOS).")
  return pad(prompts, pad_id, width=width)


def plan_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
  """Row indices of each batch: texts sorted by length (stable), ``batch_size`` a batch."""
  order = np.argsort(np.asarray(lengths), kind="stable")
  return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@dataclasses.dataclass(frozen=True)
class TokenizedTexts:
  """Token ids of texts that fit the length limit.

  Attributes:
    tokens: Token id lists of the kept texts (BOS included, as the tokenizer adds it).
    kept: bool ``[M_all]``, which of the input texts were kept.
    lengths: int ``[M_all]``, every input text's token count.
    max_length: The limit used.
  """

  tokens: tuple[tuple[int, ...], ...]
  kept: np.ndarray
  lengths: np.ndarray
  max_length: int


def tokenize_texts(tokenizer, texts: Sequence[str], *, max_length: int = 256) -> TokenizedTexts:
  """Tokenizes texts (with the tokenizer's own BOS policy) and drops those over the limit.

  The reference drops texts longer than 256 tokens; the dropped count is logged so that
  callers can report it.
  """
  if max_length < 1:
    raise UserError(f"max_length must be positive, got {max_length}.")
  ids = tokenizer(list(texts)).input_ids
  lengths = np.array([len(t) for t in ids], np.int64)
  kept = lengths <= max_length
  if not kept.all():
    logging.warning("Dropping %d of %d texts longer than %d tokens (longest: %d).",
                    int((~kept).sum()), len(texts), max_length, int(lengths.max()))
  empty = np.flatnonzero(lengths == 0)
  if empty.size:
    raise UserError(f"Texts {empty[:5].tolist()} have no tokens; remove them from the corpus.")
  return TokenizedTexts(tuple(tuple(t) for t, k in zip(ids, kept) if k), kept, lengths, max_length)
