"""Memory plans for big models: will a preset fit a device mesh, before loading anything.

``plan_memory`` answers, per device: parameters (as :mod:`lang_neuron_jax.runtime.sharding`
splits them over the mesh), the responses forward's working memory (from XLA's own
memory analysis of the compiled function, on abstract parameters: nothing is allocated),
the largest layer's weights (which GSPMD gathers while it runs that layer), the
generation KV cache; and on the host, the size of the response files.

  python experiments/find_neurons.py --model=llama2-13b --dtype=bfloat16 --dry_run \\
      --mesh_devices=8 --device_memory_gb=16
"""

from __future__ import annotations

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
import numpy as np

from lang_neuron_jax.activations import pooled_taps
from lang_neuron_jax.loading import abstract_params
from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.runtime.sharding import sharded_axis

GB = 1024**3


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
  """Bytes per device (and on the host) for one model, dtype, mesh and workload.

  Attributes:
    devices: Devices in the mesh.
    dtype: Parameter dtype.
    params_total: Bytes of all parameters.
    params_per_device: Bytes of the largest device's share of the parameters.
    largest_layer: Bytes of one decoder layer's weights (gathered while it runs).
    forward_temp: XLA's temporary bytes for the responses forward of ``batch_per_device``
      texts of ``max_length`` tokens on one device (compiled for the local backend).
    forward_output: Bytes of that forward's pooled outputs.
    kv_cache_per_device: Bytes of the generation KV cache for ``generation_rows`` rows of
      ``generation_length`` tokens, batch-sharded over the devices.
    response_files: Bytes of the float32 ``.npy`` response files for ``texts`` texts (host disk).
    neurons: Neurons recorded per text.
    forward_compiled_for: The backend and dtype ``forward_temp`` was compiled for.
  """

  devices: int
  dtype: str
  params_total: int
  params_per_device: int
  largest_layer: int
  forward_temp: int
  forward_output: int
  kv_cache_per_device: int
  response_files: int
  neurons: int
  forward_compiled_for: str = ""

  @property
  def peak_per_device(self) -> int:
    """Parameters + one gathered layer + the larger of the forward and generation needs."""
    return (self.params_per_device + self.largest_layer +
            max(self.forward_temp + self.forward_output, self.kv_cache_per_device))

  def fits(self, device_memory_gb: float) -> bool:
    return self.peak_per_device <= device_memory_gb * GB

  def table(self, device_memory_gb: float | None = None) -> str:
    rows = [
        ("parameters, all", self.params_total),
        (f"parameters per device ({self.devices} devices)", self.params_per_device),
        ("largest layer, gathered while it runs", self.largest_layer),
        ("responses forward: XLA temporaries per device", self.forward_temp),
        ("responses forward: pooled outputs per device", self.forward_output),
        ("generation KV cache per device", self.kv_cache_per_device),
        ("peak per device (estimate)", self.peak_per_device),
        ("response files on the host disk", self.response_files),
    ]
    lines = [f"{name:48s} {b / GB:9.2f} GB" for name, b in rows]
    lines.append(f"{'forward compiled for':48s} {self.forward_compiled_for}")
    if device_memory_gb is not None:
      verdict = "fits" if self.fits(device_memory_gb) else "does NOT fit"
      lines.append(f"{'verdict':48s} {verdict} in {device_memory_gb:g} GB per device")
    return "\n".join(lines)


def _bytes(shape, dtype) -> int:
  return math.prod(shape) * jnp.dtype(dtype).itemsize


def plan_memory(config: DecoderConfig, *, devices: int, dtype=jnp.float32, texts: int = 5873,
                max_length: int = 256, batch_per_device: int = 4, generation_rows: int = 64,
                generation_length: int = 192) -> MemoryPlan:
  """A :class:`MemoryPlan` (compiles the forward for the local backend; allocates nothing).

  Args:
    config: The model's config (e.g. ``loading.all_presets()["llama2-13b"]``).
    devices: Devices the parameters are sharded over (and the batch split across).
    dtype: Parameter dtype.
    texts: Texts whose responses are recorded (the paper's corpora: 5,873 distinct).
    max_length: Longest text, in tokens.
    batch_per_device: Texts per device per forward pass.
    generation_rows: Generation rows per call (over all devices).
    generation_length: Prompt + new tokens of a generation row.
  """
  if devices < 1:
    raise ValueError(f"devices must be positive, got {devices}.")
  params = abstract_params(config, dtype)
  leaves = jax.tree_util.tree_leaves_with_path(params)
  total = sum(_bytes(p.shape, p.dtype) for _, p in leaves)
  per_device = 0
  for _, p in leaves:
    axis = sharded_axis(p.shape, devices)
    per_device += _bytes(p.shape, p.dtype) // (devices if axis is not None else 1)
  layer_bytes: dict[str, int] = {}
  for path, p in leaves:
    name = jax.tree_util.keystr(path)
    match = re.search(r"layers?_(\d+)", name)
    if match:
      layer_bytes[match.group(1)] = layer_bytes.get(match.group(1), 0) + _bytes(p.shape, p.dtype)

  # XLA:CPU has no bfloat16 matmuls: it upcasts every bfloat16 weight to a float32 copy
  # up front, which is not what a GPU or TPU does. On a CPU host, plan a bfloat16
  # forward from its float32 compilation (an upper bound: float32 activations).
  forward_dtype = dtype
  if jax.default_backend() == "cpu" and jnp.dtype(dtype) == jnp.bfloat16:
    forward_dtype = jnp.float32
  forward_params = params if forward_dtype == dtype else abstract_params(config, forward_dtype)
  ids = jax.ShapeDtypeStruct((batch_per_device, max_length), jnp.int32)
  mask = jax.ShapeDtypeStruct((batch_per_device, max_length), jnp.bool_)
  compiled = jax.jit(pooled_taps, static_argnums=0).lower(config, forward_params, ids,
                                                                  mask).compile()
  analysis = compiled.memory_analysis()
  neurons = sum(config.site_widths[s] for s in config.neuron_sites) * config.num_layers
  head_dim = config.head_dim
  kv = _bytes((2, config.num_layers, -(-generation_rows // devices), generation_length,
               config.num_kv_heads, head_dim), dtype)
  return MemoryPlan(
      devices=devices, dtype=jnp.dtype(dtype).name, params_total=total,
      params_per_device=per_device,
      largest_layer=max(layer_bytes.values(), default=0) if devices > 1 else 0,
      forward_temp=int(analysis.temp_size_in_bytes),
      forward_output=int(analysis.output_size_in_bytes),
      kv_cache_per_device=kv, response_files=int(np.int64(texts) * neurons * 4),
      neurons=neurons,
      forward_compiled_for=f"{jax.default_backend()}, {jnp.dtype(forward_dtype).name}")
