"""A billion-parameter model end to end: checkpoint, sharded load, find, selection,
an intervened generation; peak host memory against the memory plan.

A Llama-3.2-1B-shaped model (the ``llama3.2-1b`` preset: width 2048, 16 layers, 32 heads,
8 KV heads, head dim 64, MLP 8192, vocabulary 128,256, tied embeddings, llama3 RoPE
scaling; 1.24B parameters) with random weights in bfloat16 is written as a transformers
checkpoint directory (``config.json`` + sharded bfloat16 safetensors, written with
``safetensors`` directly: no torch), then:

1. the memory plan (:func:`lang_neuron_jax.models.planning.plan_memory`, what ``--dry_run``
   prints) for the mesh, with its verdict against ``--device_memory_gb`` (default: the
   device's own limit; on a CPU host, the host's available memory shared by the devices):
   a model that does not fit stops here, in one line, before anything is loaded;
2. ``lnj.load_model(dir, dtype=bfloat16, mesh=...)``, each tensor sharded as it is read;
3. ``find_neurons`` on the paper's corpora, the first ``--positives`` positives per
   language and negatives in proportion (the tokenizer of a random model is a stand-in
   that gives each text random ids of its real Gemma 3 token count:
   ``benchmarks/data/corpus_token_lengths.json``);
4. the German top+bottom set of N = 2,000 and a generation with it fixed;
5. peak host memory: ``ru_maxrss`` and RSS sampled every 0.1 s per phase, against the plan.

On a CPU host all devices share the host's memory, so the plan's host figure is the
process before loading plus every device's share (``MemoryPlan.host_bytes``).

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/billion.py \\
      --out=/tmp/billion.json
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

_PRESET = flags.DEFINE_string("preset", "llama3.2-1b", "Preset whose shape is built.")
_DTYPE = flags.DEFINE_enum("dtype", "bfloat16", ["float32", "bfloat16"], "Parameter dtype.")
_DEVICES = flags.DEFINE_integer("devices", None, "Devices in the mesh (default: all local).")
_DEVICE_MEMORY_GB = flags.DEFINE_float("device_memory_gb", None, "Memory per device for the "
                                       "plan's verdict (default: see the module docstring).")
_LAYOUT = flags.DEFINE_enum("layout", "auto", ["auto", "data", "model"], "Where a batch's "
                            "rows go (lang_neuron_jax.runtime.sharding): auto is model on "
                            "several CPU devices of one host, else data.")
_POSITIVES = flags.DEFINE_integer("positives", 10, "Positives per language in find (10 gives "
                                  "a few hundred distinct texts).")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Texts per forward pass.")
_ROWS = flags.DEFINE_integer("rows", 8, "Rows of the intervened generation.")
_TOKENS = flags.DEFINE_integer("tokens", 32, "New tokens per row.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the checkpoint and the find stage go "
                               "(default: a temporary directory, removed at the end).")
_OUT = flags.DEFINE_string("out", None, "Write the figures as JSON here.")
_MAX_RSS_GB = flags.DEFINE_float("max_rss_gb", 10.0, "Stop the process (exit 3) when its "
                                 "resident memory passes this, on a host shared with others.")

PROG = "billion.py"
GB = 1024 ** 3


def fail(message: str) -> None:
  sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")
  sys.exit(1)


def parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))


class RssSampler:
  """Samples this process's resident set (``VmRSS``) every ``interval`` seconds; the
  largest value per phase."""

  def __init__(self, interval: float = 0.1, limit: float | None = None):
    self.interval, self.phase, self.peaks, self.limit = interval, "start", {}, limit
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()

  @staticmethod
  def rss() -> int:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) * 1024
    return 0

  def _run(self):
    while not self._stop.is_set():
      value = self.rss()
      self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), value)
      if self.limit and value > self.limit:
        sys.stderr.write(f"{PROG}: error: resident memory {value / GB:.2f} GB passed "
                         f"--max_rss_gb={self.limit / GB:g} during {self.phase!r}; stopped. "
                         f"Peaks so far: { {k: round(v / GB, 2) for k, v in self.peaks.items()} }\n")
        sys.stderr.flush()
        os._exit(3)
      self._stop.wait(self.interval)

  def enter(self, phase: str):
    self.phase = phase
    self.peaks[phase] = max(self.peaks.get(phase, 0), self.rss())
    print(f"[{time.strftime('%H:%M:%S')}] {phase} (RSS {self.rss() / GB:.2f} GB)", flush=True)

  def stop(self):
    self._stop.set()
    self._thread.join()


def ru_maxrss() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def hf_config(cfg, dtype_name: str) -> dict:
  """transformers' ``config.json`` of a Llama-family config."""
  out = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
         "hidden_size": cfg.width, "intermediate_size": cfg.mlp_width,
         "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
         "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
         "vocab_size": cfg.vocab_size, "max_position_embeddings": 131_072,
         "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_base_global,
         "tie_word_embeddings": cfg.tie_embeddings, "hidden_act": "silu",
         "attention_bias": False, "mlp_bias": False, "bos_token_id": cfg.bos_token_id,
         "eos_token_id": cfg.eos_token_id, "torch_dtype": dtype_name}
  llama3 = getattr(cfg, "rope_llama3", None)
  if llama3 is not None:
    factor, low, high, original = llama3
    out["rope_scaling"] = {"rope_type": "llama3", "factor": factor, "low_freq_factor": low,
                           "high_freq_factor": high,
                           "original_max_position_embeddings": int(original)}
  return out


