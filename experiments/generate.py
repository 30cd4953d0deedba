"""Loads a model and prints greedy continuations of prompts in six languages.

  python experiments/generate.py                       # embedded Gemma 3 270M
  python experiments/generate.py --model=/path/to/checkpoint --max_new_tokens=48

A smoke test of the model, tokenizer and KV-cache sampler; the full study is
``experiments/reproduce.py``.
"""

import json
import os
import time

from absl import flags
from absl import logging

import lang_neuron_jax as lnj
from lang_neuron_jax.runtime import cli
import study_flags
from lang_neuron_jax.data import corpora as data
from lang_neuron_jax.generation import sampling

_MODEL, _DTYPE = study_flags.model(), study_flags.dtype()
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 32, "Tokens to generate per prompt.")
_OUTPUT = flags.DEFINE_string("output", None, "Optional .jsonl file for the continuations.")

PROMPTS = data.EXAMPLE_PROMPTS


def main(argv):
  del argv
  start = time.perf_counter()
  lm = lnj.load_model(_MODEL.value, dtype=_DTYPE.value)
  logging.info("Loaded %s in %.1fs", _MODEL.value, time.perf_counter() - start)
  start = time.perf_counter()
  outputs = sampling.generate_text(lm, list(PROMPTS.values()),
                                   max_new_tokens=_MAX_NEW_TOKENS.value)
  logging.info("Generated in %.1fs", time.perf_counter() - start)
  records = [{"language": lang, "prompt": prompt, "continuation": out}
             for (lang, prompt), out in zip(PROMPTS.items(), outputs)]
  for r in records:
    print(f"[{r['language']}] {r['prompt']}{r['continuation']}")
  if _OUTPUT.value:
    os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
    with open(_OUTPUT.value, "w") as f:
      for r in records:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
  cli.run(main)
