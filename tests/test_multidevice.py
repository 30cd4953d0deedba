"""With 8 CPU devices, the sharded responses and AP equal the single-device results."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

import lang_neuron_jax as lnj
from lang_neuron_jax.find import scoring as expertise, responses
from tests.test_decoder import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import sys, numpy as np, jax, jax.numpy as jnp
sys.path.insert(0, sys.argv[1])
import lang_neuron_jax as lnj
from lang_neuron_jax.find import scoring as expertise, responses
from tests.test_decoder import tiny_config
assert len(jax.devices()) == 8, jax.devices()
ref = np.load(sys.argv[2])
cfg = tiny_config()
module = lnj.Decoder(cfg)
params = module.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"]
lm = lnj.LanguageModel(module, params, cfg, None, "tiny")
tokens = [list(t[t > 0]) for t in ref["tokens"]]
out = responses.compute_responses(lm, tokens, sys.argv[3], batch_size=8, progress=False)
np.testing.assert_allclose(out["up"], ref["up"], atol=1e-5, rtol=1e-5)
x = out["up"].reshape(len(tokens), -1)
scores = expertise.score_units(x, ref["labels"], chunk_size=16)
np.testing.assert_allclose(scores["ap"], ref["ap"], atol=1e-6)
for method in expertise.BACKENDS:  # "device" ones are sharded over the 8 devices
  s = expertise.score_units(ref["x"], ref["labels"], chunk_size=16, method=method)
  np.testing.assert_allclose(s["ap"], ref["ap_x"], atol=1e-6)
# The "model" layout: sharded weights that never move, every device sees every text.
from lang_neuron_jax.runtime import sharding
sharded = sharding.shard_params(params, sharding.local_mesh())
assert any(len(p.sharding.device_set) == 8 and not p.sharding.is_fully_replicated
           for p in jax.tree.leaves(sharded))
model = lnj.LanguageModel(module, sharded, cfg, None, "tiny", layout="model")
out = responses.compute_responses(model, tokens, sys.argv[3] + "_model", batch_size=8,
                                  progress=False)
np.testing.assert_allclose(out["up"], ref["up"], atol=1e-5, rtol=1e-5)
# ... and what it is for: with weights much bigger than a batch, the "data" layout's
# forward gathers them all (XLA:CPU), the "model" layout's holds near its own slice.
from lang_neuron_jax.models import planning
wide = cfg.replace(width=256, mlp_width=1024, head_dim=64, embed_scale=16.0)
plans = {layout: planning.plan_memory(wide, devices=8, texts=8, max_length=8,
                                      batch_per_device=1, generation_rows=8,
                                      generation_length=8, layout=layout)
         for layout in sharding.LAYOUTS}
# Measured: 5.4 MB against 1.1 MB (15.8 MB of weights); 9.7 against 1.2 with 8 layers.
assert plans["model"].forward_temp < plans["data"].forward_temp / 3, plans
print("OK")
"""


def test_sharded_results_equal_single_device(tmp_path):
  cfg = tiny_config()
  module = lnj.Decoder(cfg)
  params = module.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"]
  lm = lnj.LanguageModel(module, params, cfg, None, "tiny")
  rng = np.random.RandomState(0)
  tokens = [list(rng.randint(2, 60, rng.randint(2, 30))) for _ in range(21)]
  out = responses.compute_responses(lm, tokens, str(tmp_path / "one"), batch_size=8,
                                    progress=False)
  labels = np.stack([np.arange(21) % 3 == k for k in range(3)])
  x = np.round(rng.normal(size=(21, 50)), 1).astype(np.float32)
  padded = np.zeros((21, 30), np.int64)
  for i, t in enumerate(tokens):
    padded[i, :len(t)] = t
  np.savez(tmp_path / "ref.npz", tokens=padded, up=np.asarray(out["up"]), labels=labels,
           ap=expertise.score_units(np.asarray(out["up"]).reshape(21, -1), labels)["ap"],
           x=x, ap_x=expertise.score_units(x, labels)["ap"])
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  child = subprocess.run([sys.executable, "-c", CHILD, ROOT, str(tmp_path / "ref.npz"),
                          str(tmp_path / "eight")], capture_output=True, text=True, env=env,
                         timeout=600)
  assert child.returncode == 0 and "OK" in child.stdout, child.stderr[-3000:]


