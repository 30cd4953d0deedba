"""Model-cache entries: derived files that any number of processes may build at once.

An entry (the assembled GGUF file, the converted parameters, the converted tokenizer) is
a file or a directory at a fixed path. :func:`cached` gives every process the same
guarantees, on one machine or on a shared file system:

- A reader never sees a half-written entry: the builder writes under a unique temporary
  name, reads the result back (the check a later reader would make), and only then
  renames it into place.
- One builder at a time: it holds the entry's lock file (:mod:`lang_neuron_jax.runtime.locks`);
  the others wait for it, then read the committed entry instead of building their own.
  A builder that was killed leaves a stale lock, which the next one takes over, and
  temporaries, which it removes.
- An entry that fails to read is derived data: it is rebuilt from its source with a
  warning that names it, instead of failing every later load.
"""

from __future__ import annotations

import glob
import os
import shutil
from typing import Callable, TypeVar

from absl import logging

from lang_neuron_jax.runtime import locks

T = TypeVar("T")

# Seconds to wait for another process building the same entry. Converting the embedded
# model takes well under a minute; this leaves room for slow disks and busy machines.
LOCK_TIMEOUT_S = 900.0


def _remove(path: str) -> None:
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.lexists(path):
    os.remove(path)


def _commit(tmp: str, path: str) -> None:
  """Renames ``tmp`` to ``path``, moving a previous (unreadable) entry aside first: a
  directory cannot be renamed over a non-empty one."""
  if os.path.lexists(path):
    trash = f"{path}.trash-{os.getpid()}"
    os.rename(path, trash)
    os.rename(tmp, path)
    _remove(trash)
  else:
    os.rename(tmp, path)


def _leftovers(path: str) -> list[str]:
  """Temporaries of killed builders: ours, and orbax's own from before this module."""
  patterns = (".tmp*", ".trash-*", ".orbax-checkpoint-tmp*")
  return sorted({p for pattern in patterns for p in glob.glob(glob.escape(path) + pattern)})


def cached(path: str, *, read: Callable[[str], T], build: Callable[[str], None], what: str,
           timeout: float = LOCK_TIMEOUT_S) -> T:
  """``read(path)``, building the entry first when it is missing or fails to read.

  Args:
    path: The entry (a file or a directory).
    read: Reads an entry at the given path and returns its value; raises if it is
      damaged. Also checks a freshly built entry before it is committed.
    build: Writes the entry at the given (temporary) path, which does not exist yet.
    what: The entry in words, for messages ("the converted gemma3-270m parameters").
    timeout: Seconds to wait for another process that is building the entry.

  Returns:
    The value ``read`` returned, from the committed entry or from the one just built
    (which is the committed one, renamed).
  """
  warned = False
  if os.path.exists(path):
    try:
      return read(path)
    except Exception as e:  # pylint: disable=broad-except  # Derived data: rebuild it.
      _warn_unreadable(path, what, e)
      warned = True
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with locks.acquire(f"{path}.lock", what=f"{what} ({path})", timeout=timeout):
    if os.path.exists(path):  # Another process may have built it while we waited.
      try:
        return read(path)
      except Exception as e:  # pylint: disable=broad-except
        if not warned:
          _warn_unreadable(path, what, e)
    for leftover in _leftovers(path):  # We hold the lock: no live builder owns these.
      logging.info("Removing %s, left by an interrupted build.", leftover)
      _remove(leftover)
    tmp = f"{path}.tmp-{os.getpid()}"
    logging.info("Building %s in %s", what, path)
    try:
      build(tmp)
      value = read(tmp)
    except BaseException:
      _remove(tmp)
      raise
    _commit(tmp, path)
    return value


def _warn_unreadable(path: str, what: str, error: Exception) -> None:
  first_line = (str(error).strip().splitlines() or [""])[0][:300]
  logging.warning("The cache entry %s (%s) cannot be read (%s: %s); rebuilding it from its "
                  "source: it is derived data.", path, what, type(error).__name__, first_line)
