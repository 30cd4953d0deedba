"""One evaluator for every method: language ID, the loop and incoherence rules, BLEU/chrF
and perplexity (``measures``), perplexity and coherence under the unintervened model
(``scoring``), per-condition summaries with paired tests (``metrics``), intervals
(``uncertainty``) and the fluency cost of a setting (``cost``)."""

from lang_neuron_jax.evaluation.cost import within_cost
from lang_neuron_jax.evaluation.measures import (identify_language, incoherence_thresholds,
                                                 is_degenerate,
                                                 is_incoherent, is_valid_target,
                                                 language_shares, perplexity, reads_as_text,
                                                 translation_scores)

__all__ = ["identify_language", "incoherence_thresholds", "is_degenerate", "is_incoherent", "is_valid_target",
           "language_shares", "perplexity", "reads_as_text", "translation_scores",
           "within_cost"]
