"""lang_neuron_jax: find and control language-specific neurons in decoder LMs (JAX/Flax)."""

from lang_neuron_jax.loading import DEFAULT_MODEL, LanguageModel, load_model
from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.models.decoder import Decoder, KVCache, init_cache
from lang_neuron_jax.models.taps import (ALL_SITES, NEURON_SITES, Intervention, SiteEdit, Tap,
                                         collect_taps, tap_filter)
