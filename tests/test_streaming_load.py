"""Loading onto a device mesh streams the checkpoint: host memory peaks near the largest
tensor, not the model (a synthetic ~480 MB Llama checkpoint on 8 CPU devices)."""

import json
import os
import subprocess
import sys

# The test extra pins torch and transformers: a missing one is a broken install, which
# must fail here rather than skip the only check of streaming memory.
import torch  # noqa: F401
import transformers

SCRIPT = r"""
import json, sys
import jax, numpy as np
from jax.sharding import Mesh
import lang_neuron_jax as lnj

def status():
  fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
  return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}

mesh = Mesh(np.array(jax.devices()), ("d",))
jax.block_until_ready(jax.device_put(np.zeros(8, np.float32)))  # start the runtime
before = status()["VmRSS"]
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
lm = lnj.load_model(sys.argv[1], mesh=mesh)
jax.block_until_ready(lm.params)
after = status()
shards = {len(l.sharding.device_set) for l in jax.tree.leaves(lm.params)}
print(json.dumps({"before": before, "peak": after["VmHWM"], "after": after["VmRSS"],
                  "devices": len(jax.devices()), "shards": sorted(shards)}))
"""


def test_peak_host_memory_stays_near_the_largest_tensor(tmp_path):
  config = transformers.LlamaConfig(
      vocab_size=8000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
      num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=256)
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(config)
  model.save_pretrained(tmp_path / "ckpt", safe_serialization=True)
  model_bytes = sum(p.numel() for p in model.parameters()) * 4
  largest = 8000 * 1024 * 4  # the embedding (and the untied head)
  del model
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "ckpt")], env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  m = json.loads(out.stdout.strip().splitlines()[-1])
  assert m["devices"] == 8 and 8 in m["shards"]  # tensors really are split over the mesh
  assert model_bytes > 450e6
  # The sharded parameters live in host memory on CPU devices, so RSS grows by the model.
  assert m["after"] - m["before"] > 0.9 * model_bytes, m
  # Beyond that, the load never held more than a few copies of one tensor at once
  # (read, transposed, cast): far below a second copy of the model.
  transient = m["peak"] - m["after"]
  assert transient < 4 * largest, (transient / 1e6, largest / 1e6)
  assert transient < 0.3 * model_bytes
