"""Deprecated path of :mod:`lang_neuron_jax.neurons.selection`."""
from lang_neuron_jax._moved import alias; alias(__name__, "lang_neuron_jax.neurons.selection")  # pylint: disable=multiple-statements
