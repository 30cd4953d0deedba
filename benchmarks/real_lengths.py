"""Token ids of the corpora's real lengths, for machines the tokenizer cannot travel to.

``data/corpus_token_lengths.json`` holds the Gemma 3 tokenizer's count (BOS included) for
each distinct sentence of the paper's six corpora, in the order of ``load_corpus().texts``;
:class:`LengthTokenizer` turns each text into random ids of that length.
"""

from __future__ import annotations

import hashlib
import json
import os
import types
import zlib

LENGTHS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                            "corpus_token_lengths.json")


def corpus_lengths():
  """``(corpus, lengths int [M])``: the paper's corpora and each distinct sentence's token
  count (checked against the committed file's hash of the texts)."""
  import numpy as np
  from lang_neuron_jax.data.corpora import load_corpus

  corpus = load_corpus()
  with open(LENGTHS_FILE) as f:
    doc = json.load(f)
  digest = hashlib.sha256("\n".join(corpus.texts).encode()).hexdigest()
  if digest != doc["texts_sha256"]:
    raise ValueError(f"{LENGTHS_FILE} was computed for other texts than the shipped corpora; "
                     "rerun with --write_lengths where the embedded model is installed.")
  return corpus, np.asarray(doc["lengths"], np.int64)


class LengthTokenizer:
  """Stands in for a tokenizer that cannot travel: each known text becomes random token ids
  (seeded by the text, BOS first) of its real length; ``tokenizer(texts).input_ids``."""

  def __init__(self, length_of: dict, vocab_size: int, bos: int | None):
    self.length_of, self.vocab_size, self.bos = length_of, vocab_size, bos

  def ids(self, text: str) -> list[int]:
    import numpy as np

    n = int(self.length_of[text])
    rng = np.random.default_rng(zlib.crc32(text.encode()))
    ids = rng.integers(3, self.vocab_size, n).tolist()  # no pad, BOS or EOS (ids 0-2)
    if self.bos is not None:
      ids[0] = self.bos
    return ids

  def __call__(self, texts):
    texts = [texts] if isinstance(texts, str) else texts
    return types.SimpleNamespace(input_ids=[self.ids(t) for t in texts])



def write_lengths() -> None:
  import numpy as np
  from lang_neuron_jax.models import tokenizer as tokenizer_lib
  from lang_neuron_jax.data.corpora import load_corpus
  from lang_neuron_jax.models.loading import default_cache_dir, embedded_gguf_path
  from lang_neuron_jax.models.sources import gguf_metadata, open_gguf

  tok = tokenizer_lib.cached_gguf_tokenizer(
      lambda: gguf_metadata(open_gguf(embedded_gguf_path("gemma3-270m"))),
      os.path.join(default_cache_dir(), "gemma3-270m", "tokenizer"))
  corpus = load_corpus()
  lengths = [len(t) for t in tok(list(corpus.texts)).input_ids]
  doc = {"what": "Token count of each distinct sentence of the paper's six corpora "
                 "(lang_neuron_jax.data.load_corpus(), order of corpus.texts), BOS included, by "
                 "the Gemma 3 tokenizer of the embedded gemma3-270m GGUF (vocabulary 262,144). "
                 "Written by benchmarks/accelerator.py --write_lengths.",
         "languages": list(corpus.languages), "texts": len(corpus.texts),
         "texts_sha256": hashlib.sha256("\n".join(corpus.texts).encode()).hexdigest(),
         "lengths": lengths}
  with open(LENGTHS_FILE, "w") as f:
    json.dump(doc, f, separators=(",", ":"))
  print(f"{LENGTHS_FILE}: {len(lengths)} texts, mean {np.mean(lengths):.1f} tokens")
