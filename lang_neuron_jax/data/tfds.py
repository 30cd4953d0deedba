"""The shipped corpora and translation sets as TensorFlow Datasets builders.

Two datasets, written as array_record files and read with ``tfds.data_source`` (random
access, no TensorFlow needed):

* ``lang_neuron_sense/{lang}``: one config per language, one record per entry of that
  language's list (repeats included) with ``text``, ``positive`` (a text in the
  language, or one of the negatives) and ``index`` (its position in the list: records
  come back in key-hash order).
* ``lang_neuron_translation/{dataset}_en_{lang}``: ``en``, ``target`` and ``index``.

Usage::

    from lang_neuron_jax.data import corpora as data, tfds as tfds_datasets
    tfds_datasets.prepare("~/tensorflow_datasets")          # once; seconds
    corpus = data.load_corpus(tfds_name="lang_neuron_sense", tfds_data_dir="~/tensorflow_datasets")

Your own corpus works the same way: a builder with one config per language and these
three features, passed by name to ``load_corpus`` or ``--tfds_name``.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from lang_neuron_jax.data import corpora as data

_CITATION = """@inproceedings{kojima2024multilingual,
  title={On the Multilingual Ability of Decoder-based Pre-trained Language Models:
         Finding and Controlling Language-Specific Neurons},
  author={Kojima, Takeshi and Okimura, Itsuki and Iwasawa, Yusuke and Yanaka, Hitomi and
          Matsuo, Yutaka},
  booktitle={NAACL}, year={2024}}"""
_HOMEPAGE = "https://github.com/kojima-takeshi188/lang_neuron"


class LangNeuronSense(tfds.core.GeneratorBasedBuilder):
  """The paper's per-language corpora (positives: texts in the language; negatives:
  texts in the other five), as shipped in ``lang_neuron_jax/data/sense``."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "The six corpora of Kojima et al. (2024)."}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=lang, description=f"{lang} vs the others")
                     for lang in data.PAPER_LANGUAGES]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "text": tfds.features.Text(),
            "positive": np.bool_,
            "index": np.int32,
        }),
        homepage=_HOMEPAGE,
        citation=_CITATION,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The data ship with the package.
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    pos, neg = data._read_language(data.SENSE_DIR, self.builder_config.name)  # pylint: disable=protected-access
    for i, (text, positive) in enumerate([(t, True) for t in pos] + [(t, False) for t in neg]):
      yield i, {"text": text, "positive": positive, "index": i}


class LangNeuronTranslation(tfds.core.GeneratorBasedBuilder):
  """The paper's English→X translation sets (FLORES-200, IWSLT2017, WMT; 100 pairs
  each), as shipped in ``lang_neuron_jax/data/translation``."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "The translation sets of Kojima et al. (2024)."}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=f"{dataset}_en_{lang}")
                     for dataset, lang in data.available_translation_sets()]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "en": tfds.features.Text(),
            "target": tfds.features.Text(),
            "index": np.int32,
        }),
        homepage=_HOMEPAGE,
        citation=_CITATION,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    dataset, lang = self.builder_config.name.rsplit("_en_", 1)
    for i, (en, target) in enumerate(data.load_translation_pairs(dataset, lang)):
      yield i, {"en": en, "target": target, "index": i}


def prepare(data_dir: str) -> list[str]:
  """Writes every config of both datasets as array_record files under ``data_dir``.

  Returns:
    The ``name/config`` of each prepared dataset. Already prepared ones are kept.
  """
  data_dir = os.path.expanduser(data_dir)
  done = []
  for builder_cls in (LangNeuronSense, LangNeuronTranslation):
    for config in builder_cls.BUILDER_CONFIGS:
      builder = builder_cls(config=config.name, data_dir=data_dir, file_format="array_record")
      builder.download_and_prepare()
      done.append(f"{builder.name}/{config.name}")
  return done
