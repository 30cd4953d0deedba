"""Deprecated path of :mod:`lang_neuron_jax.data.tfds`."""
from lang_neuron_jax._moved import alias; alias(__name__, "lang_neuron_jax.data.tfds")  # pylint: disable=multiple-statements
