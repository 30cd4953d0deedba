"""Analyses of found neurons: overlap between languages, where they sit, a sufficiency check.

All functions take :class:`~lang_neuron_jax.neurons.selection.NeuronSet` s or arrays and return
arrays or dicts; :mod:`lang_neuron_jax.report.figures` draws them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lang_neuron_jax.neurons.selection import NeuronSet
from lang_neuron_jax.errors import UserError


def overlap_matrix(sets: Sequence[NeuronSet]) -> np.ndarray:
  """``[C, C]`` share of set i's neurons that are also in set j (|i ∩ j| / |i|).

  The paper reports under 5% between different languages' top (or bottom) sets.
  """
  flats = [set(s.flat.tolist()) for s in sets]
  return np.array([[len(a & b) / max(len(a), 1) for b in flats] for a in flats])


def jaccard(a: NeuronSet, b: NeuronSet) -> float:
  """|a ∩ b| / |a ∪ b| of two neuron sets of the same model (e.g. the same selection
  from float32 and bfloat16 scores)."""
  if a.index.sites != b.index.sites or a.index.widths != b.index.widths:
    raise UserError("The sets come from different models.")
  x, y = set(a.flat.tolist()), set(b.flat.tolist())
  return len(x & y) / max(len(x | y), 1)


def layer_distribution(neurons: NeuronSet) -> np.ndarray:
  """``[L]`` count of the set's neurons in each layer."""
  return np.bincount(neurons.layer, minlength=neurons.index.num_layers)


def site_distribution(neurons: NeuronSet) -> np.ndarray:
  """``[S]`` count of the set's neurons at each site (in ``neurons.index.sites`` order)."""
  return np.bincount(neurons.site, minlength=len(neurons.index.sites))


def gather_responses(responses: Mapping[str, np.ndarray], neurons: NeuronSet) -> np.ndarray:
  """float32 ``[M, n]`` responses of the set's neurons (M texts)."""
  out = np.empty((next(iter(responses.values())).shape[0], len(neurons)), np.float32)
  for site_id, site in enumerate(neurons.index.sites):
    sel = np.flatnonzero(neurons.site == site_id)
    if sel.size:
      out[:, sel] = np.asarray(responses[site][:, neurons.layer[sel], neurons.unit[sel]])
  return out


def classifier_accuracy(features: np.ndarray, labels: np.ndarray, *, seed: int = 0,
                        test_fraction: float = 0.25, steps: int = 300,
                        learning_rate: float = 0.05) -> float:
  """Held-out accuracy of a multinomial logistic regression trained with optax.

  Args:
    features: float ``[M, n]`` (standardised inside with training-set statistics).
    labels: int ``[M]`` class of each text.
    seed: Seed of the train/test split.
    test_fraction: Share of texts held out.
    steps: Full-batch Adam steps.
    learning_rate: Adam's learning rate.

  Returns:
    Accuracy on the held-out texts.
  """
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(labels))
  n_test = max(1, int(len(labels) * test_fraction))
  test, train = order[:n_test], order[n_test:]
  mean, std = features[train].mean(0), features[train].std(0) + 1e-6
  x = jnp.asarray((features - mean) / std)
  y = jnp.asarray(labels)
  classes = int(labels.max()) + 1
  params = {"w": jnp.zeros((features.shape[1], classes)), "b": jnp.zeros(classes)}
  opt = optax.adam(learning_rate)

  def loss_fn(p, idx):
    logits = x[idx] @ p["w"] + p["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean() + \
        1e-4 * jnp.sum(p["w"] ** 2)

  @jax.jit
  def train_all(params):
    def step(carry, _):
      p, state = carry
      grads = jax.grad(loss_fn)(p, train)
      updates, state = opt.update(grads, state, p)
      return (optax.apply_updates(p, updates), state), None
    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params

  params = train_all(params)
  pred = jnp.argmax(x[test] @ params["w"] + params["b"], axis=-1)
  return float(jnp.mean(pred == y[test]))


def sufficiency_check(responses: Mapping[str, np.ndarray], selected: NeuronSet,
                      random: NeuronSet, labels: np.ndarray, *, seed: int = 0) -> dict:
  """Language-ID accuracy from only the selected neurons vs as many random neurons.

  Args:
    responses: ``{site: [M, L, U]}`` (memory maps are fine: only the chosen columns
      are read).
    selected: Neurons chosen by AP (e.g. the union over languages, as one set).
    random: A random set of the same size.
    labels: int ``[M]`` language of each text; texts with a negative label (no known
      language) are left out.

  Returns:
    ``{"selected": accuracy, "random": accuracy, "neurons": n, "texts": m}``.
  """
  known = labels >= 0
  accuracy = lambda s: classifier_accuracy(gather_responses(responses, s)[known], labels[known],
                                           seed=seed)
  return {"selected": accuracy(selected), "random": accuracy(random), "neurons": len(selected),
          "texts": int(known.sum())}
