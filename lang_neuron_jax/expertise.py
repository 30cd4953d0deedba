"""Deprecated path of :mod:`lang_neuron_jax.find.scoring`."""
from lang_neuron_jax._moved import alias; alias(__name__, "lang_neuron_jax.find.scoring")  # pylint: disable=multiple-statements