def write_checkpoint(cfg, directory: str, dtype_name: str, seed: int = 0) -> int:
  """Random weights (normal, std 0.02; norms 1) as transformers' sharded safetensors, one
  shard per few layers so that host memory stays near one shard. Returns bytes written."""
  import ml_dtypes
  import numpy as np
  from safetensors.numpy import save_file

  dtype = ml_dtypes.bfloat16 if dtype_name == "bfloat16" else np.float32
  rng = np.random.default_rng(seed)
  d, f, h = cfg.width, cfg.mlp_width, cfg.head_dim
  normal = lambda *shape: (rng.standard_normal(shape, np.float32) * 0.02).astype(dtype)
  ones = lambda n: np.ones(n, dtype)
  per_shard = 4  # layers per file

  def embedding():
    out = {"model.embed_tokens.weight": normal(cfg.vocab_size, d), "model.norm.weight": ones(d)}
    if not cfg.tie_embeddings:
      out["lm_head.weight"] = normal(cfg.vocab_size, d)
    return out

  def layers(start):
    out = {}
    for i in range(start, min(start + per_shard, cfg.num_layers)):
      p = f"model.layers.{i}."
      out.update({
          p + "input_layernorm.weight": ones(d), p + "post_attention_layernorm.weight": ones(d),
          p + "self_attn.q_proj.weight": normal(cfg.num_heads * h, d),
          p + "self_attn.k_proj.weight": normal(cfg.num_kv_heads * h, d),
          p + "self_attn.v_proj.weight": normal(cfg.num_kv_heads * h, d),
          p + "self_attn.o_proj.weight": normal(d, cfg.num_heads * h),
          p + "mlp.gate_proj.weight": normal(f, d), p + "mlp.up_proj.weight": normal(f, d),
          p + "mlp.down_proj.weight": normal(d, f)})
    return out

  makers = [embedding] + [lambda s=s: layers(s) for s in range(0, cfg.num_layers, per_shard)]
  os.makedirs(directory, exist_ok=True)
  weight_map, total = {}, 0
  for k, make in enumerate(makers):  # One shard in memory at a time.
    tensors = make()
    name = f"model-{k + 1:05d}-of-{len(makers):05d}.safetensors"
    save_file(tensors, os.path.join(directory, name), metadata={"format": "pt"})
    total += sum(t.nbytes for t in tensors.values())
    weight_map.update({key: name for key in tensors})
    del tensors
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(hf_config(cfg, dtype_name), f, indent=1)
  with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
  return total


def llama32_1b(llama2):
  """Llama-3.2-1B's config, where the ``llama3.2-1b`` preset does not exist (yet)."""
  cfg = llama2.replace(vocab_size=128_256, width=2048, num_layers=16, num_heads=32,
                       num_kv_heads=8, head_dim=64, mlp_width=8192,
                       layer_kinds=("global",) * 16, rope_base_global=500_000.0,
                       rope_base_local=500_000.0,
                       query_scale=64 ** -0.5, tie_embeddings=True, bos_token_id=128_000,
                       eos_token_id=128_001)
  if hasattr(cfg, "rope_llama3"):
    cfg = cfg.replace(rope_llama3=(32.0, 1.0, 4.0, 8192.0))
  return cfg


