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
from jax.sharding import Mesh
import numpy as np

from lang_neuron_jax.models.activations import pooled_taps
from lang_neuron_jax.errors import ConfigError, UserError
from lang_neuron_jax.generation import sampling
from lang_neuron_jax.models.loading import abstract_params
from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.runtime.sharding import (check_layout, param_sharding, rows_sharding,
                                              sharded_axis)

GB = 1024**3


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
  """Bytes per device (and on the host) for one model, dtype, mesh and workload.

  Attributes:
    devices: Devices in the mesh.
    dtype: Parameter dtype.
    params_total: Bytes of all parameters.
    params_per_device: Bytes of the largest device's share of the parameters.
    largest_layer: Bytes of one decoder layer's weights (gathered while it runs), when
      the plan is for a mesh this host does not have; 0 when the forward was compiled
      for the mesh itself, whose ``forward_temp`` includes every gathered weight.
    forward_temp: XLA's temporary bytes per device for the responses forward of
      ``batch_per_device`` texts of ``max_length`` tokens per device (compiled for the
      local backend: sharded over the mesh when its devices are here, else one device).
    forward_output: Bytes of that forward's pooled outputs.
    kv_cache_per_device: Bytes of the generation KV cache for ``generation_rows`` rows of
      ``generation_length`` tokens, batch-sharded over the devices.
    generation_temp: XLA's temporary bytes per device for the sampler on those rows
      (KV cache, logits and, on XLA:CPU with bfloat16 weights, their float32 copies),
      compiled like the forward.
    response_files: Bytes of the float32 ``.npy`` response files for ``texts`` texts (host disk).
    neurons: Neurons recorded per text.
    forward_compiled_for: The backend and dtype ``forward_temp`` was compiled for.
    layout: Where a batch's rows go (:data:`~lang_neuron_jax.runtime.sharding.LAYOUTS`).
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
  generation_temp: int = 0
  layout: str = "data"

  @property
  def peak_per_device(self) -> int:
    """Parameters + one gathered layer + the larger of the forward and generation needs."""
    return (self.params_per_device + self.largest_layer +
            max(self.forward_temp + self.forward_output, self.kv_cache_per_device,
                self.generation_temp))

  def fits(self, device_memory_gb: float) -> bool:
    return self.peak_per_device <= device_memory_gb * GB

  def host_bytes(self, process_bytes: int, *, devices_share_host: bool) -> int:
    """Peak resident memory of the host process: ``process_bytes`` (the process before
    loading: Python, JAX) plus, when the devices are the host's CPU devices and so share
    its memory, every device's :attr:`peak_per_device` and the response files (written
    through memory maps). Measured within 20% by ``benchmarks/billion.py``."""
    if not devices_share_host:
      return process_bytes
    # The response files are memory-mapped while the stage writes them: resident too.
    return process_bytes + self.devices * self.peak_per_device + self.response_files

  def devices_needed(self, device_memory_gb: float) -> int | None:
    """The fewest devices whose shares would fit, if only the parameters split further
    (None: even one device's fixed part, a gathered layer plus activations, is too big)."""
    fixed = self.peak_per_device - self.params_per_device
    room = device_memory_gb * GB - fixed
    return None if room <= 0 else max(self.devices, math.ceil(self.params_total / room))

  def table(self, device_memory_gb: float | None = None) -> str:
    rows = [
        ("parameters, all", self.params_total),
        (f"parameters per device ({self.devices} devices)", self.params_per_device),
        ("largest layer, gathered while it runs", self.largest_layer),
        ("responses forward: XLA temporaries per device", self.forward_temp),
        ("responses forward: pooled outputs per device", self.forward_output),
        ("generation KV cache per device", self.kv_cache_per_device),
        ("generation: XLA temporaries per device", self.generation_temp),
        ("peak per device (estimate)", self.peak_per_device),
        ("response files on the host disk", self.response_files),
    ]
    lines = [f"{name:48s} {b / GB:9.2f} GB" for name, b in rows]
    lines.append(f"{'forward compiled for':48s} {self.forward_compiled_for}")
    lines.append(f"{'layout (where a batch goes)':48s} {self.layout}")
    if device_memory_gb is not None:
      verdict = "fits" if self.fits(device_memory_gb) else "does NOT fit"
      lines.append(f"{'verdict':48s} {verdict} in {device_memory_gb:g} GB per device")
    return "\n".join(lines)


def device_memory_gb(devices: int) -> tuple[float, str]:
  """Memory per device for a plan's verdict, and where the figure comes from: the
  device's own limit (GPU, TPU), or on a CPU host its available memory (``MemAvailable``)
  shared by ``devices`` CPU devices."""
  device = jax.local_devices()[0]
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except  # backends without memory stats
    stats = None
  if stats and stats.get("bytes_limit"):
    return stats["bytes_limit"] / GB, f"{device.device_kind}'s limit"
  with open("/proc/meminfo") as f:
    available = next(int(line.split()[1]) * 1024 for line in f
                     if line.startswith("MemAvailable:"))
  return available / devices / GB, (f"the host's available {available / GB:.1f} GB shared by "
                                    f"{devices} CPU devices")


def check_fits(plan: MemoryPlan, device_memory_gb: float, *, what: str = "The model") -> None:
  """Raises a :class:`~lang_neuron_jax.errors.UserError` saying what to change when
  ``plan`` does not fit ``device_memory_gb`` per device (call it before loading)."""
  if plan.fits(device_memory_gb):
    return
  advice = []
  needed = plan.devices_needed(device_memory_gb)
  if needed is not None:
    advice.append(f"at least {needed} devices")
  if plan.dtype == "float32":
    advice.append("--dtype=bfloat16 (half the parameters' bytes)")
  forward = plan.forward_temp + plan.forward_output
  generation = max(plan.kv_cache_per_device, plan.generation_temp)
  if forward >= generation:
    advice.append(f"a smaller --batch_size (the forward's working memory, "
                  f"{forward / GB:.2f} GB per device, includes gathered weights)")
  else:
    advice.append(f"fewer generation rows (the sampler's working memory with its KV cache: "
                  f"{generation / GB:.2f} GB per device)")
  if plan.layout == "data" and plan.devices > 1:
    advice.append("--layout=model (every device sees the whole batch and gathers no "
                  "weight: what a sharded model needs on one host's CPU devices)")
  raise UserError(
      f"{what} does not fit: the memory plan needs {plan.peak_per_device / GB:.2f} GB per "
      f"device on {plan.devices} device(s) (parameters {plan.params_per_device / GB:.2f} GB), "
      f"more than {device_memory_gb:.2f} GB; use " + ", or ".join(advice) + ".")


def _bytes(shape, dtype) -> int:
  return math.prod(shape) * jnp.dtype(dtype).itemsize


def plan_memory(config: DecoderConfig, *, devices: int, dtype=jnp.float32, texts: int = 5873,
                max_length: int = 256, batch_per_device: int = 4, generation_rows: int = 64,
                generation_length: int = 192, layout: str = "data") -> MemoryPlan:
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
    layout: ``"data"`` (rows split over the devices, weights gathered where used) or
      ``"model"`` (every device sees every row; weights never move): see
      :mod:`lang_neuron_jax.runtime.sharding`. The batch is ``batch_per_device * devices``
      texts either way.
  """
  if devices < 1:
    raise ConfigError(f"devices must be positive, got {devices}.")
  check_layout(layout)
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

  if devices <= jax.local_device_count():
    # The mesh exists here: XLA's analysis of the very program that will run, sharded
    # as load_model(mesh=...) and the responses stage place it. Its temporaries include
    # the weights GSPMD gathers from the other devices, which XLA:CPU gathers for every
    # layer at once, not one layer at a time (measured with benchmarks/billion.py:
    # 3.66 GB per device for Llama-3.2-1B on 8 devices, where one layer is 0.11 GB), and
    # XLA:CPU's float32 copies of bfloat16 weights (it has no bfloat16 matmuls).
    forward_dtype = dtype
    mesh = Mesh(np.array(jax.local_devices()[:devices]), ("data",))
    by_text = rows_sharding(layout, mesh)
    forward_params = jax.tree.map(
        lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=param_sharding(p.shape, mesh)),
        params)
    ids = jax.ShapeDtypeStruct((batch_per_device * devices, max_length), jnp.int32,
                               sharding=by_text)
    mask = jax.ShapeDtypeStruct(ids.shape, jnp.bool_, sharding=by_text)
    gathered = 0  # in forward_temp
    compiled_for = f"{jax.default_backend()}, {jnp.dtype(dtype).name}, {devices} device(s) here"
  else:
    # Planning for a mesh this host does not have (e.g. GPUs, from a laptop): one
    # device's forward plus one gathered layer, an estimate (see the branch above for
    # what XLA:CPU does). XLA:CPU upcasts every bfloat16 weight to a float32 copy, which a
    # GPU or TPU does not: on a CPU host, plan a bfloat16 forward from its float32
    # compilation (float32 activations: an upper bound for them).
    forward_dtype = dtype
    if jax.default_backend() == "cpu" and jnp.dtype(dtype) == jnp.bfloat16:
      forward_dtype = jnp.float32
    forward_params = params if forward_dtype == dtype else abstract_params(config, forward_dtype)
    # "model": every device sees the whole batch and gathers no weight (its working
    # memory is then over-estimated by the other devices' share of any weight copies).
    local_rows = batch_per_device * (devices if layout == "model" else 1)
    ids = jax.ShapeDtypeStruct((local_rows, max_length), jnp.int32)
    mask = jax.ShapeDtypeStruct((local_rows, max_length), jnp.bool_)
    gathered = max(layer_bytes.values(), default=0) if layout == "data" else 0
    compiled_for = (f"{jax.default_backend()}, {jnp.dtype(forward_dtype).name}, one device "
                    "(estimate: one layer gathered at a time)")
  compiled = jax.jit(pooled_taps, static_argnums=0).lower(config, forward_params, ids,
                                                          mask).compile()
  analysis = compiled.memory_analysis()
  # Sharded outputs: bytes per device.
  output = int(analysis.output_size_in_bytes)
  neurons = sum(config.site_widths[s] for s in config.neuron_sites) * config.num_layers
  # The sampler, compiled like the forward: its KV cache, logits and (XLA:CPU, bfloat16)
  # float32 weight copies, which the KV cache alone missed by 5 GB on Llama-3.2-1B.
  whole = ids.sharding is not None or layout == "model"  # the rows of every device
  rows = -(-generation_rows // devices) * (devices if whole else 1)
  prompts = jax.ShapeDtypeStruct((rows, 1), jnp.int32, sharding=ids.sharding)
  generation = sampling.generate.lower(
      config, forward_params, prompts, jax.ShapeDtypeStruct((rows,), jnp.int32,
                                                            sharding=ids.sharding),
      max_new_tokens=max(1, generation_length - 1),
      sampler=sampling.Sampler(temperature=1.0)).compile().memory_analysis()
  head_dim = config.head_dim
  kv_rows = generation_rows if layout == "model" else -(-generation_rows // devices)
  kv = _bytes((2, config.num_layers, kv_rows, generation_length,
               config.num_kv_heads, head_dim), dtype)
  return MemoryPlan(
      devices=devices, dtype=jnp.dtype(dtype).name, params_total=total,
      params_per_device=per_device,
      largest_layer=gathered if devices > 1 else 0,
      forward_temp=int(analysis.temp_size_in_bytes),
      forward_output=output,
      kv_cache_per_device=kv, response_files=int(np.int64(texts) * neurons * 4),
      neurons=neurons, forward_compiled_for=compiled_for,
      generation_temp=int(generation.temp_size_in_bytes), layout=layout)
