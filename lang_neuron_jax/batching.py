"""Deprecated path of :mod:`lang_neuron_jax.generation.batching`."""
from lang_neuron_jax._moved import alias; alias(__name__, "lang_neuron_jax.generation.batching")  # pylint: disable=multiple-statements
