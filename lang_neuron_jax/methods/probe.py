"""Linear-probe directions, steered as Inference-Time Intervention (ITI) steers.

Li et al. 2023, "Inference-Time Intervention: Eliciting Truthful Answers from a Language
Model" (``likenneth/honest_llama``, ``utils.py``: ``train_probes`` and
``get_interventions_dict``): a logistic-regression probe per site,
``sklearn.linear_model.LogisticRegression(random_state=seed, max_iter=1000)`` (L2
penalty, ``C = 1``, an intercept, ``tol = 1e-4``), trained on a training split and ranked
by its accuracy on a validation split (``val_ratio = 0.2``); the direction is the probe's
``coef_``, normalised; steering adds ``alpha * proj_val_std * direction``, where
``proj_val_std`` is the standard deviation of the activations' projections on the
direction.

Here the site is the residual stream after block ``l`` (the ``resid`` tap, mean-pooled
over a text's tokens, BOS included, as :mod:`~lang_neuron_jax.methods.diffmean` reads
it), one probe per language (its texts against every other text) and layer. Each probe
minimises sklearn's objective,

    mean_i [log(1 + exp(z_i)) - y_i z_i] + |w|^2 / (2 C M),    z_i = x_i . w + b,

with optax's L-BFGS from zero, stopping where sklearn's L-BFGS stops (largest gradient
entry below ``tol``, or ``max_iter`` iterations; a probe that reaches ``max_iter`` is used
as it stands, as ITI uses sklearn's). tests/test_methods.py checks ``coef_`` against
sklearn's.

Validation split: every fifth text of each language and of the texts of no scored
language (positions 4, 9, 14, ... in corpus order; 20%). Layer rule: the layer whose
probe has the highest validation accuracy (ITI's ranking), ties broken by the lower
validation log loss, then the lower layer. Steering towards ``c`` adds
``alpha * std_i(x_i . w_hat) * w_hat`` (``i`` over every text) to the residual stream
after that layer at every position (prompt and new tokens).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
from tqdm import tqdm

from lang_neuron_jax.methods.base import CorpusStatistics, DirectionMethod, FittedDirection
from lang_neuron_jax.errors import ConfigError

SITE = FittedDirection.site
VALIDATION_EVERY = 5  # Every fifth text is held out: ITI's val_ratio of 0.2.


@functools.partial(jax.jit, static_argnames=("max_iter",))
def train_probe(x: jax.Array, y: jax.Array, c: float = 1.0, *, max_iter: int = 1000,
                tol: float = 1e-4) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """One L2-regularised logistic regression, as sklearn's ``LogisticRegression(C=c)``.

  Args:
    x: float32 ``[M, D]`` features.
    y: float32 ``[M]`` labels in {0, 1}.

  Returns:
    ``(w [D], b [], iterations [], largest gradient entry [])``.
  """
  n = x.shape[0]

  def objective(params):
    w, b = params
    z = x @ w + b
    return jnp.mean(jnp.logaddexp(0.0, z) - y * z) + 0.5 * jnp.dot(w, w) / (c * n)

  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)

  def step(carry):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = solver.update(grad, state, params, value=value, grad=grad,
                                   value_fn=objective)
    return optax.apply_updates(params, updates), state

  def going(carry):
    _, state = carry
    count = otu.tree_get(state, "count")
    return (count == 0) | ((count < max_iter) & (largest(state) >= tol))

  def largest(state):
    return otu.tree_norm(otu.tree_get(state, "grad"), ord=jnp.inf)

  start = (jnp.zeros(x.shape[1], x.dtype), jnp.zeros((), x.dtype))
  (w, b), state = jax.lax.while_loop(going, step, (start, solver.init(start)))
  return w, b, otu.tree_get(state, "count"), largest(state)


def validation_mask(language_of_text: np.ndarray) -> np.ndarray:
  """bool ``[M]``: every :data:`VALIDATION_EVERY`-th text of each language (and of the
  texts of no scored language, ``-1``), in corpus order."""
  held_out = np.zeros(len(language_of_text), bool)
  for lang in np.unique(language_of_text):
    where = np.flatnonzero(language_of_text == lang)
    held_out[where[VALIDATION_EVERY - 1::VALIDATION_EVERY]] = True
  return held_out


def _log_loss(z: np.ndarray, y: np.ndarray) -> float:
  return float(np.mean(np.logaddexp(0.0, z) - y * z))


class FittedProbe(FittedDirection):
  """Unit directions ``[C, L, D]``, projection spreads ``[C, L]``, validation accuracy and
  log loss ``[C, L]``, and each language's layer (the rule's, or the one given); strength
  ``alpha`` adds ``alpha * spread[c, layer] * directions[c, layer]``."""

  def __init__(self, languages, directions: np.ndarray, spread: np.ndarray,
               accuracy: np.ndarray, loss: np.ndarray, iterations: np.ndarray,
               layer: int | None = None):
    L = directions.shape[1]
    # np.lexsort sorts by its last key first: accuracy (descending), loss, layer.
    super().__init__(languages, directions, {
        lang: int(np.lexsort((np.arange(L), loss[c], -accuracy[c]))[0])
        if layer is None else layer for c, lang in enumerate(languages)}, scale=spread)
    self.accuracy, self.loss, self.iterations = accuracy, loss, iterations

  @property
  def spread(self) -> np.ndarray:
    """``[C, L]`` the texts' standard deviation along each direction (strength 1)."""
    return self.scale

  def summary(self) -> dict:
    return {"layer": self.layer,
            "spread": {l: float(self.spread[c, self.layer[l]]) for c, l in enumerate(self.languages)},
            "validation_accuracy": {l: self.accuracy[c].round(4).tolist()
                                    for c, l in enumerate(self.languages)},
            "iterations": {l: self.iterations[c].tolist() for c, l in enumerate(self.languages)}}


