"""Deprecated path of :mod:`lang_neuron_jax.generation.sampling`."""
from lang_neuron_jax._moved import alias; alias(__name__, "lang_neuron_jax.generation.sampling")  # pylint: disable=multiple-statements
