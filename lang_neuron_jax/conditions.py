"""Deprecated path of :mod:`lang_neuron_jax.control.conditions`."""
from lang_neuron_jax._moved import alias; alias(__name__, "lang_neuron_jax.control.conditions")  # pylint: disable=multiple-statements
