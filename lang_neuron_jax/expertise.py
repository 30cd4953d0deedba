"""Deprecated path: the AP kernels are :mod:`lang_neuron_jax.find.scoring`, the neuron
index and score types :mod:`lang_neuron_jax.neurons.expertise`."""
import warnings

from lang_neuron_jax.find.scoring import *  # noqa: F401,F403  pylint: disable=wildcard-import
from lang_neuron_jax.find.scoring import BACKENDS as METHODS  # noqa: F401  the old name
from lang_neuron_jax.neurons.expertise import *  # noqa: F401,F403  pylint: disable=wildcard-import

warnings.warn("lang_neuron_jax.expertise moved to lang_neuron_jax.find.scoring (AP) and "
              "lang_neuron_jax.neurons.expertise (Expertise, NeuronIndex); import them from "
              "there (the old path goes away in the next release).", DeprecationWarning,
              stacklevel=2)
