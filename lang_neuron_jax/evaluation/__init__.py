"""One evaluator for every method: language ID, degeneration, BLEU/chrF and perplexity
(``measures``), per-condition summaries with paired tests (``metrics``) and intervals
(``uncertainty``)."""

from lang_neuron_jax.evaluation.measures import (identify_language, is_degenerate,
                                                 is_valid_target, language_shares, perplexity,
                                                 translation_scores)

__all__ = ["identify_language", "is_degenerate", "is_valid_target", "language_shares",
           "perplexity", "translation_scores"]
