"""The control experiments: conditions and jobs (``conditions``), how rows are generated
under steering (``rows``), and the resumable unconditional and translation stage
(``stage``)."""

from lang_neuron_jax.control.conditions import (BASELINE, MAIN_N, TRANSLATION_PROMPT,
                                                UNCONDITIONAL_NS, Condition, Job)
from lang_neuron_jax.control.rows import (Steering, balanced_batch_size, neuron_steering,
                                          run_jobs)
from lang_neuron_jax.control.stage import ControlConfig, ControlResult, run_control

__all__ = ["BASELINE", "MAIN_N", "TRANSLATION_PROMPT", "UNCONDITIONAL_NS", "Condition", "Job",
           "Steering", "balanced_batch_size", "neuron_steering", "run_jobs",
           "ControlConfig", "ControlResult", "run_control"]
