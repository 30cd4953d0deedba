"""Placing parameters and data on a device mesh.

A simple, fully sharded layout: each parameter is split along its first axis whose size
the mesh's device count divides (over all mesh axes at once), and replicated when none
does (norm scales, small biases). jit then partitions the computation (GSPMD); with
batch-sharded inputs this is data parallelism with sharded weights, which is what lets
a 13B model fit on 8 devices of 16 GB.
"""

from __future__ import annotations

import math

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np


def local_mesh() -> Mesh:
  """A one-axis mesh of this process's devices, along which work is split: the texts of
  a batch, generation rows, scored units (with several processes, each uses its own)."""
  return Mesh(np.array(jax.local_devices()), ("data",))


def split_along(mesh: Mesh, axis: int = 0) -> NamedSharding:
  """Arrays split along ``axis`` over the devices of a one-axis ``mesh`` (the other axes
  replicated)."""
  return NamedSharding(mesh, PartitionSpec(*[None] * axis, mesh.axis_names[0]))


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
