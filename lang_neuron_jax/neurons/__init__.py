"""Neurons as data: their index and scores (``expertise``), the paper's selections and
the intervention that fixes them (``selection``), and where they sit (``analysis``)."""

from lang_neuron_jax.neurons.selection import NeuronSet, build_intervention, select

__all__ = ["NeuronSet", "build_intervention", "select"]
