"""Deprecated path of :mod:`lang_neuron_jax.models.loading`."""
from lang_neuron_jax._moved import alias; alias(__name__, "lang_neuron_jax.models.loading")  # pylint: disable=multiple-statements
