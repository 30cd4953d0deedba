"""Flags shared by the binaries for multi-host runs (JAX's own runtime).

Start the same command on every host with its --process_id:

  python experiments/reproduce.py --num_processes=2 --process_id=0 \\
      --coordinator_address=host0:1234 --workdir=/shared/run
"""

from absl import flags

from lang_neuron_jax.runtime import distributed

_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (several processes only).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "This process's index.")


def initialize() -> None:
  """``jax.distributed.initialize`` from the flags (no-op for one process)."""
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