def main(argv):
  if len(argv) > 1:
    fail(f"Unexpected arguments {argv[1:]}; every setting is a --flag.")
  for flag in (_POSITIVES, _BATCH, _ROWS, _TOKENS):
    if flag.value < 1:
      fail(f"--{flag.name} must be positive, got {flag.value}.")
  sampler = RssSampler(limit=_MAX_RSS_GB.value * GB)
  t0 = time.perf_counter()
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import Mesh

  import lang_neuron_jax as lnj
  from lang_neuron_jax.models import planning
  from lang_neuron_jax.data.corpora import load_corpus
  from lang_neuron_jax.errors import UserError
  from lang_neuron_jax.find import stage as find_stage
  from lang_neuron_jax.generation import batching, sampling
  from lang_neuron_jax.models.loading import all_presets
  from lang_neuron_jax.neurons import selection
  from real_lengths import LengthTokenizer, corpus_lengths

  presets = all_presets()
  if _PRESET.value == "llama3.2-1b" and "llama3.2-1b" not in presets:
    presets["llama3.2-1b"] = llama32_1b(presets["llama2-7b"])
  if _PRESET.value not in presets:
    fail(f"Unknown preset {_PRESET.value!r}; choose from {sorted(presets)}.")
  cfg = presets[_PRESET.value]
  devices = _DEVICES.value or jax.local_device_count()
  if not 1 <= devices <= jax.local_device_count():
    fail(f"--devices={devices}, but this process has {jax.local_device_count()} devices.")
  dtype = jnp.dtype(_DTYPE.value)
  layout = _LAYOUT.value
  if layout == "auto":
    layout = "model" if jax.default_backend() == "cpu" and devices > 1 else "data"
  memory_gb, memory_source = ((_DEVICE_MEMORY_GB.value, "--device_memory_gb")
                              if _DEVICE_MEMORY_GB.value else planning.device_memory_gb(devices))
  corpus, lengths = corpus_lengths()
  length_of = dict(zip(corpus.texts, lengths))
  texts = load_corpus(positives_per_language=_POSITIVES.value).texts
  widest = batching.bucket_length(max(length_of[t] for t in texts), batching.RESPONSE_BUCKETS)
  batch = -(-_BATCH.value // devices) * devices
  plan = planning.plan_memory(cfg, devices=devices, dtype=dtype, texts=len(texts),
                              max_length=widest, batch_per_device=batch // devices,
                              generation_rows=_ROWS.value, generation_length=1 + _TOKENS.value,
                              layout=layout)
  print(f"{_PRESET.value}, {dtype.name}, {devices} devices ({layout} layout), {len(texts)} texts, "
        f"{plan.neurons:,} neurons per text; memory per device {memory_gb:.1f} GB "
        f"({memory_source})")
  memory_gb = round(memory_gb, 2)
  print(plan.table(memory_gb))
  # Before any weight is written or read: a model that cannot fit stops here.
  try:
    planning.check_fits(plan, memory_gb, what=f"{_PRESET.value} in {dtype.name}")
  except UserError as e:
    fail(str(e))

  work = _WORKDIR.value or tempfile.mkdtemp(prefix="billion_")
  report = {"preset": _PRESET.value, "dtype": dtype.name, "devices": devices, "layout": layout,
            "device_kind": jax.local_devices()[0].device_kind, "texts": len(texts),
            "device_memory_gb": memory_gb, "device_memory_source": memory_source,
            "plan": {"table": plan.table(memory_gb), "peak_per_device": plan.peak_per_device,
                     "params_total": plan.params_total}, "seconds": {}, "rss": {}}
  try:
    sampler.enter("write checkpoint")
    start = time.perf_counter()
    ckpt = os.path.join(work, "checkpoint")
    index = os.path.join(ckpt, "model.safetensors.index.json")
    if os.path.exists(index) and os.path.exists(os.path.join(ckpt, "config.json")):
      with open(index) as f:  # Written last: a complete checkpoint of an earlier run.
        report["checkpoint_bytes"] = json.load(f)["metadata"]["total_size"]
      report["checkpoint_reused"] = True
    else:
      report["checkpoint_bytes"] = write_checkpoint(cfg, ckpt, dtype.name)
    report["seconds"]["write_checkpoint"] = time.perf_counter() - start

    sampler.enter("before load")
    report["rss"]["before_load"] = sampler.rss()
    mesh = Mesh(np.array(jax.local_devices()[:devices]), ("data",))
    sampler.enter("load")
    start = time.perf_counter()
    lm = lnj.load_model(ckpt, dtype=dtype, mesh=mesh, layout=layout)
    jax.block_until_ready(lm.params)
    report["seconds"]["load"] = time.perf_counter() - start
    report["parameters"] = int(sum(p.size for p in jax.tree.leaves(lm.params)))
    report["loaded_config_equals_preset"] = lm.config == cfg
    # dataclasses.replace keeps every other field (the layout among them).
    lm = dataclasses.replace(
        lm, tokenizer=LengthTokenizer(length_of, cfg.vocab_size, cfg.bos_token_id))
    report["rss"]["after_load"] = sampler.rss()
    report["layout_used"] = lm.layout

    sampler.enter("find")
    start = time.perf_counter()
    config = find_stage.FindConfig(positives_per_language=_POSITIVES.value, batch_size=batch)
    result = find_stage.find_neurons(lm, config, os.path.join(work, "find"), progress=False)
    report["seconds"]["find"] = time.perf_counter() - start
    report["find"] = {"texts": len(result.corpus.texts), "neurons": int(result.expertise.index.size),
                      "tokens": int(sum(length_of[t] for t in result.corpus.texts)),
                      "timings": _read_timings(os.path.join(work, "find"))}

    sampler.enter("select and generate")
    start = time.perf_counter()
    german = selection.select(result.expertise, "de", 2000, "both")
    intervention = selection.build_intervention([german])
    ids, ln = batching.pad_prompts([[cfg.bos_token_id]] * _ROWS.value, cfg.pad_token_id)
    tokens, counts = sampling.generate(cfg, lm.params, *sampling.shard_rows((ids, ln), lm.layout),
                                       max_new_tokens=_TOKENS.value,
                                       sampler=sampling.Sampler(temperature=0.8),
                                       intervention=intervention)
    counts = np.asarray(counts)
    report["seconds"]["select_and_generate"] = time.perf_counter() - start
    report["generation"] = {"rows": _ROWS.value, "new_tokens": int(counts.sum()),
                            "neurons_fixed": len(german)}
  finally:
    sampler.enter("end")
    sampler.stop()
    if _WORKDIR.value is None:
      shutil.rmtree(work, ignore_errors=True)
  report["seconds"]["total"] = time.perf_counter() - t0
  report["rss"]["peaks_by_phase"] = sampler.peaks
  report["rss"]["ru_maxrss"] = ru_maxrss()
  measured = max(report["rss"]["ru_maxrss"], max(sampler.peaks.values()))
  predicted = plan.host_bytes(report["rss"]["before_load"], devices_share_host=True)
  report["host_peak"] = {"measured": measured, "predicted": predicted,
                         "measured_over_predicted": measured / predicted}
  print(f"times: " + ", ".join(f"{k} {v:.0f} s" for k, v in report["seconds"].items()))
  print("RSS peaks by phase: " + ", ".join(f"{k} {v / GB:.2f} GB"
                                           for k, v in sampler.peaks.items()))
  print(f"peak host memory {measured / GB:.2f} GB (ru_maxrss {report['rss']['ru_maxrss'] / GB:.2f}"
        f" GB); plan {predicted / GB:.2f} GB (process before loading "
        f"{report['rss']['before_load'] / GB:.2f} GB + {devices} devices' shares): "
        f"{measured / predicted:.2f}x")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(report, f, indent=1, default=str)
    print(f"wrote {_OUT.value}")


def _read_timings(workdir: str) -> dict:
  try:
    with open(os.path.join(workdir, "run.json")) as f:
      return json.load(f).get("timings", {})
  except (OSError, ValueError):
    return {}


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
