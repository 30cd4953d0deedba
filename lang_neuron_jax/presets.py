"""Deprecated path of :mod:`lang_neuron_jax.study`."""
from lang_neuron_jax._moved import alias; alias(__name__, "lang_neuron_jax.study")  # pylint: disable=multiple-statements
