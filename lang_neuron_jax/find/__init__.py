"""The find stage: responses of every neuron to the corpora (``responses``), AP and the
statistics per language (``scoring``), and the resumable stage that writes them with
their analyses (``stage``)."""

from lang_neuron_jax.find.responses import compute_responses
from lang_neuron_jax.find.scoring import average_precision, score_units
from lang_neuron_jax.find.stage import (FIGURES, SCORES_FILE, FindConfig, FindResult, analyse,
                                        find_neurons, limited_file_names, load_scores,
                                        score_responses, write_limited_csv,
                                        write_reference_csv)

__all__ = ["compute_responses", "average_precision", "score_units", "FIGURES", "SCORES_FILE",
           "FindConfig", "FindResult", "analyse", "find_neurons", "limited_file_names",
           "load_scores", "score_responses", "write_limited_csv", "write_reference_csv"]
