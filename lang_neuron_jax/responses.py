"""Deprecated path of :mod:`lang_neuron_jax.find.responses`."""
from lang_neuron_jax._moved import alias; alias(__name__, "lang_neuron_jax.find.responses")  # pylint: disable=multiple-statements
