"""lang_neuron_jax: find and control language-specific neurons in decoder LMs (JAX/Flax).

The public API, by group (each a pure function or a frozen dataclass):

Loading
  load_model, LanguageModel, DEFAULT_MODEL, DecoderConfig, Decoder, DecoderOutput, KVCache,
  init_cache
Activations
  capture_taps, pooled_taps, Tap, tap_filter, collect_taps, NEURON_SITES, ALL_SITES
Data
  load_corpus, Corpus, load_translation_pairs
Scoring and selection
  compute_responses, score_units, average_precision, find_neurons, FindConfig,
  Expertise, NeuronIndex, neuron_index, NeuronSet, select, build_intervention
Interventions and generation
  Intervention, SiteEdit, generate, generate_text, Sampler, GREEDY
Evaluation
  identify_language, language_shares, translation_scores
"""

# Loading.
from lang_neuron_jax.loading import DEFAULT_MODEL, LanguageModel, load_model
from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.models.decoder import Decoder, DecoderOutput, KVCache, init_cache

# Activations.
from lang_neuron_jax.activations import capture_taps, pooled_taps
from lang_neuron_jax.models.taps import (ALL_SITES, NEURON_SITES, Intervention, SiteEdit, Tap,
                                         collect_taps, tap_filter)

# Data.
from lang_neuron_jax.data.corpora import Corpus, load_corpus, load_translation_pairs

# Scoring and selection.
from lang_neuron_jax.find.scoring import (Expertise, NeuronIndex, average_precision, neuron_index,
                                       score_units)
from lang_neuron_jax.find.stage import FindConfig, find_neurons
from lang_neuron_jax.find.responses import compute_responses
from lang_neuron_jax.neurons.selection import NeuronSet, build_intervention, select

# Interventions and generation.
from lang_neuron_jax.generation.sampling import GREEDY, Sampler, generate, generate_text

# Evaluation.
from lang_neuron_jax.evaluation.measures import identify_language, language_shares, translation_scores

__all__ = [
    "DEFAULT_MODEL", "LanguageModel", "load_model", "DecoderConfig", "Decoder", "DecoderOutput",
    "KVCache", "init_cache", "capture_taps", "pooled_taps", "ALL_SITES", "NEURON_SITES",
    "Intervention", "SiteEdit", "Tap", "collect_taps", "tap_filter", "Corpus", "load_corpus",
    "load_translation_pairs", "average_precision", "score_units", "FindConfig", "find_neurons",
    "compute_responses", "Expertise", "NeuronIndex", "neuron_index", "NeuronSet",
    "build_intervention", "select", "GREEDY", "Sampler", "generate", "generate_text",
    "identify_language", "language_shares", "translation_scores",
]
