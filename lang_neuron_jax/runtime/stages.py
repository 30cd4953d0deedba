"""Stages: named, fingerprinted, resumable steps of a study, each writing into a directory.

One protocol for every step whose work is worth keeping:

* A stage's **fingerprint** hashes its name, its config, the model's identity and the
  stamps of the stages it reads (:class:`Stamp`), so a change to any of them makes the
  stage run again, and nothing downstream reads stale results.
* A stage is **finished** when its stamp file ``{name}.stage.json`` holds that
  fingerprint; :meth:`Stage.reuse` then reads its outputs instead of recomputing them.
* While it runs, a stage records finished units of work (rows, batches) in a
  :class:`Journal`: one append-only JSON Lines file per process, whose first line is the
  fingerprint. A killed run resumes from every process's journal.
* :meth:`Stage.commit` lets process 0 write the outputs (atomically; see
  :mod:`lang_neuron_jax.runtime.artifacts`), then the stamp, then remove the journals; the other
  processes wait and read the outputs. Barriers and leader-only writes live here, so the
  stages' code reads as if there were one process.

The result a stage returns carries its :class:`Stamp`, which the next stage takes as an
input: no stage reads another's files to learn what it did.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Any, Callable, Iterable, Sequence, TypeVar

from absl import logging

from lang_neuron_jax.runtime import artifacts, distributed
from lang_neuron_jax.errors import StageMismatchError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Stamp:
  """A finished stage's identity: its name and fingerprint."""

  name: str
  fingerprint: str


def stamp_path(directory: str, name: str) -> str:
  """Where the stage ``name`` of ``directory`` records that it finished."""
  return os.path.join(directory, f"{name}.stage.json")


def recorded_stamp(directory: str, name: str) -> Stamp | None:
  """The stamp a finished stage recorded in ``directory`` (None if it did not finish),
  for a reader that does not rebuild the stage's config: e.g. the control binary
  starting from a find work directory."""
  path = stamp_path(directory, name)
  return Stamp(name, artifacts.read_json(path)["fingerprint"]) if os.path.exists(path) else None


class Stage:
  """One stage in ``directory``.

  Args:
    directory: Where the stage's outputs, stamp and journals live (created).
    name: The stage's name, unique within ``directory`` (file names start with it).
    config: JSON-serialisable settings (dataclasses are fine).
    model_id: The model's identity (``LanguageModel.model_id``).
    inputs: Stamps (or other JSON-serialisable identities) of what the stage reads.
    keep_other: What to do with results of another fingerprint: False refuses them
      with :class:`StageMismatchError` (outputs that took long to compute and that a
      mistyped flag should not destroy); True runs the stage again over them.
  """

  def __init__(self, directory: str, name: str, *, config: Any = None, model_id: str = "",
               inputs: Sequence[Any] = (), keep_other: bool = True):
    self.directory, self.name, self.keep_other = directory, name, keep_other
    self.fingerprint = artifacts.fingerprint(stage=name, config=artifacts.to_jsonable(config),
                                             model=model_id,
                                             inputs=artifacts.to_jsonable(list(inputs)))
    os.makedirs(directory, exist_ok=True)

  @property
  def stamp(self) -> Stamp:
    return Stamp(self.name, self.fingerprint)

  @property
  def stamp_path(self) -> str:
    return stamp_path(self.directory, self.name)

  def path(self, filename: str) -> str:
    """A file of the stage's directory."""
    return os.path.join(self.directory, filename)

  def _refuse(self, what: str) -> None:
    raise StageMismatchError(
        f"{self.directory} holds {what} of the {self.name!r} stage with another "
        "configuration; use a new work directory or delete it.")

  def finished(self) -> dict | None:
    """The stamp file's contents when the stage finished with this fingerprint, else None.

    Every process decides alike before any of them writes.
    """
    recorded = artifacts.read_json(self.stamp_path) if os.path.exists(self.stamp_path) else None
    distributed.barrier(f"{self.name}-checked")
    if recorded is None:
      return None
    if recorded.get("fingerprint") == self.fingerprint:
      return recorded
    if not self.keep_other:
      self._refuse("results")
    return None

  def reuse(self, read: Callable[[], T]) -> T | None:
    """``read()`` when the stage is finished (its outputs), else None."""
    if self.finished() is None:
      return None
    logging.info("Reusing the finished %r stage in %s", self.name, self.directory)
    return read()

  def journal(self) -> "Journal":
    return Journal(self)

  def prepare(self, create: Callable[[], None]) -> None:
    """Process 0 runs ``create()`` (e.g. fresh output files to fill in place) unless a
    journal shows an interrupted run's work to continue; every process waits for it."""
    if distributed.is_leader() and not self.journal().exists():
      create()
    distributed.barrier(f"{self.name}-prepared")

  def commit(self, write: Callable[[], T], read: Callable[[], T] | None = None,
             summary: Callable[[T], dict] | None = None) -> T:
    """Process 0 runs ``write()`` (which writes the outputs and returns the result),
    then records the stamp (plus ``summary(result)``) and removes the journals; the
    other processes wait, then return ``read()`` (default: None)."""
    if distributed.is_leader():
      result = write()
      artifacts.write_json(self.stamp_path, {"stage": self.name, "fingerprint": self.fingerprint,
                                             **(summary(result) if summary else {})})
      self.journal().remove()
    distributed.barrier(f"{self.name}-committed")
    if not distributed.is_leader():
      result = read() if read else None
    return result


