"""Deprecated path of :mod:`lang_neuron_jax.control.stage`."""
from lang_neuron_jax._moved import alias; alias(__name__, "lang_neuron_jax.control.stage")  # pylint: disable=multiple-statements
