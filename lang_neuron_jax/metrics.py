"""Deprecated path of :mod:`lang_neuron_jax.evaluation.metrics`."""
from lang_neuron_jax._moved import alias; alias(__name__, "lang_neuron_jax.evaluation.metrics")  # pylint: disable=multiple-statements
