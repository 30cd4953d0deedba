"""lang_neuron_jax: find and control language-specific neurons in decoder LMs (JAX/Flax).

The package is a map of the study (``ls lang_neuron_jax/``):

  models/      one Flax decoder, family files, conversion, taps, loading, tokenizers,
               activations, the memory plan
  data/        the paper's corpora and translation sets, TFDS builders
  find/        responses of every neuron, AP scoring, the find stage
  neurons/     neuron index and scores, the paper's selections, analyses
  methods/     AP, LAPE, DiffMean and probe behind one interface
  generation/  the jitted sampler, continuous batching, batching (method-agnostic)
  control/     conditions, rows under steering, the control stage
  evaluation/  language ID, loop and incoherence rules, BLEU/chrF, perplexity, metrics,
               intervals, fluency cost
  compare/     the comparison of methods
  report/      figures and the markdown reports (on top of the stages)
  runtime/     stages, artifacts, cache, locks, multi-host, sharding, the binaries' errors
  study.py     the presets and run_study, the whole study in one call
  errors.py    every bad-input error

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
  Expertise, NeuronIndex, neuron_index, NeuronSet, select, neuron_steer, build_intervention
Interventions and generation
  Intervention, SiteEdit, generate, generate_text, Sampler, GREEDY
Control, comparison, the whole study
  run_control, ControlConfig, run_comparison, CompareConfig, run_study, Study, QUICK,
  DEFAULT, PAPER
Evaluation
  identify_language, language_shares, translation_scores
Errors
  UserError (and its subclasses in lang_neuron_jax.errors)
"""

# Loading.
from lang_neuron_jax.models.loading import DEFAULT_MODEL, LanguageModel, load_model
from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.models.decoder import Decoder, DecoderOutput, KVCache, init_cache

# Activations.
from lang_neuron_jax.models.activations import capture_taps, pooled_taps
from lang_neuron_jax.models.taps import (ALL_SITES, NEURON_SITES, Intervention, SiteEdit, Tap,
                                         collect_taps, tap_filter)

# Data.
from lang_neuron_jax.data.corpora import Corpus, load_corpus, load_translation_pairs

# Scoring and selection.
from lang_neuron_jax.find.responses import compute_responses
from lang_neuron_jax.find.scoring import average_precision, score_units
from lang_neuron_jax.find.stage import FindConfig, find_neurons
from lang_neuron_jax.neurons.expertise import Expertise, NeuronIndex, neuron_index
from lang_neuron_jax.neurons.selection import (NeuronSet, build_intervention, neuron_steer,
                                               select)

# Interventions and generation.
from lang_neuron_jax.generation.sampling import GREEDY, Sampler, generate, generate_text

# Control, comparison, the whole study.
from lang_neuron_jax.compare.stage import CompareConfig, run_comparison
from lang_neuron_jax.control.stage import ControlConfig, run_control
from lang_neuron_jax.study import DEFAULT, PAPER, QUICK, Study, run_study

# Evaluation.
from lang_neuron_jax.evaluation.measures import (identify_language, language_shares,
                                                 translation_scores)

# Errors.
from lang_neuron_jax.errors import UserError

__all__ = [
    "DEFAULT_MODEL", "LanguageModel", "load_model", "DecoderConfig", "Decoder", "DecoderOutput",
    "KVCache", "init_cache", "capture_taps", "pooled_taps", "ALL_SITES", "NEURON_SITES",
    "Intervention", "SiteEdit", "Tap", "collect_taps", "tap_filter", "Corpus", "load_corpus",
    "load_translation_pairs", "average_precision", "score_units", "FindConfig", "find_neurons",
    "compute_responses", "Expertise", "NeuronIndex", "neuron_index", "NeuronSet",
    "build_intervention", "neuron_steer", "select", "GREEDY", "Sampler", "generate",
    "generate_text", "CompareConfig", "run_comparison", "ControlConfig", "run_control",
    "DEFAULT", "PAPER", "QUICK", "Study", "run_study", "identify_language", "language_shares",
    "translation_scores", "UserError",
]