class LinearProbe(DirectionMethod):
  """ITI-style logistic-regression probe directions added to one layer's residual
  stream; strength ``alpha`` in units of the texts' spread along the direction.

  Args:
    layer: Steer at this layer for every language instead of the layer rule's choice.
    c: Inverse L2 strength (sklearn's ``C``; ITI's default 1).
    max_iter: L-BFGS iterations at most (ITI's 1000).
  """

  name = "probe"
  # On the embedded model the languages' means lie about 2 spreads apart along their
  # probe directions, so 2 moves the others' mean onto the language's; ITI's default
  # alpha (15) lies inside the sweep.
  strengths = (2.0, 8.0, 32.0)

  def __init__(self, layer: int | None = None, c: float = 1.0, max_iter: int = 1000):
    super().__init__(layer)
    if not (np.isfinite(c) and c > 0):
      raise ConfigError(f"probe: c must be a positive finite number, got {c!r}.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
      raise ConfigError(f"probe: max_iter must be a positive integer, got {max_iter!r}.")
    self.c, self.max_iter = float(c), int(max_iter)

  def fit(self, stats: CorpusStatistics) -> FittedProbe:
    self.check_layers(stats.num_layers)
    resid = stats.responses[SITE]
    held_out = validation_mask(stats.language_of_text)
    for c, lang in enumerate(stats.languages):
      if not held_out[stats.language_of_text == c].any():
        raise ConfigError(f"probe: language {lang!r} needs at least {VALIDATION_EVERY} texts "
                         f"(every {VALIDATION_EVERY}th is held out to choose the layer).")
    C, (_, L, D) = len(stats.languages), resid.shape
    labels = [(stats.language_of_text == c).astype(np.float32) for c in range(C)]
    directions = np.zeros((C, L, D), np.float32)
    spread, accuracy, loss, iterations = (np.zeros((C, L)) for _ in range(4))
    for l in tqdm(range(L), desc="probes (layers)", leave=False):
      x = np.asarray(resid[:, l], np.float32)
      for c, y in enumerate(labels):
        w, b, count, _ = train_probe(x[~held_out], y[~held_out], self.c, max_iter=self.max_iter)
        w, b = np.asarray(w), float(b)
        z = x[held_out] @ w + b
        accuracy[c, l] = np.mean((z > 0) == (y[held_out] > 0))
        loss[c, l] = _log_loss(z.astype(np.float64), y[held_out])
        unit = w / max(float(np.linalg.norm(w)), 1e-30)
        directions[c, l], spread[c, l] = unit, float(np.std(x @ unit))
        iterations[c, l] = int(count)
    return FittedProbe(stats.languages, directions, spread, accuracy, loss, iterations,
                       self.layer)
