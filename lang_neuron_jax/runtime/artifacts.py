"""Writing artifacts: ``run.json`` (configuration, versions, git SHA), JSON and JSON Lines.

Every stage writes files whole (to a temporary name, then renamed), so a killed run never
leaves a half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shlex
import platform
import subprocess
import sys
import time
from typing import Any, Iterable


def _versions() -> dict[str, str]:
  from importlib import metadata

  out = {"python": sys.version.split()[0], "platform": platform.platform()}
  for name in ("lang_neuron_jax", "jax", "jaxlib", "flax", "optax", "transformers", "numpy",
               "gguf", "orbax-checkpoint"):
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = "not installed"
  return out


def git_sha() -> str | None:
  """The SHA of the source checkout, if this package runs from one."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                          text=True, timeout=10, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def to_jsonable(obj: Any) -> Any:
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return to_jsonable(dataclasses.asdict(obj))
  if isinstance(obj, dict):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if hasattr(obj, "tolist"):
    return obj.tolist()
  return obj


def fingerprint(**config) -> str:
  """A short hash of a JSON-serialisable configuration (work directories' guards)."""
  return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w"):
  """A file to write ``path`` through: a temporary name beside it, renamed to ``path``
  when the block ends without an error (and removed when it raises), so a killed run
  never leaves a half-written file under a final name."""
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
      yield f
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str, text: str) -> None:
  """Writes text atomically."""
  with atomic_file(path) as f:
    f.write(text)


def write_json(path: str, obj: Any) -> None:
  """Writes JSON atomically."""
  with atomic_file(path) as f:
    json.dump(to_jsonable(obj), f, indent=1, ensure_ascii=False)


def read_json(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_jsonl(path: str, records: Iterable[dict]) -> None:
  """Writes JSON Lines atomically."""
  with atomic_file(path) as f:
    for r in records:
      f.write(json.dumps(to_jsonable(r), ensure_ascii=False) + "\n")


def append_jsonl(path: str, records: Iterable[dict]) -> None:
  """Appends JSON Lines and syncs them to disk (a killed run keeps every appended line)."""
  with open(path, "a", encoding="utf-8") as f:
    for r in records:
      f.write(json.dumps(to_jsonable(r), ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())


def read_jsonl(path: str) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


class Timings(dict):
  """Seconds per named step, ``{name: seconds}`` (what ``run.json`` and the reports show),
  measured with ``with timings.measure("find"): ...``."""

  @contextlib.contextmanager
  def measure(self, name: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self[name] = time.perf_counter() - start


def command_line() -> str:
  """How this process was started, as one shell-quoted line (``python <script> <flags>``):
  what reports and ``run.json`` record so that a run can be repeated."""
  return " ".join(["python"] + [shlex.quote(a) for a in sys.argv])


def write_run_json(directory: str, *, stage: str, config: Any, timings: dict | None = None,
                   extra: dict | None = None) -> None:
  """Writes ``run.json``: the resolved configuration, versions, git SHA and timings."""
  write_json(os.path.join(directory, "run.json"), {
      "stage": stage,
      "config": config,
      "command": command_line(),
      "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      "git_sha": git_sha(),
      "versions": _versions(),
      "timings_s": timings or {},
      **(extra or {}),
  })
