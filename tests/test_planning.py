"""The memory planner: parameter shares, XLA's forward memory, file sizes; the dry run."""

import os
import subprocess
import sys

import jax.numpy as jnp

from lang_neuron_jax import loading, planning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_llama2_13b_fits_8_devices_of_16_gb_in_bfloat16():
  config = loading.load_config("llama2-13b")
  plan = planning.plan_memory(config, devices=8, dtype=jnp.bfloat16)
  # 13.0B parameters: embedding and head 32000 x 5120 each, 40 layers of 317.7M.
  assert abs(plan.params_total / 2 - 13_015_864_320) < 1e6
  assert plan.params_per_device < plan.params_total / 8 + 1e6  # everything but norms splits
  assert plan.largest_layer == 2 * (4 * 5120 * 5120 + 3 * 5120 * 13824 + 2 * 5120)
  assert plan.neurons == 40 * (5 * 5120 + 2 * 13824)
  assert plan.response_files == 5873 * plan.neurons * 4
  assert plan.fits(16) and not plan.fits(4)


def test_forward_memory_does_not_hold_every_layer_at_once():
  # Pooling per layer: the forward's temporaries stay near one layer's activations, not
  # [B, T, L, U] of all sites (which for this model at 4 x 256 tokens would be ~0.5 GB).
  config = loading.load_config("gemma3-270m")
  plan = planning.plan_memory(config, devices=1, batch_per_device=4, max_length=256)
  all_taps = 4 * 256 * plan.neurons * 4
  assert plan.forward_temp < all_taps / 4, (plan.forward_temp, all_taps)
  assert plan.largest_layer == 0  # nothing to gather on one device


def test_dry_run_binary_prints_a_plan_without_weights():
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", "find_neurons.py"),
       "--model=llama2-13b", "--dtype=bfloat16", "--dry_run", "--mesh_devices=8",
       "--device_memory_gb=16"], capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "2,129,920 neurons per text" in out.stdout
  assert "fits in 16 GB per device" in out.stdout
