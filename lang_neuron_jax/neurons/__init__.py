"""Neurons as data: their index and scores (``expertise``), the paper's selections and
the edit that fixes them (``selection``), and where they sit (``analysis``)."""

from lang_neuron_jax.neurons.expertise import Expertise, NeuronIndex, neuron_index
from lang_neuron_jax.neurons.selection import (NeuronSet, build_intervention, neuron_steer,
                                               select)

__all__ = ["Expertise", "NeuronIndex", "neuron_index", "NeuronSet", "build_intervention",
           "neuron_steer", "select"]
