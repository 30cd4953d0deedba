"""Method-agnostic generation: tokenization and padding (``batching``), the jitted
``while_loop`` sampler (``sampling``) and continuous batching (``continuous``). An
intervention is an argument of these functions, never a part of them."""

from lang_neuron_jax.generation.sampling import (GREEDY, Sampler, generate,
                                                 generate_text)

__all__ = ["GREEDY", "Sampler", "generate", "generate_text"]
