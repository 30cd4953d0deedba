"""The comparison of methods (AP neurons, LAPE neurons, DiffMean and probe directions) on
one model, one set of texts and samples, and one evaluator: what it runs (``config``), the
resumable stages (``stage``), how it chooses each method's strength on one half of the
samples and tests it on the other (``choice``) and what its records say (``summary``);
its report is :mod:`lang_neuron_jax.report.comparison`."""

from lang_neuron_jax.compare.config import (DEFAULT_METHODS, METHODS, CompareConfig,
                                            find_config, make_method)
from lang_neuron_jax.compare.stage import CompareResult, corpus_statistics, run_comparison
from lang_neuron_jax.compare.summary import best_settings, summarize, translation_strengths
from lang_neuron_jax.report.comparison import write_report

__all__ = ["DEFAULT_METHODS", "METHODS", "CompareConfig", "find_config", "make_method",
           "CompareResult", "corpus_statistics", "run_comparison", "best_settings",
           "summarize", "translation_strengths", "write_report"]
