"""Generation with the explicit KV cache, in one jitted function.

Prompts are right-padded into one ``[B, P]`` batch (P rounded up to a bucket, so few
shapes compile). The prompt is prefilled at once; then a ``lax.while_loop`` decodes one
token per row per step, each row writing at its own position, until every row has
emitted EOS or ``max_new_tokens`` are done. An optional :class:`Intervention` is applied
at every position (prompt and new tokens), as in the paper.

Greedy, temperature, top-k and top-p are one small frozen :class:`Sampler`. Randomness is
explicit and per row, so a sample does not depend on what else is in its batch.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from lang_neuron_jax.generation import batching
from lang_neuron_jax.runtime import sharding
from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.models.decoder import Decoder, init_cache, output_logits
from lang_neuron_jax.models.taps import Intervention
from lang_neuron_jax.errors import ConfigError

@dataclasses.dataclass(frozen=True, kw_only=True)
class Sampler:
  """How the next token is chosen (a static argument: each distinct sampler compiles once).

  Attributes:
    temperature: 0 for greedy (argmax); otherwise logits are divided by it.
    top_k: Keep only the k most likely tokens (0: all).
    top_p: Keep the smallest set of most likely tokens whose probability reaches p (1: all).
  """

  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0

  def __post_init__(self):
    if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
      raise ConfigError(f"Invalid sampler {self}: need temperature >= 0, top_k >= 0, "
                       "0 < top_p <= 1.")


GREEDY = Sampler()


def filter_logits(logits: jax.Array, sampler: Sampler) -> jax.Array:
  """Applies temperature, top-k and top-p to float32 logits ``[B, V]``.

  Removed tokens get ``-inf``; at least the most likely token always stays.
  """
  logits = logits / sampler.temperature
  if sampler.top_k:
    kth = jax.lax.top_k(logits, sampler.top_k)[0][:, -1:]  # [B, 1]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if sampler.top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]  # [B, V] descending
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # Probability mass strictly before each token; a token stays while that is < p.
    before = jnp.cumsum(probs, axis=-1) - probs
    keep = before < sampler.top_p
    cutoff = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits < cutoff, -jnp.inf, logits)
  return logits


def sample_categorical(keys: jax.Array, logits: jax.Array, block: int = 512) -> jax.Array:
  """One token per row from float32 logits ``[B, V]`` (``-inf`` = excluded), by inverse CDF.

  ``jax.random.categorical`` draws V Gumbel numbers per row, which over a 262k vocabulary
  costs more than the model's decode step on CPU. Here each row draws one uniform number
  and finds its token in two levels: a cumulative sum over blocks of ``block`` tokens,
  then within the chosen block. O(V) work, no large cumsum.
  """
  b, v = logits.shape
  pad = -v % block
  logits = jnp.pad(logits, ((0, 0), (0, pad)), constant_values=-jnp.inf)
  p = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))  # [B, V'] unnormalised
  blocks = p.reshape(b, -1, block)  # [B, nb, block]
  block_sums = blocks.sum(-1)  # [B, nb]
  block_cum = jnp.cumsum(block_sums, axis=-1)
  u = jax.vmap(jax.random.uniform)(keys) * block_cum[:, -1]  # [B]
  # First block whose cumulative mass exceeds u (empty blocks never qualify).
  j = jnp.minimum(jnp.sum(block_cum <= u[:, None], axis=-1), blocks.shape[1] - 1)
  take = lambda a: jnp.take_along_axis(a, j[:, None], axis=1)[:, 0]
  chosen = jnp.take_along_axis(blocks, j[:, None, None], axis=1)[:, 0]  # [B, block]
  rest = u - (take(block_cum) - take(block_sums))
  within = jnp.cumsum(chosen, axis=-1)
  k = jnp.sum(within <= rest[:, None], axis=-1)
  # Rounding can push k past the block's last allowed token: clamp to it.
  last_allowed = block - 1 - jnp.argmax((chosen > 0)[:, ::-1], axis=-1)
  k = jnp.minimum(k, last_allowed)
  return (j * block + k).astype(jnp.int32)


def next_token(logits: jax.Array, keys: jax.Array, sampler: Sampler) -> jax.Array:
  """Chooses one token per row from float32 logits ``[B, V]`` with per-row keys ``[B]``."""
  if sampler.temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return sample_categorical(keys, filter_logits(logits, sampler))


@flax.struct.dataclass
class LineStop:
  """Stops a row once it has finished its first non-empty line.

  The translation experiment scores only the first non-empty line of a continuation;
  stopping there gives the same line and saves the rest of the 128 tokens. Per-token
  facts about the decoded text (bool ``[V]`` each, from :func:`line_stop_for`):

  Attributes:
    newline: The token contains a newline.
    before: Non-whitespace before its first newline.
    between: Non-whitespace between its first and last newline.
    content: Any non-whitespace.
  """

  newline: jax.Array
  before: jax.Array
  between: jax.Array
  content: jax.Array

  def update(self, token: jax.Array, has_content: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(stop, has_content)`` after emitting ``token`` ``[B]``."""
    stop = self.newline[token] & (has_content | self.before[token] | self.between[token])
    return stop, has_content | self.content[token]


