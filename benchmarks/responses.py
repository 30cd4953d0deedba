"""Responses for the paper's corpora on the embedded model, against the reference procedure.

The reference (PyTorch, kojima-takeshi188/lang_neuron) runs each language file
separately (6 × 3,000 = 18,000 texts), one text at a time, a full forward with the
output head, forward hooks on every linear layer of the blocks pooling each output over
the text's tokens. Ours runs each of the 5,873 distinct sentences once, length-sorted
and batched, without the output head, pooling inside the jitted function.

Both are timed in this process on samples of the same sentences and extrapolated to the
whole task (ours: distinct sentences; reference: the 18,000 texts).

  python benchmarks/responses.py [--our_texts=640] [--reference_texts=48]
"""

import os
import tempfile
import time

from absl import flags
import numpy as np

from lang_neuron_jax.runtime import cli
import lang_neuron_jax as lnj
from lang_neuron_jax.data import corpora as data
from lang_neuron_jax.find import responses
from lang_neuron_jax.models.loading import embedded_gguf_path

_OURS = flags.DEFINE_integer("our_texts", 640, "Distinct sentences timed with ours.")
_REF = flags.DEFINE_integer("reference_texts", 48, "Texts timed with the reference procedure.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Our batch size.")


def main(argv):
  del argv
  cli.require_positive(_OURS, _REF, _BATCH)
  import torch
  from transformers import AutoModelForCausalLM

  lm = lnj.load_model("gemma3-270m")
  corpus = data.load_corpus()
  total_texts = int(corpus.weights.sum())  # 18,000 texts in the six files
  rng = np.random.default_rng(0)
  sample = rng.choice(len(corpus.texts), _OURS.value, replace=False)
  tokens = [lm.tokenizer(corpus.texts[i]).input_ids for i in sample]

  with tempfile.TemporaryDirectory() as tmp:
    responses.compute_responses(lm, tokens[:64], os.path.join(tmp, "warm"),
                                batch_size=_BATCH.value, progress=False)
    start = time.perf_counter()
    responses.compute_responses(lm, tokens, os.path.join(tmp, "run"), batch_size=_BATCH.value,
                                progress=False)
    t_ours = (time.perf_counter() - start) / len(tokens) * len(corpus.texts)

  path = embedded_gguf_path("gemma3-270m")
  directory, name = os.path.split(path)
  model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name,
                                               dtype=torch.float32).eval()
  pooled = {}
  for li, layer in enumerate(model.model.layers):
    for mname, module in layer.named_modules():
      if isinstance(module, torch.nn.Linear):
        module.register_forward_hook(
            lambda m, i, o, key=(li, mname): pooled.__setitem__(key, o.mean(1).numpy()))
  ref_tokens = tokens[:_REF.value]
  with torch.no_grad():
    model(torch.tensor([ref_tokens[0]]))
    start = time.perf_counter()
    for t in ref_tokens:
      model(torch.tensor([t]))
  t_ref = (time.perf_counter() - start) / len(ref_tokens) * total_texts

  print(f"distinct sentences: {len(corpus.texts)}; texts in the six files: {total_texts}")
  print(f"ours: {t_ours:7.0f} s for the distinct sentences (timed on {len(tokens)})")
  print(f"reference procedure: {t_ref:7.0f} s for the 18,000 texts (timed on {len(ref_tokens)}, "
        f"{t_ref / total_texts * 1e3:.0f} ms per text)")
  print(f"speed-up: {t_ref / t_ours:.1f}x (of which {total_texts / len(corpus.texts):.2f}x from "
        "running each distinct sentence once)")


if __name__ == "__main__":
  cli.run(main)
