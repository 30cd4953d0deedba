"""Scoring continuations under the unintervened model: perplexity and coherence.

For a continuation ``c_1..c_n`` of a prompt ``P``, one forward pass over ``P + c`` gives,
at every continuation position, the model's negative log-likelihood of the token in its
context, ``NLL_i = -log p(c_i | P, c_<i)``, and (from the distribution after the prompt,
the same for every position) the token's surprise without the continuation's own
context, ``PRIOR_i = -log p(c_i | P)``. From these:

* **perplexity** ``exp(mean_i NLL_i)``, as the reports have always shown it;
* **coherence** ``mean_{i>=2} (PRIOR_i - NLL_i)``, in nats per token: how much more likely
  the text's own earlier tokens make each token than the prompt alone does, i.e.
  ``log(context-free perplexity / perplexity)`` over tokens 2..n (the first token has no
  context of its own, so it is left out; fewer than two tokens: NaN). In natural text the
  context explains each token (a name is rare, but so is it without context); in word
  salad it does not: its tokens are frequent words, likely without context and not more
  likely with it. Perplexity alone cannot tell the two apart on a small model, whose
  perplexity on hard natural text reaches that of salad (docs/evaluation.md).

Both come from the one pass, at the cost of one gather per row.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from lang_neuron_jax.generation import batching
from lang_neuron_jax.models.decoder import Decoder, output_logits


@dataclasses.dataclass(frozen=True)
class Scores:
  """Per continuation, float ``[R]`` each: ``perplexity`` (NaN when empty) and
  ``coherence`` in nats per token (NaN with fewer than two tokens)."""

  perplexity: np.ndarray
  coherence: np.ndarray


def score(lm, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]], *,
          batch_size: int = 16, progress: bool = False) -> Scores:
  """Perplexity and coherence of each continuation given its prompt, under the
  unintervened model (``progress``: a bar over the rows). Rows of similar length are
  batched together; a row's scores do not depend on its batch."""
  ppl = np.full(len(prompts), np.nan)
  coherence = np.full(len(prompts), np.nan)
  rows = [i for i, c in enumerate(continuations) if len(c)]
  total = lambda i: len(prompts[i]) + len(continuations[i])
  rows.sort(key=total)  # Similar lengths together.
  longest = max((total(i) for i in rows), default=0)
  bar = tqdm(total=len(rows), desc="perplexity", unit="text", disable=not progress)
  for start in range(0, len(rows), batch_size):
    chunk = rows[start:start + batch_size]
    full = [list(prompts[i]) + list(continuations[i]) for i in chunk]
    full += [full[-1]] * (batch_size - len(chunk))
    starts = [len(prompts[i]) for i in chunk]
    starts += [starts[-1]] * (batch_size - len(chunk))
    ids, _ = batching.pad(full, lm.config.pad_token_id,
                          width=width(max(len(f) for f in full), longest))
    nll, prior = (np.asarray(x) for x in _next_token_nll(
        lm.config, lm.params, jnp.asarray(ids), jnp.asarray(starts, jnp.int32)))  # [B, T-1]
    for r, i in enumerate(chunk):
      p, c = len(prompts[i]), len(continuations[i])
      ppl[i] = float(np.exp(nll[r, p - 1:p - 1 + c].mean()))
      if c >= 2:
        coherence[i] = float((prior[r, p:p - 1 + c] - nll[r, p:p - 1 + c]).mean())
    bar.update(len(chunk))
  bar.close()
  return Scores(ppl, coherence)


def width(n: int, longest: int) -> int:
  """Columns of a batch whose longest row has ``n`` tokens, when the longest row of the
  call has ``longest``.

  Multiples of 16 keep the compiled shapes few (not the sampler's power-of-two prompt
  buckets: a 65-token text would pay for 128 positions of a 262k-entry head), but never
  past ``longest``: most unconditional samples run to the token limit, so most batches
  are exactly ``longest`` wide (1 + 64 = 65 columns, not 80).
  """
  return min(-(-n // 16) * 16, longest)


@functools.partial(jax.jit, static_argnames=("config",))
def _next_token_nll(config, params, ids: jax.Array, starts: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
  """float32 ``[B, T-1]`` twice: at column t, the negative log-likelihood of token t+1
  given tokens 0..t, and given only the row's prompt (its first ``starts[b]`` tokens).

  The head runs one row at a time (``lax.map``): a row's logits are ``[T-1, V]`` (67 MB
  for 65 tokens of a 262k vocabulary) instead of the batch's ``[B, T-1, V]`` (1.1 GB at
  16 rows), the same numbers bit for bit and 10-20% faster on a 2-core CPU
  (docs/evaluation.md).
  """
  hidden = Decoder(config).apply({"params": params}, ids, compute_logits=False).hidden[:, :-1]

  def row(args):
    h, targets, start = args  # [T-1, D], [T-1], []
    logits = output_logits(config, params, h)  # [T-1, V]
    lse = jax.nn.logsumexp(logits, axis=-1)
    nll = lse - jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    # The distribution after the prompt (column start - 1), scored at every target.
    after_prompt = jax.lax.dynamic_index_in_dim(logits, start - 1, keepdims=False)  # [V]
    prior = jax.lax.dynamic_index_in_dim(lse, start - 1, keepdims=False) - after_prompt[targets]
    return nll, prior

  return jax.lax.map(row, (hidden, ids[:, 1:], starts))
