"""The comparison of methods (AP neurons, LAPE neurons, DiffMean and probe directions) on
one model, one set of texts and samples, and one evaluator."""

from lang_neuron_jax.compare.stage import (DEFAULT_METHODS, CompareConfig, CompareResult,
                                           corpus_statistics, find_config, make_method,
                                           run_comparison, write_report)

__all__ = ["DEFAULT_METHODS", "CompareConfig", "CompareResult", "corpus_statistics",
           "find_config", "make_method", "run_comparison", "write_report"]