CHILD_LOAD = r"""
import sys, numpy as np, jax, jax.numpy as jnp
sys.path.insert(0, sys.argv[1])
import lang_neuron_jax as lnj
from jax.sharding import Mesh
mesh = Mesh(np.array(jax.devices()), ("data",))
lm = lnj.load_model(sys.argv[2], mesh=mesh)
emb = lm.params["embed"]["embedding"]
assert len(emb.sharding.device_set) == 8, emb.sharding
ref = np.load(sys.argv[3])
logits = lm.module.apply({"params": lm.params}, jnp.asarray(ref["ids"])).logits
np.testing.assert_allclose(np.asarray(logits), ref["logits"], atol=1e-5, rtol=1e-5)
print("OK")
"""


def test_loading_onto_a_mesh_shards_parameters(tmp_path):
  from tests.conftest import save_tiny_gemma3
  directory = str(tmp_path / "model")
  save_tiny_gemma3(directory, vocab_size=128, hidden_size=64, intermediate_size=96,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=16)
  lm = lnj.load_model(directory)
  ids = np.random.RandomState(0).randint(0, 128, (2, 9)).astype(np.int32)
  np.savez(tmp_path / "ref.npz", ids=ids,
           logits=np.asarray(lm.module.apply({"params": lm.params}, jnp.asarray(ids)).logits))
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  child = subprocess.run([sys.executable, "-c", CHILD_LOAD, ROOT, directory,
                          str(tmp_path / "ref.npz")], capture_output=True, text=True, env=env,
                         timeout=600)
  assert child.returncode == 0 and "OK" in child.stdout, child.stderr[-3000:]


CHILD_GENERATE = r"""
import sys, json, jax
sys.path.insert(0, sys.argv[1])
from lang_neuron_jax.generation import batching, sampling
from lang_neuron_jax.control import conditions, rows as control
from tests.test_control import toy_setup
assert len(jax.devices()) == 8
lm, exp = toy_setup()
conds = [conditions.BASELINE, conditions.condition("de", "both", 50), conditions.condition("en", "top", 20)]
jobs = [conditions.Job(c, (2, 7, 9)[:1 + i % 3], i) for c in conds for i in range(8)]
ids, _ = batching.pad_prompts([[2, 5]] * 16, lm.config.pad_token_id)
placed = sampling.shard_rows((ids,))[0]
assert len(placed.sharding.device_set) == 8, placed.sharding  # rows really are split
out = {}
for name, sampler in (("greedy", sampling.GREEDY), ("warm", sampling.Sampler(temperature=0.8))):
  out[name] = [r["tokens"] for r in control.run_jobs(lm, control.neuron_steering(exp), jobs, max_new_tokens=10,
               sampler=sampler, batch_size=16, progress=False)]
import dataclasses
from lang_neuron_jax.runtime import sharding
model = dataclasses.replace(lm, params=sharding.shard_params(lm.params, sharding.local_mesh()),
                            layout="model")
placed = sampling.shard_rows((ids,), "model")[0]
assert placed.sharding.is_fully_replicated and len(placed.sharding.device_set) == 8
out["model layout, greedy"] = [r["tokens"] for r in control.run_jobs(
    model, control.neuron_steering(exp), jobs, max_new_tokens=10, sampler=sampling.GREEDY,
    batch_size=16, progress=False)]
print(json.dumps(out))
"""


def test_sharded_sampler_rows_equal_single_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  child = subprocess.run([sys.executable, "-c", CHILD_GENERATE, ROOT], capture_output=True,
                         text=True, env=env, timeout=600)
  assert child.returncode == 0, child.stderr[-3000:]
  import json

  from lang_neuron_jax.control import conditions, rows as control
  from lang_neuron_jax.generation import sampling
  from tests.test_control import toy_setup
  got = json.loads(child.stdout.strip().splitlines()[-1])
  lm, exp = toy_setup()
  conds = [conditions.BASELINE, conditions.condition("de", "both", 50),
           conditions.condition("en", "top", 20)]
  jobs = [conditions.Job(c, (2, 7, 9)[:1 + i % 3], i) for c in conds for i in range(8)]
  for name, sampler in (("greedy", sampling.GREEDY), ("warm", sampling.Sampler(temperature=0.8))):
    ref = [r["tokens"] for r in control.run_jobs(lm, control.neuron_steering(exp), jobs, max_new_tokens=10,
                                                 sampler=sampler, batch_size=16, progress=False)]
    assert got[name] == ref, name
    if name == "greedy":
      assert got["model layout, greedy"] == ref
