"""Deprecated path of :mod:`lang_neuron_jax.models.tokenizer`."""
from lang_neuron_jax._moved import alias; alias(__name__, "lang_neuron_jax.models.tokenizer")  # pylint: disable=multiple-statements