def line_stop_for(tokenizer, vocab_size: int) -> LineStop:
  """Builds :class:`LineStop` tables from a tokenizer's vocabulary."""
  flags = np.zeros((4, vocab_size), bool)
  n = min(vocab_size, len(tokenizer))
  texts = tokenizer.batch_decode([[t] for t in range(n)])
  for token, text in enumerate(texts):
    if "\n" in text:
      first, last = text.index("\n"), text.rindex("\n")
      flags[0, token] = True
      flags[1, token] = bool(text[:first].strip())
      flags[2, token] = bool(text[first:last].strip())
    flags[3, token] = bool(text.strip())
  return LineStop(*(jnp.asarray(f) for f in flags))


def choose_tokens(config: DecoderConfig, params, last_hidden: jax.Array, keys: jax.Array,
                  done: jax.Array, has_content: jax.Array, sampler: Sampler,
                  line_stop: LineStop | None) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One decode step's choice: the output head, the next token of each row (padding for
  rows already done), and which rows stop with it.

  Args:
    last_hidden: ``[B, D]`` final hidden state of each row's last token.
    keys: ``[B]`` random keys; ``done``, ``has_content``: bool ``[B]``.

  Returns:
    ``(tokens int32 [B], stop bool [B], has_content bool [B])``.
  """
  nxt = next_token(output_logits(config, params, last_hidden), keys, sampler)
  nxt = jnp.where(done, config.pad_token_id, nxt)
  stop = nxt == config.eos_token_id
  if line_stop is not None:
    line_done, has_content = line_stop.update(nxt, has_content)
    stop |= line_done
  return nxt, stop, has_content


@flax.struct.dataclass
class SamplingState:
  """The decode loop's carry (``lax.while_loop`` state).

  Attributes:
    step: int32 scalar, new tokens produced so far (the slot written next in ``tokens``).
    last_hidden: ``[B, D]`` final hidden state of each row's last fed token (the head
      turns it into the next token's logits).
    cache: The :class:`~lang_neuron_jax.models.decoder.KVCache`.
    done: bool ``[B]``, rows that stopped (EOS, or the end of their first line).
    has_content: bool ``[B]``, rows whose current line has a non-space character
      (for :class:`LineStop`).
    num_tokens: int32 ``[B]``, tokens each row produced, its stopping token included.
    tokens: int32 ``[B, max_new_tokens]``, the new tokens, then padding.
  """

  step: jax.Array
  last_hidden: jax.Array
  cache: Any
  done: jax.Array
  has_content: jax.Array
  num_tokens: jax.Array
  tokens: jax.Array


@functools.partial(jax.jit, static_argnames=("config", "max_new_tokens", "sampler",
                                             "intervene_prompt"))
def generate(config: DecoderConfig, params, ids: jax.Array, lengths: jax.Array, *,
             max_new_tokens: int, sampler: Sampler = GREEDY, seed: int | jax.Array = 0,
             row_ids: jax.Array | None = None, intervention: Intervention | None = None,
             intervene_prompt: bool = True, line_stop: LineStop | None = None):
  """Generates up to ``max_new_tokens`` per row, in one compiled function.

  Args:
    config: The model's config (static).
    params: Its parameters.
    ids: int32 ``[B, P]`` right-padded prompts.
    lengths: int32 ``[B]`` prompt lengths.
    max_new_tokens: Tokens to generate per row (static).
    sampler: Greedy by default.
    seed: Random seed. Row ``r`` uses ``fold_in(key(seed), row_ids[r])`` and folds in
      the step, so a row's sample does not depend on the other rows of its batch.
    row_ids: int32 ``[B]`` identities of the rows (default ``0..B-1``); give e.g. the
      sample number to make samples independent of how rows are batched.
    intervention: Optional edits at the taps, ``[L, U]`` or per row ``[B, L, U]``.
    intervene_prompt: Apply the intervention to the prompt too (the paper) or only to
      the new tokens.
    line_stop: Also stop a row after its first non-empty line (see :class:`LineStop`).

  Returns:
    ``(tokens int32 [B, max_new_tokens], num_tokens int32 [B])``: the new tokens (the
    stopping EOS or newline token included, then padding) and how many each row produced.
  """
  module = Decoder(config)
  B, P = ids.shape
  row_ids = jnp.arange(B, dtype=jnp.int32) if row_ids is None else row_ids
  row_keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.key(seed), r))(row_ids)
  step_keys = lambda step: jax.vmap(lambda k: jax.random.fold_in(k, step))(row_keys)
  cache = init_cache(config, B, P + max_new_tokens, jax.tree.leaves(params)[0].dtype)
  # Prefill without the output head; the loop projects each row's last position.
  prefill = module.apply({"params": params}, ids, cache=cache, compute_logits=False,
                         intervention=intervention if intervene_prompt else None)
  last = prefill.hidden[jnp.arange(B), lengths - 1]  # [B, D]

  def cond(state: SamplingState):
    return (state.step < max_new_tokens) & ~jnp.all(state.done)

  def body(state: SamplingState) -> SamplingState:
    # Head and sampling first, then the decoder step that feeds the new token, so that
    # every head runs inside the loop: one outside it allocates fresh [B, V] buffers,
    # which cost more than the decoder step wasted after the last token (measured with
    # benchmarks/generation.py; the figures are in docs/performance.md).
    step, done = state.step, state.done
    nxt, stop, has_content = choose_tokens(config, params, state.last_hidden, step_keys(step),
                                           done, state.has_content, sampler, line_stop)
    positions = (lengths + step)[:, None]  # [B, 1] slot of the token being fed
    out = module.apply({"params": params}, nxt[:, None], positions=positions,
                       cache=state.cache, intervention=intervention, compute_logits=False)
    return SamplingState(step=step + 1, last_hidden=out.hidden[:, 0], cache=out.cache,
                         done=done | stop, has_content=has_content,
                         num_tokens=jnp.where(done, state.num_tokens, step + 1),
                         tokens=state.tokens.at[:, step].set(nxt))

  state = SamplingState(
      step=jnp.int32(0), last_hidden=last, cache=prefill.cache, done=jnp.zeros(B, bool),
      has_content=jnp.zeros(B, bool), num_tokens=jnp.zeros(B, jnp.int32),
      tokens=jnp.full((B, max_new_tokens), config.pad_token_id, jnp.int32))
  state = jax.lax.while_loop(cond, body, state)
  return state.tokens, state.num_tokens


def shard_rows(tree, layout: str = "data"):
  """Places every array of ``tree`` (each with the rows as its leading axis) on the local
  devices, split along the rows, when the device count divides them; otherwise as is.

  The jitted sampler then runs data-parallel (GSPMD): each device holds its rows' KV
  cache, interventions and samples. Rows are independent, so results equal one device.
  With ``layout="model"`` every device holds every row and its slice of the weights
  (:mod:`lang_neuron_jax.runtime.sharding`).
  """
  devices = jax.local_devices()
  leaves = jax.tree.leaves(tree)
  rows = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
  if len(rows) > 1 or None in rows:
    raise ValueError(f"Every array needs the same leading (row) axis; got {sorted(map(str, rows))}.")
  if layout == "data" and (len(devices) == 1 or not leaves or next(iter(rows)) % len(devices)):
    return jax.tree.map(jnp.asarray, tree)
  by_row = sharding.rows_sharding(layout)
  return jax.tree.map(lambda x: jax.device_put(x, by_row), tree)


def generate_text(lm, texts: Sequence[str], *, max_new_tokens: int = 32,
                  sampler: Sampler = GREEDY, seed: int = 0,
                  intervention: Intervention | None = None) -> list[str]:
  """Continuations of ``texts`` with a :class:`~lang_neuron_jax.LanguageModel`.

  Each text is tokenized with the model's BOS policy; EOS and special tokens are
  dropped from the returned strings.
  """
  prompts = [lm.tokenizer(t).input_ids for t in texts]
  ids, lengths = batching.pad_prompts(prompts, lm.config.pad_token_id)
  tokens, counts = generate(lm.config, lm.params, jnp.asarray(ids), jnp.asarray(lengths),
                            max_new_tokens=max_new_tokens, sampler=sampler, seed=seed,
                            intervention=intervention)
  tokens, counts = np.asarray(tokens), np.asarray(counts)
  return [lm.tokenizer.decode(tokens[r, :counts[r]], skip_special_tokens=True)
          for r in range(len(texts))]
