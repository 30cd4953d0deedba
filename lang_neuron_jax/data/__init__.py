"""The corpora and translation sets (shipped beside this module, see README.md here) and
their TensorFlow Datasets builders (``tfds``)."""

from lang_neuron_jax.data.corpora import (DATA_DIR, EXAMPLE_PROMPTS, PAPER_LANGUAGES, SENSE_DIR,
                                          TRANSLATION_DIR, Corpus, CorpusError,
                                          available_languages, available_translation_sets, language_index,
                                          filter_corpus, load_corpus, load_translation_pairs)

__all__ = ["DATA_DIR", "EXAMPLE_PROMPTS", "PAPER_LANGUAGES", "SENSE_DIR", "TRANSLATION_DIR",
           "Corpus", "CorpusError", "available_languages", "available_translation_sets",
           "filter_corpus", "language_index", "load_corpus", "load_translation_pairs"]
