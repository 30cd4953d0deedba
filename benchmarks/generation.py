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
   not a clean bfloat16 PyTorch baseline (measured 2026-11-25: ours 22.4 s in bfloat16,
   24.1 s in float32 in the run next to it; that reference 430 s).

Then a sweep over interventions (different neurons and values each call) shows the
sampler compiles once. Needs the ``test`` extra (torch, accelerate).

  python benchmarks/generation.py [--samples=100] [--reference_samples=10] [--dtype=bfloat16]
"""

import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import lang_neuron_jax as lnj
from lang_neuron_jax import sampling, selection
from lang_neuron_jax.loading import embedded_gguf_path

_SAMPLES = flags.DEFINE_integer("samples", 100, "Samples per condition.")
_TOKENS = flags.DEFINE_integer("max_new_tokens", 64, "New tokens per sample.")
_BATCH = flags.DEFINE_integer("batch_size", None, "Rows per call (default: all samples in "
                             "one call).")
_REFERENCE = flags.DEFINE_integer("reference_samples", 10, "Samples timed with PyTorch "
                                  "(3 gave 378 s and 431 s for 100 on two runs).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "Parameter dtype of both sides (the reference procedure is float32).")


def random_intervention_sets(lm, rows, seed):
  """Half the rows with a random 2,000-neuron set at random values, half with none."""
  index = selection.neuron_index(lm.config, lm.config.neuron_sites)
  rng = np.random.default_rng(seed)
  stats = {k: rng.normal(size=(1, index.size)).astype(np.float32) for k in selection.STATISTICS}
  exp = selection.Expertise(index, ("xx",), rng.random((1, index.size), np.float32), stats)
  chosen = selection.select(exp, "xx", 1000, "random", seed=seed)
  return selection.build_intervention([chosen if r % 2 else None for r in range(rows)],
                                      batched=True)


def main(argv):
  del argv
  import torch
  from transformers import AutoModelForCausalLM

  lm = lnj.load_model("gemma3-270m", dtype=_DTYPE.value)
  cfg = lm.config
  warm = sampling.Sampler(temperature=0.8)
  b = _BATCH.value or _SAMPLES.value
  ids, lengths = sampling.pad_prompts([[cfg.bos_token_id]] * b, cfg.pad_token_id)
  ids, lengths = jnp.asarray(ids), jnp.asarray(lengths)

  def run(batch_index, intervention):
    rows = jnp.arange(batch_index * b, (batch_index + 1) * b, dtype=jnp.int32)
    return sampling.generate(cfg, lm.params, ids, lengths, max_new_tokens=_TOKENS.value,
                             sampler=warm, seed=0, row_ids=rows, intervention=intervention)

  intervention = random_intervention_sets(lm, b, seed=0)
  jax.block_until_ready(run(0, intervention))  # compile
  batches = -(-_SAMPLES.value // b)
  start = time.perf_counter()
  for i in range(batches):
    tokens, counts = jax.block_until_ready(run(i, intervention))
  t_ours = time.perf_counter() - start  # Wall time of every batch, padding rows included.

  path = embedded_gguf_path("gemma3-270m")
  directory, name = os.path.split(path)
  model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name,
                                               dtype=getattr(torch, _DTYPE.value)).eval()
  bos = torch.tensor([[cfg.bos_token_id]])
  torch.manual_seed(0)
  with torch.no_grad():
    model.generate(bos, max_new_tokens=4, do_sample=True, temperature=0.8, top_k=0)  # warm-up
    start = time.perf_counter()
    for _ in range(_REFERENCE.value):
      model.generate(bos, max_new_tokens=_TOKENS.value, min_new_tokens=_TOKENS.value,
                     do_sample=True, temperature=0.8, top_k=0)
  t_ref = (time.perf_counter() - start) / _REFERENCE.value * _SAMPLES.value

  before = sampling.generate._cache_size()
  for seed in range(1, 4):
    jax.block_until_ready(run(0, random_intervention_sets(lm, b, seed)))
  recompiles = sampling.generate._cache_size() - before

  print(f"{_SAMPLES.value} samples x {_TOKENS.value} tokens, temperature 0.8, batch {b}, "
        f"{_DTYPE.value}, devices {jax.devices()}")
  print(f"ours (jitted KV-cache sampler, per-row interventions): {t_ours:8.1f} s")
  print(f"transformers generate, one sequence at a time:        {t_ref:8.1f} s "
        f"(timed on {_REFERENCE.value} samples)")
  print(f"speed-up: {t_ref / t_ours:.1f}x")
  print(f"intervention sweep: 3 new neuron sets and values, {recompiles} recompilations")


if __name__ == "__main__":
  app.run(main)
