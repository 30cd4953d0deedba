"""Average precision and response statistics of every neuron, for several languages at once
(the kernels; :class:`~lang_neuron_jax.neurons.expertise.Expertise` holds their results).

Axes: N texts, U units, C label vectors (languages).

``average_precision`` equals ``sklearn.metrics.average_precision_score`` per unit, ties
included: texts are sorted by response (descending); at the end of each group of equal
responses precision is ``TP / (TP + FP)``; AP is the sum over groups of
``ΔTP / total TP × precision``, which is sklearn's step-wise sum with every positive of a
tie group credited the precision at the group's end. Weights act as sklearn's
``sample_weight`` (a text repeated k times in a language's list gets weight k).

Each unit is sorted once and every language's AP and statistics come from that order.

Two implementations, equal to float rounding (both tested against sklearn and numpy):

* ``device``: one jitted XLA function per fixed-size chunk of units (the last one
  padded, so one compilation serves the whole model), sharded over the unit axis across
  all devices. The default on GPU and TPU.
* ``host``: numpy kernels, several chunks at once in threads. The default on CPU, where
  XLA's sort, gathers and prefix sums are several times slower than numpy's (AVX-512
  sorts): the per-language counts are packed into uint64 words so that one prefix sum
  serves every language, AP reads them only at each language's positives, and
  percentiles are vectorised binary searches.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading

import jax
import jax.numpy as jnp
import numpy as np

from lang_neuron_jax.neurons.expertise import SCORES
from lang_neuron_jax.runtime import sharding
from lang_neuron_jax.errors import NonFiniteError, UserError

DEFAULT_CHUNK = 512
# The AP back-ends (see the module docstring); "device-host-sort" sorts on the host and
# counts on the device.
BACKENDS = ("host", "device", "device-host-sort")
def _check(responses: np.ndarray, labels: np.ndarray, weights: np.ndarray | None):
  """Validates shapes and values; returns (labels [C, N] bool, weights [C, N] float32)."""
  if responses.ndim != 2:
    raise UserError(f"responses must be [N texts, U units], got shape {responses.shape}.")
  n = responses.shape[0]
  labels = np.asarray(labels)
  if labels.ndim == 1:
    labels = labels[None]
  if labels.shape[1] != n:
    raise UserError(f"labels have {labels.shape[1]} texts but responses have {n}.")
  if weights is None:
    weights = np.ones(labels.shape, np.float32)
  weights = np.asarray(weights, np.float32)
  if weights.ndim == 1:
    weights = np.broadcast_to(weights, labels.shape)
  if weights.shape != labels.shape:
    raise UserError(f"sample_weight has shape {weights.shape}, labels {labels.shape}.")
  if (weights < 0).any() or not np.isfinite(weights).all():
    raise UserError("sample_weight must be finite and non-negative.")
  if (weights != np.round(weights)).any():
    raise UserError("sample_weight must hold whole numbers (how often each text repeats): "
                     "the percentiles are those of the repeated texts.")
  labels = labels.astype(bool)
  pos = (weights * labels).sum(1)
  neg = (weights * ~labels).sum(1)
  for c in range(labels.shape[0]):
    if pos[c] == 0 or neg[c] == 0:
      raise UserError(
          f"Label vector {c} has {'no positive' if pos[c] == 0 else 'no negative'} texts "
          "(with non-zero weight); AP needs both. Check the corpus for that language.")
  return labels, weights


def _order_keys(x: np.ndarray) -> np.ndarray:
  """uint32 keys whose ascending order is the descending order of float32 ``x``.

  Non-negative floats order like their bit patterns and negative ones in reverse; so
  negative floats keep their bits and non-negative ones get their 31 low bits flipped.
  ``-0.0`` is first turned into ``+0.0`` so that equal floats get equal keys.
  """
  bits = (np.asarray(x, np.float32) + np.float32(0.0)).view(np.int32)
  return (bits ^ (~(bits >> 31) & np.int32(0x7FFFFFFF))).view(np.uint32)


def _transpose(a: np.ndarray, block: int = 256) -> np.ndarray:
  """A contiguous ``a.T``, copied in row blocks (several times faster than numpy's
  strided copy for the tall ``[texts, units]`` chunks here)."""
  out = np.empty(a.shape[::-1], a.dtype)
  for i in range(0, a.shape[0], block):
    out[:, i:i + block] = a[i:i + block].T
  return out


def sort_units(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Sorts each unit's responses descending, on the host.

  Args:
    x: float32 ``[N, U]``.

  Returns:
    ``(sorted_x float32 [U, N], rows int32 [U, N], end int32 [U, N])``: the sorted
    values, the text each sorted position holds (ties in text order), and the last
    position of each position's tie group. ``np.sort`` of packed uint64
    ``(key << 32 | row)`` is several times faster than ``np.argsort`` on CPU.
  """
  n = x.shape[0]
  keys = _order_keys(x.T).astype(np.uint64) << np.uint64(32)  # [U, N]
  packed = np.sort(keys | np.arange(n, dtype=np.uint64), axis=1)
  rows = (packed & np.uint64(0xFFFFFFFF)).astype(np.int32)
  sorted_keys = packed >> np.uint64(32)
  sorted_x = np.take_along_axis(np.ascontiguousarray(x.T), rows, axis=1)
  is_end = np.ones(rows.shape, bool)
  is_end[:, :-1] = sorted_keys[:, 1:] != sorted_keys[:, :-1]
  end = np.where(is_end, np.arange(n, dtype=np.int32), np.int32(n))
  end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]
  return sorted_x, rows, np.ascontiguousarray(end)