class Journal:
  """Finished units of a stage's work, one append-only file per process.

  ``{name}.journal{process}.jsonl``: a header line ``{"fingerprint": ...}``, then one
  entry per finished unit (a dict with a ``"unit"`` key, plus what the stage keeps of it).
  """

  def __init__(self, stage: Stage):
    self.stage = stage

  def _path(self, process: int) -> str:
    return self.stage.path(f"{self.stage.name}.journal{process}.jsonl")

  def _files(self) -> list[str]:
    return sorted(glob.glob(self.stage.path(f"{self.stage.name}.journal*.jsonl")))

  def _read_file(self, path: str) -> list[dict]:
    """A file's entries; a torn last line (the run was killed while writing it) ends
    them; a file of another fingerprint is refused or ignored (``keep_other``)."""
    with open(path, encoding="utf-8") as f:
      lines = f.read().split("\n")
    entries = []
    for line in lines:
      try:
        entries.append(json.loads(line))
      except json.JSONDecodeError:
        break
    if not entries:
      return []
    if entries[0].get("fingerprint") != self.stage.fingerprint:
      if not self.stage.keep_other:
        self.stage._refuse("partial work")  # pylint: disable=protected-access
      return []
    return entries[1:]

  def exists(self) -> bool:
    """Whether any process has started this journal (work of an interrupted run may be
    on disk)."""
    return bool(self._files())

  def read(self) -> dict[Any, dict]:
    """``{unit: entry}`` from every process's journal."""
    return {e["unit"]: e for path in self._files() for e in self._read_file(path)}

  def start(self) -> dict[Any, dict]:
    """Reads every process's entries, then (after all have read) rewrites this process's
    file as its header plus its valid entries (dropping a torn line or a foreign header).

    Returns:
      ``{unit: entry}`` of the work already done.
    """
    done = self.read()
    if done:
      logging.info("Resuming the %r stage in %s: %d units done", self.stage.name,
                   self.stage.directory, len(done))
    distributed.barrier(f"{self.stage.name}-journal-read")
    path = self._path(distributed.process_index())
    mine = self._read_file(path) if os.path.exists(path) else []
    artifacts.write_jsonl(path, [{"fingerprint": self.stage.fingerprint}] + mine)
    return done

  def append(self, entries: Iterable[dict]) -> None:
    """Records finished units (each a dict with ``"unit"``), synced to disk."""
    artifacts.append_jsonl(self._path(distributed.process_index()), entries)

  def gather(self) -> dict[Any, dict]:
    """Every process's entries, once all have finished their share."""
    distributed.barrier(f"{self.stage.name}-journal-written")
    done = self.read()
    distributed.barrier(f"{self.stage.name}-journal-gathered")  # Read before any removal.
    return done

  def remove(self) -> None:
    for path in self._files():
      os.remove(path)
