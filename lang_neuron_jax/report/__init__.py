"""On top of the stages: figures (``figures``) and the study's markdown report
(``study``). Stages write data; the report reads their typed results."""

from lang_neuron_jax.report.study import pick_examples, write_report

__all__ = ["pick_examples", "write_report"]