@jax.jit
def _sort_units_on_device(x):
  """:func:`sort_units` with XLA (for GPU/TPU, where sorting is cheap)."""
  n = x.shape[0]
  xt = x.T
  rows = jnp.argsort(-xt, axis=1, stable=True).astype(jnp.int32)
  sorted_x = jnp.take_along_axis(xt, rows, axis=1)
  is_end = jnp.concatenate([sorted_x[:, 1:] != sorted_x[:, :-1],
                            jnp.ones((x.shape[1], 1), bool)], axis=1)
  idx = jnp.arange(n, dtype=jnp.int32)
  end = jax.lax.cummin(jnp.where(is_end, idx, n), axis=1, reverse=True)
  return sorted_x, rows, end


def descending_order(x: np.ndarray) -> np.ndarray:
  """int32 ``[N, U]`` row order sorting each column of ``x`` ``[N, U]`` descending
  (ties keep their row order)."""
  return np.ascontiguousarray(sort_units(x)[1].T)


def _cumsum_last(a: jax.Array, block: int = 32) -> jax.Array:
  """Cumulative sum over the last axis as small triangular matmuls.

  XLA's CPU cumsum is a slow parallel prefix; within blocks of ``block`` elements a
  matmul with an upper-triangular ones matrix is fast, and block totals are carried
  with a short cumsum. Exact for the integer-valued float32 weights used here.
  """
  *lead, n = a.shape
  nb = -(-n // block)
  a = jnp.pad(a, [(0, 0)] * len(lead) + [(0, nb * block - n)]).reshape(*lead, nb, block)
  within = a @ jnp.triu(jnp.ones((block, block), a.dtype))
  totals = within[..., -1]
  carried = jnp.cumsum(totals, axis=-1) - totals
  return (within + carried[..., None]).reshape(*lead, nb * block)[..., :n]


def _value_at_rank(sorted_x, cum, rank):
  """Value at (0-based, expanded) ``rank`` given cumulative weights ``cum`` ``[N]``."""
  idx = jnp.searchsorted(cum, rank, side="right")
  return sorted_x[jnp.minimum(idx, sorted_x.shape[0] - 1)]


def _percentile(sorted_x, cum, percent):
  """numpy's default (linear) percentile of the weighted values.

  ``sorted_x`` and ``cum`` are in descending order, so ascending rank k is descending
  rank ``total - 1 - k``. The interpolation point is computed in integers (``percent``
  is an integer), so it is exact like numpy's float64 arithmetic.
  """
  total = cum[-1].astype(jnp.int32)
  scaled = (total - 1) * percent  # 100 × the fractional rank
  lo = scaled // 100
  hi = jnp.minimum(lo + 1, total - 1)
  t = (scaled % 100).astype(jnp.float32) / 100
  a = _value_at_rank(sorted_x, cum, (total - 1 - lo).astype(cum.dtype))
  b = _value_at_rank(sorted_x, cum, (total - 1 - hi).astype(cum.dtype))
  diff = b - a
  # numpy's _lerp: a + diff * t, computed from b's side when t >= 0.5.
  return jnp.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


@jax.jit
def _scores_from_sorted(x, sorted_x, rows, end, labels, weights):
  """AP and statistics for one chunk of units.

  Args:
    x: float32 ``[N, Uc]`` responses.
    sorted_x: float32 ``[Uc, N]`` each unit's responses, descending.
    rows: int32 ``[Uc, N]`` the text at each sorted position.
    end: int32 ``[Uc, N]`` last sorted position of each position's tie group.
    labels: bool ``[C, N]``.
    weights: float32 ``[C, N]``.

  Returns:
    dict of float32 ``[C, Uc]``: ap, on_p50, on_p90, off_mean, off_p50.
  """
  c = labels.shape[0]
  pos_w = weights * labels
  neg_w = weights * ~labels
  inc = jnp.concatenate([pos_w, neg_w])[:, rows]  # [2C, Uc, N] weights in sorted order
  cum = _cumsum_last(inc)  # [2C, Uc, N] cumulative TP (first C) and FP (last C)
  cum_end = jnp.take_along_axis(cum, jnp.broadcast_to(end, cum.shape), axis=2)
  tp_end, fp_end = cum_end[:c], cum_end[c:]
  denom = tp_end + fp_end
  precision = jnp.where(denom > 0, tp_end / jnp.where(denom > 0, denom, 1), 0.0)
  tp, fp = cum[:c], cum[c:]
  ap = jnp.sum(inc[:c] * precision, axis=2) / tp[:, :, -1]

  def percentiles(cum, percent):
    per_c_u = jax.vmap(jax.vmap(_percentile, in_axes=(0, 0, None)), in_axes=(None, 0, None))
    return per_c_u(sorted_x, cum, percent)

  off_mean = jnp.einsum("CN,NU->CU", neg_w, x) / jnp.sum(neg_w, axis=1)[:, None]
  return {"ap": ap, "on_p50": percentiles(tp, 50), "on_p90": percentiles(tp, 90),
          "off_mean": off_mean, "off_p50": percentiles(fp, 50)}


def _pack_fields(labels: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, int]:
  """Packs each text's per-language counts into uint64 words, for one prefix sum.

  Field ``2c`` is the text's weight as a positive of language c, field ``2c + 1`` its
  weight in c's list (positive or negative). A prefix sum over the packed words is the
  prefix sum of every field at once, because no field's total overflows its ``bits``.

  Returns:
    ``(table uint64 [words, N], bits per field)``.
  """
  c, n = labels.shape
  totals = weights.sum(1)
  bits = max(1, int(totals.max()).bit_length())
  if bits > 32:
    raise UserError(f"A label vector's weights sum to {int(totals.max())}; the host "
                     "scorer supports up to 2**32 - 1 (use method='device').")
  per_word = 64 // bits
  table = np.zeros((-(-2 * c // per_word), n), np.uint64)
  w = weights.astype(np.uint64)
  for f in range(2 * c):
    field = w[f // 2] * labels[f // 2] if f % 2 == 0 else w[f // 2]
    table[f // per_word] |= field << np.uint64(bits * (f % per_word))
  return table, bits


def _read_field(cum: np.ndarray, field, bits: int, flat_positions: np.ndarray) -> np.ndarray:
  """int64 values of packed field ``field`` (an int, or ``[K]`` ints for ``[K, ...]``
  positions) of ``cum`` ``[words, Uc, N]`` at ``flat_positions`` (``unit * N + position``)."""
  per_word = 64 // bits
  field = np.asarray(field)
  if field.ndim:
    flat_positions = flat_positions + (field // per_word)[:, None] * cum[0].size
    shift = (bits * (field % per_word)).astype(np.uint64)[:, None]
  else:
    flat_positions = flat_positions + int(field) // per_word * cum[0].size
    shift = np.uint64(bits * (int(field) % per_word))
  word = np.take(cum.reshape(-1), flat_positions)
  return ((word >> shift) & np.uint64((1 << bits) - 1)).astype(np.int64)


def _host_scores(x: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                 table: np.ndarray, bits: int, workspace: dict | None = None
                 ) -> dict[str, np.ndarray]:
  """AP and statistics of one chunk with numpy kernels (the CPU path).

  One sort per unit; one prefix sum of the packed per-language counts; then AP reads
  the counts only at each language's positive texts (at the end of their tie group),
  and each percentile is a vectorised binary search over the prefix sums.

  Args:
    x: float32 ``[N, Uc]``.
    labels: bool ``[C, N]``; weights: float32 ``[C, N]``.
    table, bits: from :func:`_pack_fields`.
    workspace: A dict this function keeps its large buffers in between calls (one per
      thread): reusing them avoids page-faulting ~200 MB of fresh memory per chunk.

  Returns:
    dict of float32 ``[C, Uc]``.
  """
  n, u = x.shape
  c = labels.shape[0]
  workspace = {} if workspace is None else workspace

  def buffer(name, shape, dtype):
    if name not in workspace or workspace[name].shape != shape:
      workspace[name] = np.empty(shape, dtype)
    return workspace[name]

  xt = _transpose(x)  # [Uc, N]
  packed = buffer("packed", (u, n), np.uint64)
  np.left_shift(_transpose(_order_keys(x)), np.uint64(32), out=packed, dtype=np.uint64)
  packed |= np.arange(n, dtype=np.uint64)
  packed.sort(axis=1)  # by key, ties by text
  rows = buffer("rows", (u, n), np.intp)  # text at each sorted position
  np.bitwise_and(packed, np.uint64(0xFFFFFFFF), out=rows, casting="unsafe")
  packed >>= np.uint64(32)  # the sorted keys
  is_end = buffer("is_end", (u, n), bool)
  is_end[:, -1] = True
  np.not_equal(packed[:, 1:], packed[:, :-1], out=is_end[:, :-1])
  end = buffer("end", (u, n), np.intp)
  np.copyto(end, n)
  np.copyto(end, np.arange(n), where=is_end)
  np.minimum.accumulate(end[:, ::-1], axis=1, out=end[:, ::-1])  # last position of the tie group
  cum = buffer("cum", (table.shape[0], u, n), np.uint64)
  np.take(table, rows, axis=1, out=cum)
  np.cumsum(cum, axis=2, out=cum)  # [words, Uc, N]
  row_start = (np.arange(u) * n)[:, None]
  group_end = buffer("group_end", (u, n), np.intp)  # flat end of each text's tie group
  end += row_start
  np.put_along_axis(group_end, rows, end, axis=1)

  pos_w = weights * labels
  out = {k: np.empty((c, u), np.float32) for k in SCORES}
  for ci in range(c):
    texts = np.flatnonzero(pos_w[ci])
    ends = np.take(group_end, texts, axis=1)  # [Uc, positives]
    tp = _read_field(cum, 2 * ci, bits, ends)
    seen = _read_field(cum, 2 * ci + 1, bits, ends)
    out["ap"][ci] = (pos_w[ci, texts] * (tp / seen)).sum(1) / pos_w[ci].sum()

  # Percentiles: for each (language, statistic) the two expanded ranks numpy
  # interpolates between, all found by one vectorised binary search over the sorted
  # positions (the first position whose cumulative count exceeds the rank).
  neg_w = weights * ~labels
  specs = [(ci, key, percent) for ci in range(c)
           for key, percent in (("on_p50", 50), ("on_p90", 90), ("off_p50", 50))]
  lang = np.array([ci for ci, _, _ in specs])
  off = np.array([key.startswith("off") for _, key, _ in specs])
  total = np.where(off, neg_w.sum(1)[lang], pos_w.sum(1)[lang]).astype(np.int64)
  scaled = (total - 1) * np.array([percent for _, _, percent in specs])
  lo_rank = scaled // 100
  hi_rank = np.minimum(lo_rank + 1, total - 1)
  ranks = np.concatenate([total - 1 - lo_rank, total - 1 - hi_rank])[:, None]  # [2K, 1]
  lang2, off2 = np.concatenate([lang, lang]), np.concatenate([off, off])[:, None]
  lo = np.zeros((ranks.shape[0], u), np.intp)
  hi = np.full((ranks.shape[0], u), n - 1, np.intp)
  for _ in range(n.bit_length() + 1):
    mid = (lo + hi) // 2
    tp = _read_field(cum, 2 * lang2, bits, mid + row_start[:, 0])
    count = np.where(off2, _read_field(cum, 2 * lang2 + 1, bits, mid + row_start[:, 0]) - tp, tp)
    above = count > ranks
    hi, lo = np.where(above, mid, hi), np.where(above, lo, mid + 1)
  values = np.take(xt, np.take(rows, lo + row_start[:, 0]) + row_start[:, 0])  # [2K, Uc]
  a, b = values[:len(specs)], values[len(specs):]
  t = ((scaled % 100) / 100).astype(np.float32)[:, None]
  diff = b - a
  # numpy's _lerp: a + diff * t, computed from b's side when t >= 0.5.
  result = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
  for (ci, key, _), r in zip(specs, result):
    out[key][ci] = r
  neg_w = neg_w.astype(np.float64)
  out["off_mean"][:] = (neg_w @ x.astype(np.float64)) / neg_w.sum(1)[:, None]
  return out


def _device_scores(x: np.ndarray, labels_d, weights_d, by_column, by_row, on_device_sort):
  x_d = jax.device_put(x, by_column)
  if on_device_sort:
    sorted_x, rows, end = _sort_units_on_device(x_d)
  else:
    sorted_x, rows, end = (jax.device_put(a, by_row) for a in sort_units(x))
  return {k: np.asarray(v) for k, v in
          _scores_from_sorted(x_d, sorted_x, rows, end, labels_d, weights_d).items()}


def _check_finite(x: np.ndarray, start: int) -> None:
  if not np.isfinite(x).all():
    bad = start + int(np.flatnonzero(~np.isfinite(x).all(0))[0])
    raise NonFiniteError(f"Non-finite responses at unit {bad}; rerun the responses stage in "
                     "float32 or check the model.")


def score_units(responses, labels, sample_weight=None, *, chunk_size: int = DEFAULT_CHUNK,
                method: str | None = None, threads: int | None = None,
                progress=None) -> dict[str, np.ndarray]:
  """AP and statistics of every unit for every label vector.

  Args:
    responses: float ``[N, U]`` (a numpy array or memory map; read chunk by chunk).
    labels: bool ``[C, N]`` (or ``[N]``): which texts are positives, per language.
    sample_weight: ``[C, N]`` or ``[N]`` whole-number weights (how often each text
      appears in that language's list; None: all 1).
    chunk_size: Units per call.
    method: ``"device"``: one jitted XLA function per chunk with fixed shapes, sharded
      over the unit axis across all devices (the default on GPU/TPU). ``"device-host-
      sort"``: the same, with the sort done by numpy. ``"host"``: numpy kernels on
      ``threads`` chunks at once (the default on CPU, where XLA's sorts, gathers and
      prefix sums are several times slower than numpy's). All give the same numbers.
    threads: Chunks scored at once by the host method (default: the usable cores).
    progress: Optional callable receiving the number of units finished per chunk.

  Returns:
    ``{"ap", "on_p50", "on_p90", "off_mean", "off_p50"}``, each float32 ``[C, U]``.
    ``on_*`` are percentiles over the positives, ``off_*`` over the negatives, with
    numpy's default (linear) interpolation over the weight-expanded texts.

  Raises:
    ValueError: bad shapes, weights, a label vector without positives or negatives, or
      non-finite responses.
  """
  labels, weights = _check(responses, labels, sample_weight)
  n, u = responses.shape
  if method is None:
    method = "host" if jax.default_backend() == "cpu" else "device"
  if method not in BACKENDS:
    raise UserError(f"Unknown AP back-end {method!r}; use one of {BACKENDS}.")
  out = {k: np.empty((labels.shape[0], u), np.float32) for k in SCORES}

  if method == "host":
    table, bits = _pack_fields(labels, weights)

    local = threading.local()  # one workspace of buffers per thread

    def work(start):
      x = np.asarray(responses[:, start:start + chunk_size], np.float32)
      _check_finite(x, start)
      if not hasattr(local, "workspace"):
        local.workspace = {}
      return start, _host_scores(x, labels, weights, table, bits, local.workspace)

    threads = threads or len(os.sched_getaffinity(0))
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
      for start, scores in pool.map(work, range(0, u, chunk_size)):
        for k, v in scores.items():
          out[k][:, start:start + v.shape[1]] = v
        if progress:
          progress(v.shape[1])
    return out

  devices = jax.local_devices()  # With several processes, each scores on its own devices.
  chunk_size = -(-chunk_size // len(devices)) * len(devices)
  mesh = sharding.local_mesh()
  by_column = sharding.split_along(mesh, 1)  # [N, Uc]
  by_row = sharding.split_along(mesh, 0)  # [Uc, N]
  labels_d, weights_d = jnp.asarray(labels), jnp.asarray(weights)
  for start in range(0, u, chunk_size):
    stop = min(start + chunk_size, u)
    x = np.zeros((n, chunk_size), np.float32)  # Padded: one compilation for every chunk.
    x[:, :stop - start] = responses[:, start:stop]
    _check_finite(x, start)
    scores = _device_scores(x, labels_d, weights_d, by_column, by_row,
                            on_device_sort=method == "device")
    for k, v in scores.items():
      out[k][:, start:stop] = v[:, :stop - start]
    if progress:
      progress(stop - start)
  return out


def average_precision(responses, labels, sample_weight=None, **kwargs) -> np.ndarray:
  """``[U]`` AP of each unit, equal to sklearn's ``average_precision_score`` per column.

  Args:
    responses: float ``[N, U]``.
    labels: bool ``[N]``.
    sample_weight: Optional ``[N]`` non-negative weights.

  Example:
    >>> ap = average_precision(np.random.rand(100, 7), np.arange(100) < 20)
  """
  return score_units(responses, np.asarray(labels)[None], None if sample_weight is None
                     else np.asarray(sample_weight)[None], **kwargs)["ap"][0]
