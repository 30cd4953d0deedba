"""How much bfloat16 changes which neurons are found: Jaccard overlap of the top N/2 and
bottom N/2 sets (N = 2,000 by default) found with float32 and with bfloat16 parameters.

  python experiments/compare_precision.py --workdir=workdir/precision
  python experiments/compare_precision.py --float32_workdir=workdir/reproduce/find \\
      --workdir=workdir/precision                # reuse a finished float32 find stage

Runs (or reuses) the find stage in both dtypes, then writes precision.json with, per
language, the Jaccard index of the top sets and of the bottom sets, and the Pearson
correlation of the two AP vectors.
"""

import os

from absl import flags
import numpy as np

import lang_neuron_jax as lnj
from lang_neuron_jax.runtime import cli
import study_flags
from lang_neuron_jax.neurons import analysis, selection
from lang_neuron_jax.runtime import artifacts
from lang_neuron_jax.find import stage as find

_MODEL = study_flags.model()
_WORKDIR = flags.DEFINE_string("workdir", "workdir/precision", "Output directory.")
_FLOAT32_WORKDIR = flags.DEFINE_string("float32_workdir", None,
                                       "A finished float32 find stage to reuse (same model, "
                                       "corpus and N); default: run one in --workdir.")
_LANGUAGES = study_flags.languages("languages", "Languages.")
_CORPUS = study_flags.corpus(tfds=False)
_N = study_flags.n()
_BATCH = flags.DEFINE_integer("batch_size", find.FindConfig.batch_size, "Texts per forward pass.")


def run_find(dtype: str, workdir: str) -> selection.Expertise:
  lm = lnj.load_model(_MODEL.value, dtype=dtype)
  config = find.FindConfig(languages=tuple(_LANGUAGES.value), n=_N.value,
                           batch_size=_BATCH.value, **study_flags.values(_CORPUS))
  return find.find_neurons(lm, config, workdir).expertise


def main(argv):
  del argv
  f32_dir = _FLOAT32_WORKDIR.value or os.path.join(_WORKDIR.value, "float32")
  f32 = run_find("float32", f32_dir)
  bf16 = run_find("bfloat16", os.path.join(_WORKDIR.value, "bfloat16"))
  half = selection.cap_n(_N.value, f32.index.size, "both") // 2
  out = {"model": _MODEL.value, "n": 2 * half, "languages": {}}
  for lang in f32.languages:
    row = {kind: analysis.jaccard(selection.select(f32, lang, half, kind),
                                  selection.select(bf16, lang, half, kind))
           for kind in ("top", "bottom")}
    i = f32.language_row(lang)
    row["ap_correlation"] = float(np.corrcoef(f32.ap[i], bf16.ap[i])[0, 1])
    row["max_ap_difference"] = float(np.abs(f32.ap[i] - bf16.ap[i]).max())
    out["languages"][lang] = row
    print(f"{lang}: Jaccard top-{half} {row['top']:.3f}, bottom {row['bottom']:.3f}, "
          f"AP correlation {row['ap_correlation']:.4f}")
  artifacts.write_json(os.path.join(_WORKDIR.value, "precision.json"), out)


if __name__ == "__main__":
  cli.run(main)
