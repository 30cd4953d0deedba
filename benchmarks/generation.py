"""Unconditional generation on the embedded model against transformers' ``generate``.

The paper's condition: 100 samples of 64 new tokens at temperature 0.8 from the BOS
token. In the same run:

1. ours: the jitted KV-cache sampler, all samples in batches, each row with its own
   intervention (here: half the rows with a random 2,000-neuron intervention, half with
   none, so the per-row intervention machinery is exercised);
2. the reference procedure: transformers PyTorch ``generate`` (float32, or ``--dtype``
   for both sides), one sequence at a time, timed on ``--reference_samples`` samples
   and extrapolated to ``--samples``. With ``--dtype=bfloat16`` transformers warns that
   its GGUF loading computes every matmul in float32 with casts, so that reference is
   not a clean bfloat16 PyTorch baseline (docs/performance.md has the measurements).

The two sides alternate over ``--rounds`` rounds (ours once, then the reference on its
share of the samples), because on a shared virtual machine either side's time drifts by
10% or more between minutes; the ratio is of the means. Each round of ours runs a new
random intervention set (different neurons and values), which shows the sampler compiles
once. Needs the ``test`` extra (torch, accelerate).

  python benchmarks/generation.py [--samples=100] [--rounds=3] [--reference_samples=12]
      [--dtype=bfloat16]
"""

import os
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from lang_neuron_jax.runtime import cli
import lang_neuron_jax as lnj
from lang_neuron_jax.generation import batching, sampling
from lang_neuron_jax.neurons import selection
from lang_neuron_jax.models.loading import embedded_gguf_path

_SAMPLES = flags.DEFINE_integer("samples", 100, "Samples per condition.")
_TOKENS = flags.DEFINE_integer("max_new_tokens", 64, "New tokens per sample.")
_BATCH = flags.DEFINE_integer("batch_size", None, "Rows per call (default: all samples in "
                             "one call).")
_REFERENCE = flags.DEFINE_integer("reference_samples", 12, "Samples timed with PyTorch, "
                                  "spread over the rounds.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds, each timing ours once and the "
                               "reference on its share of --reference_samples.", lower_bound=1)
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "Parameter dtype of both sides (the reference procedure is float32).")


def random_intervention_sets(lm, rows, seed):
  """Half the rows with a random 2,000-neuron set at random values, half with none."""
  index = lnj.neuron_index(lm.config, lm.config.neuron_sites)
  rng = np.random.default_rng(seed)
  stats = {k: rng.normal(size=(1, index.size)).astype(np.float32) for k in selection.STATISTICS}
  exp = selection.Expertise(index, ("xx",), rng.random((1, index.size), np.float32), stats)
  chosen = selection.select(exp, "xx", 1000, "random", seed=seed)
  return selection.build_intervention([chosen if r % 2 else None for r in range(rows)],
                                      batched=True)


def main(argv):
  del argv
  cli.require_positive(_SAMPLES, _TOKENS, _BATCH, _REFERENCE, _ROUNDS)
  import torch
  from transformers import AutoModelForCausalLM

  rounds, n_ref = _ROUNDS.value, _REFERENCE.value
  if n_ref < rounds:
    raise app.UsageError(f"--reference_samples={n_ref} must be at least --rounds={rounds} "
                         "(each round times the reference on at least one sample)")
  lm = lnj.load_model("gemma3-270m", dtype=_DTYPE.value)
  cfg = lm.config
  warm = sampling.Sampler(temperature=0.8)
  b = _BATCH.value or _SAMPLES.value
  ids, lengths = batching.pad_prompts([[cfg.bos_token_id]] * b, cfg.pad_token_id)
  ids, lengths = jnp.asarray(ids), jnp.asarray(lengths)
  batches = -(-_SAMPLES.value // b)

  def ours(intervention) -> float:
    """Wall time of every batch of ``--samples``, padding rows included."""
    start = time.perf_counter()
    for i in range(batches):
      rows = jnp.arange(i * b, (i + 1) * b, dtype=jnp.int32)
      jax.block_until_ready(sampling.generate(
          cfg, lm.params, ids, lengths, max_new_tokens=_TOKENS.value, sampler=warm, seed=0,
          row_ids=rows, intervention=intervention))
    return time.perf_counter() - start

  ours(random_intervention_sets(lm, b, seed=0))  # compile
  compiled = sampling.generate._cache_size()

  path = embedded_gguf_path("gemma3-270m")
  directory, name = os.path.split(path)
  model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name,
                                               dtype=getattr(torch, _DTYPE.value)).eval()
  bos = torch.tensor([[cfg.bos_token_id]])
  torch.manual_seed(0)

  def reference(samples: int) -> float:
    start = time.perf_counter()
    with torch.no_grad():
      for _ in range(samples):
        model.generate(bos, max_new_tokens=_TOKENS.value, min_new_tokens=_TOKENS.value,
                       do_sample=True, temperature=0.8, top_k=0)
    return time.perf_counter() - start

  with torch.no_grad():
    model.generate(bos, max_new_tokens=4, do_sample=True, temperature=0.8, top_k=0)  # warm-up
  # Rounds alternate the two sides, so that a slow spell of the machine falls on both
  # rather than on whichever side happened to be running; each round of ours uses a new
  # random intervention set (new neurons and values), which is also the sweep that must
  # not recompile.
  shares = [n_ref // rounds + (r < n_ref % rounds) for r in range(rounds)]
  t_ours, t_ref = [], []  # per round: seconds for --samples (the reference extrapolated)
  for r, share in enumerate(shares):
    t_ours.append(ours(random_intervention_sets(lm, b, seed=r + 1)))
    t_ref.append(reference(share) / share * _SAMPLES.value)
    logging.info("round %d: ours %.1f s, reference %.1f s (timed on %d)", r, t_ours[-1],
                 t_ref[-1], share)
  recompiles = sampling.generate._cache_size() - compiled
  mean_ours = sum(t_ours) / rounds
  # Weighted by samples timed: all reference seconds over all samples timed, times --samples.
  mean_ref = sum(t * share for t, share in zip(t_ref, shares)) / n_ref

  print(f"{_SAMPLES.value} samples x {_TOKENS.value} tokens, temperature 0.8, batch {b}, "
        f"{_DTYPE.value}, devices {jax.devices()}, {rounds} interleaved rounds")
  print(f"ours (jitted KV-cache sampler, per-row interventions): {mean_ours:8.1f} s "
        f"(rounds: {', '.join(f'{t:.1f}' for t in t_ours)})")
  print(f"transformers generate, one sequence at a time:        {mean_ref:8.1f} s "
        f"(timed on {n_ref} samples; rounds: {', '.join(f'{t:.1f}' for t in t_ref)})")
  print(f"speed-up: {mean_ref / mean_ours:.1f}x")
  print(f"intervention sweep: {rounds} new neuron sets and values, {recompiles} recompilations")


if __name__ == "__main__":
  cli.run(main)
