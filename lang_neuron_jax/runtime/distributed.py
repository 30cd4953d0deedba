"""Several hosts: JAX's own multi-process runtime, shares of the work, barriers.

Start every process with :func:`initialize` (``jax.distributed.initialize``); then
``compute_responses`` gives each process every ``process_count``-th batch of texts
(written into the same memory-mapped files, so the work directory must be on a shared
file system), and the control stage gives each process every ``process_count``-th
generation row. Process 0 scores, analyses and writes the reports; the others wait at
barriers and read its results, so every process returns the same values.

With one process (the default) every function here is a no-op.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import jax

from lang_neuron_jax.errors import UserError

T = TypeVar("T")


def initialize(coordinator_address: str | None, num_processes: int, process_id: int) -> None:
  """``jax.distributed.initialize`` when ``num_processes > 1`` (CPU collectives use gloo)."""
  if num_processes <= 1:
    return
  if not coordinator_address:
    raise UserError("Several processes need a coordinator address (host:port of process 0).")
  if not 0 <= process_id < num_processes:
    raise UserError(f"process_id must be in [0, {num_processes}), got {process_id}.")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


def process_index() -> int:
  return jax.process_index()


def process_count() -> int:
  return jax.process_count()


def is_leader() -> bool:
  """Process 0 writes the shared outputs."""
  return jax.process_index() == 0


def share(items: Sequence[T]) -> list[T]:
  """This process's share of ``items``: every ``process_count``-th, from its index."""
  return list(items[jax.process_index()::jax.process_count()])


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier ``name`` (no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices(name)
