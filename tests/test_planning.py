"""The memory planner: parameter shares, XLA's forward memory, file sizes; the dry run."""

import os
import subprocess
import sys

import jax.numpy as jnp

from lang_neuron_jax.models import loading, planning

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


CHILD_SHARDED_PLAN = r"""
import sys, jax, jax.numpy as jnp
sys.path.insert(0, sys.argv[1])
from lang_neuron_jax.models import planning
from lang_neuron_jax.models.loading import abstract_params
from tests.test_decoder import tiny_config
assert jax.local_device_count() == 8
cfg = tiny_config(width=64, mlp_width=256, num_layers=4)
plan = planning.plan_memory(cfg, devices=8, batch_per_device=1, max_length=16)
layers = sum(p.size * 4 for k, p in abstract_params(cfg)["layer_0"].items()
             for p in jax.tree.leaves(p)) * cfg.num_layers
print(plan.forward_compiled_for, plan.largest_layer, plan.forward_temp, layers)
"""


def test_a_mesh_present_here_is_planned_from_its_sharded_compilation():
  # With the 8 devices here, the plan is XLA's analysis of the sharded forward itself:
  # its temporaries hold the weights gathered from the other devices (XLA:CPU gathers
  # every layer's at once, which the one-layer estimate missed by 25x on Llama-3.2-1B).
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  out = subprocess.run([sys.executable, "-c", CHILD_SHARDED_PLAN, ROOT], capture_output=True,
                       text=True, env=env, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  compiled_for, largest, temp, layers = out.stdout.strip().splitlines()[-1].rsplit(" ", 3)
  assert compiled_for == "cpu, float32, 8 device(s) here"
  assert int(largest) == 0  # inside forward_temp
  assert int(temp) >= int(layers) / 2, (temp, layers)


def test_a_plan_that_does_not_fit_says_what_to_change():
  import pytest

  from lang_neuron_jax.errors import UserError

  config = loading.load_config("llama2-13b")
  plan = planning.plan_memory(config, devices=2, dtype=jnp.float32)  # planned, not here
  assert plan.forward_compiled_for.endswith("(estimate: one layer gathered at a time)")
  planning.check_fits(plan, 64)  # 13B in float32 on 2 x 64 GB: fits, nothing raised
  with pytest.raises(UserError) as e:
    planning.check_fits(plan, 16, what="llama2-13b in float32")
  message = str(e.value)
  assert message.startswith("llama2-13b in float32 does not fit: the memory plan needs "
                            f"{plan.peak_per_device / planning.GB:.2f} GB per device on 2")
  assert f"at least {plan.devices_needed(16)} devices" in message
  assert "--dtype=bfloat16" in message
  assert "fewer generation rows (the sampler's working memory with its KV cache: " in message
  assert plan.devices_needed(16) >= 5  # 52 GB of parameters, 16 GB per device
  # The sampler's own working memory (KV cache, logits) is planned from its compilation.
  assert plan.generation_temp >= plan.kv_cache_per_device > 0
  assert plan.peak_per_device >= plan.params_per_device + plan.generation_temp
