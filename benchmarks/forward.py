"""Pooled-tap forward throughput on the embedded model, against PyTorch, in one run.

Measures, on the same texts and the same machine, in this process:

1. ours: ``pooled_taps`` (jitted; no output head; masked mean of every neuron site in
   float32 inside the jitted function), batches of right-padded texts;
2. transformers PyTorch float32 with forward hooks on every linear layer of the blocks,
   pooling the same way, on the same padded batches (with an attention mask);
3. the reference procedure: the same PyTorch model and hooks, one text at a time;
4. the machine's jitted float32 matmul FLOP/s, to express our throughput as a fraction
   of what the hardware does on a plain matmul.

Prints tokens/s of each and the ratios. Needs the ``test`` extra (torch, accelerate).

  python benchmarks/forward.py [--texts=64] [--batch_size=16]
"""

import json
import os
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from lang_neuron_jax.runtime import cli
import lang_neuron_jax as lnj
from lang_neuron_jax.models.activations import pooled_taps
from lang_neuron_jax.models.loading import embedded_gguf_path
from lang_neuron_jax.generation.batching import bucket_length

_TEXTS = flags.DEFINE_integer("texts", 64, "Texts to run (distinct corpus sentences).")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Batch size of the batched runs.")
_REFERENCE_TEXTS = flags.DEFINE_integer("reference_texts", 16,
                                        "Texts for the batch-1 reference procedure.")


def corpus_texts(n):
  data = os.path.join(os.path.dirname(lnj.__file__), "data", "sense")
  texts = []
  for lang in ("en", "de", "fr", "es", "zh", "ja"):
    with open(os.path.join(data, f"{lang}.json")) as f:
      texts.extend(json.load(f)["sentences"]["positive"][: -(-n // 6)])
  return texts[:n]


def batches(tokens, batch_size, pad_id):
  """Right-padded ``(ids [B, T], mask [B, T])`` batches of length-sorted texts, T a
  multiple of 8 (as the responses stage batches them)."""
  tokens = sorted(tokens, key=len)
  for start in range(0, len(tokens), batch_size):
    chunk = tokens[start:start + batch_size]
    width = bucket_length(max(map(len, chunk)), buckets=(8,))
    ids = np.full((len(chunk), width), pad_id, np.int32)
    for r, t in enumerate(chunk):
      ids[r, :len(t)] = t
    yield ids, ids != pad_id


def time_it(fn, repeats=3):
  fn()  # Warm-up (compilation).
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def matmul_flops():
  n = 2048
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  seconds = time_it(lambda: f(a).block_until_ready(), repeats=5)
  return 2 * n ** 3 / seconds


def model_flops_per_token(cfg, length):
  """Matmul FLOPs of one token through the blocks (no head), attention included."""
  per_layer = 2 * (cfg.width * (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim
                   + cfg.num_heads * cfg.head_dim * cfg.width + 3 * cfg.width * cfg.mlp_width)
  attention = 2 * 2 * length * cfg.num_heads * cfg.head_dim
  return cfg.num_layers * (per_layer + attention)


def torch_hooked(directory, name):
  import torch
  from transformers import AutoModelForCausalLM

  model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name,
                                               dtype=torch.float32).eval()
  pooled, state = {}, {}
  for li, layer in enumerate(model.model.layers):
    for mname, module in layer.named_modules():
      if isinstance(module, torch.nn.Linear):
        def hook(m, inp, out, key=(li, mname)):
          w = state["mask"][..., None].to(out.dtype)
          pooled[key] = (out * w).sum(1) / w.sum(1)
        module.register_forward_hook(hook)
  return model, pooled, state


def main(argv):
  del argv
  cli.require_positive(_TEXTS, _BATCH, _REFERENCE_TEXTS)
  import torch

  lm = lnj.load_model("gemma3-270m")
  cfg = lm.config
  texts = corpus_texts(_TEXTS.value)
  tokens = [lm.tokenizer(t).input_ids for t in texts]
  real_tokens = sum(map(len, tokens))
  data = list(batches(tokens, _BATCH.value, cfg.pad_token_id))
  padded_tokens = sum(ids.size for ids, _ in data)

  def ours():
    for ids, mask in data:
      out = pooled_taps(cfg, lm.params, jnp.asarray(ids), jnp.asarray(mask))
    jax.block_until_ready(out)

  for ids, mask in data:  # Compile every bucket shape before timing.
    jax.block_until_ready(pooled_taps(cfg, lm.params, jnp.asarray(ids), jnp.asarray(mask)))
  t_ours = time_it(ours)

  path = embedded_gguf_path("gemma3-270m")
  model, _, state = torch_hooked(*os.path.split(path))

  def theirs_batched():
    with torch.no_grad():
      for ids, mask in data:
        state["mask"] = torch.tensor(mask)
        model(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask).long())

  ref_tokens = tokens[:_REFERENCE_TEXTS.value]

  def theirs_one_by_one():
    with torch.no_grad():
      for t in ref_tokens:
        state["mask"] = torch.ones(1, len(t), dtype=torch.bool)
        model(torch.tensor([t]))

  t_batched = time_it(theirs_batched, repeats=2)
  t_single = time_it(theirs_one_by_one, repeats=2)
  single_rate = sum(map(len, ref_tokens)) / t_single

  flops = matmul_flops()
  mean_len = padded_tokens / sum(ids.shape[0] for ids, _ in data)
  achieved = model_flops_per_token(cfg, mean_len) * padded_tokens / t_ours
  ours_rate, batched_rate = real_tokens / t_ours, real_tokens / t_batched
  print(f"texts: {len(texts)}, real tokens: {real_tokens}, padded tokens: {padded_tokens}, "
        f"batch size {_BATCH.value}, devices: {jax.devices()}")
  print(f"ours (pooled_taps, jitted):          {ours_rate:9.0f} tokens/s")
  print(f"PyTorch fp32 + hooks, same batches:  {batched_rate:9.0f} tokens/s")
  print(f"PyTorch fp32 + hooks, batch size 1:  {single_rate:9.0f} tokens/s (reference procedure)")
  print(f"ratio vs PyTorch same batches:       {ours_rate / batched_rate:9.2f}x")
  print(f"ratio vs reference procedure:        {ours_rate / single_rate:9.2f}x")
  print(f"jitted f32 matmul: {flops / 1e12:.3f} TFLOP/s; ours achieves {achieved / 1e12:.3f} "
        f"TFLOP/s = {achieved / flops:.2f} of it")


if __name__ == "__main__":
  cli.run(main)
