"""Placing parameters and data on a device mesh.

A simple, fully sharded layout: each parameter is split along its first axis whose size
the mesh's device count divides (over all mesh axes at once), and replicated when none
does (norm scales, small biases). jit then partitions the computation (GSPMD).

Where the rows of a batch (texts, generation rows) go is the *layout*, one of
:data:`LAYOUTS`:

- ``"data"`` (the default): rows are split over the devices. GSPMD gathers each weight
  from the other devices where it is used: data parallelism with sharded weights, which
  is what lets a 13B model fit on 8 devices of 16 GB of a GPU or TPU.
- ``"model"``: every device sees every row and the weights never move. Each device
  multiplies its slice of a weight (split along the input axis) with the rows and the
  partial sums are added across devices (an all-reduce of activations). XLA:CPU
  schedules the ``"data"`` layout's gathers for every layer at once, so on one host's CPU
  devices (which share its memory) only ``"model"`` keeps a sharded model's working
  memory near one device's slice (docs/scale.md has the measurements).
"""

from __future__ import annotations

import math

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

from lang_neuron_jax.errors import ConfigError


def local_mesh() -> Mesh:
  """A one-axis mesh of this process's devices, along which work is split: the texts of
  a batch, generation rows, scored units (with several processes, each uses its own)."""
  return Mesh(np.array(jax.local_devices()), ("data",))


def split_along(mesh: Mesh, axis: int = 0) -> NamedSharding:
  """Arrays split along ``axis`` over the devices of a one-axis ``mesh`` (the other axes
  replicated)."""
  return NamedSharding(mesh, PartitionSpec(*[None] * axis, mesh.axis_names[0]))


LAYOUTS = ("data", "model")


def check_layout(layout: str) -> None:
  """Raises a :class:`ConfigError` for a layout not in :data:`LAYOUTS`."""
  if layout not in LAYOUTS:
    raise ConfigError(f"Unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}.")


def rows_sharding(layout: str = "data", mesh: Mesh | None = None) -> NamedSharding:
  """Where a batch's rows go on ``mesh`` (default: :func:`local_mesh`): split along the
  rows for ``"data"``, on every device for ``"model"`` (see the module docstring)."""
  check_layout(layout)
  mesh = local_mesh() if mesh is None else mesh
  return split_along(mesh) if layout == "data" else NamedSharding(mesh, PartitionSpec())


def sharded_axis(shape: tuple[int, ...], num_devices: int) -> int | None:
  """The axis a parameter of ``shape`` is split along over ``num_devices`` (None: replicated)."""
  for axis, size in enumerate(shape):
    if num_devices > 1 and size % num_devices == 0:
      return axis
  return None


def param_sharding(shape: tuple[int, ...], mesh: Mesh) -> NamedSharding:
  """The sharding of one parameter of ``shape`` on ``mesh`` (see the module docstring)."""
  spec = [None] * len(shape)
  axis = sharded_axis(shape, math.prod(mesh.devices.shape))
  if axis is not None:
    spec[axis] = mesh.axis_names
  return NamedSharding(mesh, PartitionSpec(*spec))


def shard_params(params, mesh: Mesh):
  """Places a parameter tree on ``mesh`` with :func:`param_sharding`."""
  return jax.tree.map(lambda p: jax.device_put(p, param_sharding(p.shape, mesh)), params)
