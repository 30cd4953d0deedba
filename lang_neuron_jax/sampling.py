"""Greedy generation with the explicit KV cache, in one jitted function.

Prompts are right-padded into one ``[B, P]`` batch (P rounded up to a bucket, so few
shapes compile). The prompt is prefilled at once; then a ``lax.while_loop`` decodes one
token per row per step, each row writing at its own position, until every row has
emitted EOS or ``max_new_tokens`` are done. An optional :class:`Intervention` is applied
at every position (prompt and new tokens), as in the paper.

This is the first slice of the sampler; temperature/top-k/top-p and per-row keys come
with the control experiments.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.models.decoder import Decoder, init_cache
from lang_neuron_jax.models.taps import Intervention

PROMPT_BUCKETS = (16, 32, 64, 128, 256, 512)


def bucket_length(n: int, buckets: Sequence[int] = PROMPT_BUCKETS) -> int:
  """The smallest bucket that holds ``n`` tokens (multiples of the largest beyond it)."""
  for b in buckets:
    if n <= b:
      return b
  return -(-n // buckets[-1]) * buckets[-1]


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads token lists to a bucket length.

  Returns:
    ``(ids int32 [B, P], lengths int32 [B])``.
  """
  if not prompts or any(len(p) == 0 for p in prompts):
    raise ValueError("Every prompt needs at least one token (e.g. BOS).")
  lengths = np.array([len(p) for p in prompts], np.int32)
  ids = np.full((len(prompts), bucket_length(int(lengths.max()))), pad_id, np.int32)
  for row, p in enumerate(prompts):
    ids[row, :len(p)] = p
  return ids, lengths


@functools.partial(jax.jit, static_argnames=("config", "max_new_tokens"))
def greedy_generate(config: DecoderConfig, params, ids: jax.Array, lengths: jax.Array, *,
                    max_new_tokens: int, intervention: Intervention | None = None):
  """Greedy decoding.

  Args:
    config: The model's config (static).
    params: Its parameters.
    ids: int32 ``[B, P]`` right-padded prompts.
    lengths: int32 ``[B]`` prompt lengths.
    max_new_tokens: Tokens to generate per row (static).
    intervention: Optional edits applied at every position.

  Returns:
    ``(tokens int32 [B, max_new_tokens], num_tokens int32 [B])``: the new tokens (EOS
    included, then padding) and how many each row produced before stopping.
  """
  module = Decoder(config)
  B, P = ids.shape
  cache = init_cache(config, B, P + max_new_tokens, jax.tree.leaves(params)[0].dtype)
  logits, cache = module.apply({"params": params}, ids, cache=cache, intervention=intervention)
  first = jnp.argmax(logits[jnp.arange(B), lengths - 1], axis=-1).astype(jnp.int32)  # [B]
  out = jnp.full((B, max_new_tokens), config.pad_token_id, jnp.int32).at[:, 0].set(first)
  done = first == config.eos_token_id

  def cond(state):
    step, _, _, done, _ = state
    return (step < max_new_tokens) & ~jnp.all(done)

  def body(state):
    step, token, cache, done, out = state
    positions = (lengths + step - 1)[:, None]  # [B, 1] slot of the token being fed
    logits, cache = module.apply({"params": params}, token[:, None], positions=positions,
                                 cache=cache, intervention=intervention)
    nxt = jnp.argmax(logits[:, 0], axis=-1).astype(jnp.int32)
    nxt = jnp.where(done, config.pad_token_id, nxt)
    out = out.at[:, step].set(nxt)
    return step + 1, nxt, cache, done | (nxt == config.eos_token_id), out

  _, _, _, _, out = jax.lax.while_loop(cond, body, (jnp.int32(1), first, cache, done, out))
  is_eos = out == config.eos_token_id
  first_eos = jnp.where(is_eos.any(axis=1), jnp.argmax(is_eos, axis=1) + 1, max_new_tokens)
  return out, first_eos.astype(jnp.int32)


def generate_text(lm, texts: Sequence[str], *, max_new_tokens: int = 32,
                  intervention: Intervention | None = None) -> list[str]:
  """Greedy continuations of ``texts`` with a :class:`~lang_neuron_jax.LanguageModel`."""
  prompts = [lm.tokenizer(t).input_ids for t in texts]
  ids, lengths = pad_prompts(prompts, lm.config.pad_token_id)
  tokens, counts = greedy_generate(lm.config, lm.params, jnp.asarray(ids), jnp.asarray(lengths),
                                   max_new_tokens=max_new_tokens, intervention=intervention)
  tokens, counts = np.asarray(tokens), np.asarray(counts)
  return [lm.tokenizer.decode(tokens[r, :counts[r]], skip_special_tokens=True)
          for r in range(len(texts))]
