"""The TFDS builders write array_record files that read back (without TensorFlow) as the
same corpora and translation pairs as the shipped JSON files."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from lang_neuron_jax.data import corpora as data, tfds as tfds_datasets


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("tfds")
  prepared = tfds_datasets.prepare(str(out))
  assert "lang_neuron_sense/ja" in prepared and "lang_neuron_translation/wmt_en_de" in prepared
  return str(out)


def test_corpus_from_tfds_equals_json(data_dir):
  from_json = data.load_corpus()
  from_tfds = data.load_corpus(tfds_name="lang_neuron_sense", tfds_data_dir=data_dir)
  assert from_tfds.languages == from_json.languages
  assert from_tfds.texts == from_json.texts
  np.testing.assert_array_equal(from_tfds.weights, from_json.weights)
  np.testing.assert_array_equal(from_tfds.positive, from_json.positive)
  assert len(from_json.texts) == 5873 and from_json.weights.sum() == 18000


def test_translation_records_equal_jsonl(data_dir):
  source = tfds.data_source("lang_neuron_translation/flores200_en_ja", split="train",
                            data_dir=data_dir)
  records = sorted((source[i] for i in range(len(source))), key=lambda r: r["index"])
  pairs = [(r["en"].decode(), r["target"].decode()) for r in records]
  assert pairs == data.load_translation_pairs("flores200", "ja")


def test_tfds_errors_say_what_to_do(data_dir, tmp_path):
  with pytest.raises(data.CorpusError, match="Prepare it first"):
    data.load_corpus(("en", "de"), tfds_name="lang_neuron_sense", tfds_data_dir=str(tmp_path))
  with pytest.raises(data.CorpusError, match="check the language code"):
    data.load_corpus(("en", "xx"), tfds_name="lang_neuron_sense", tfds_data_dir=data_dir)
  with pytest.raises(data.CorpusError, match="not both"):
    data.load_corpus(("en", "de"), corpus_dir=str(tmp_path), tfds_name="lang_neuron_sense")


def test_find_stage_reads_a_tfds_dataset(data_dir, tiny_gemma3_with_tokenizer, tmp_path):
  import lang_neuron_jax as lnj
  from lang_neuron_jax.find import stage as find

  lm = lnj.load_model(tiny_gemma3_with_tokenizer)
  common = dict(languages=("en", "de", "ja"), positives_per_language=10, n=10)
  via_tfds = find.find_neurons(lm, find.FindConfig(
      tfds_name="lang_neuron_sense", tfds_data_dir=data_dir, **common), str(tmp_path / "a"),
                               progress=False)
  via_json = find.find_neurons(lm, find.FindConfig(**common), str(tmp_path / "b"),
                               progress=False)
  np.testing.assert_array_equal(via_tfds.expertise.ap, via_json.expertise.ap)
