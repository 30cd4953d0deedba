"""Lock files: one writer per model-cache entry, one run per work directory.

Why a lock *file* created with ``O_CREAT | O_EXCL`` rather than ``fcntl.flock``: creating
a file exclusively is atomic on local disks and on NFS alike (``flock`` is emulated, or
refused, on some network file systems), and the file records who holds the lock (host,
pid, command, since when), so a process that waits or is refused can say whom it waits
for. The price is that a killed holder leaves its file behind. Such a lock is *stale*
when its holder ran on this host and that process is gone (no such pid, a zombie, or a
pid reused by a process that started at another time); a stale lock is taken over with a
warning, so killing a run and starting it again just works. A lock held on another host
cannot be checked from here: the message names that host and pid and says which file to
delete if that run is gone.

Work directories (:func:`workdir_locked`): a multi-host run (``--num_processes``) shares
its work directory on purpose, and every process writes its share into the same
memory-mapped files. So only process 0 takes the lock, on behalf of the whole run, and
tells the others whether it got it (a broadcast, so that every process of a refused run
stops, none is left waiting at a barrier). A second run, single- or multi-host, then finds
the lock of the first run's process 0 and is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import os
import socket
import sys
import time
import uuid

from absl import logging

from lang_neuron_jax.errors import LockedError

WORKDIR_LOCK = ".lock"
# A lock file whose holder has not finished writing its record is younger than this;
# an older unreadable one was left by a process killed between creating and writing it.
_UNREADABLE_GRACE_S = 30.0


@dataclasses.dataclass(frozen=True)
class Holder:
  """Who holds a lock: written into the lock file as JSON."""

  host: str
  pid: int
  started: str | None  # the process's start time (Linux), to tell a reused pid apart
  since: float
  command: str
  token: str  # unique per acquisition, so a holder only ever removes its own lock

  def describe(self) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(self.since))
    return f"pid {self.pid} on {self.host} since {when} ({self.command})"


def _start_time(pid: int) -> str | None:
  """Field 22 of ``/proc/<pid>/stat`` (None where there is no /proc)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      stat = f.read()
  except OSError:
    return None
  return stat.rsplit(")", 1)[1].split()[19]  # after "(comm)": state is field 3


def _is_zombie(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] == "Z"
  except OSError:
    return False


def is_gone(holder: Holder) -> bool:
  """Whether the holder's process has certainly ended (False when it runs on another host)."""
  if holder.host != socket.gethostname():
    return False
  try:
    os.kill(holder.pid, 0)
  except ProcessLookupError:
    return True
  except PermissionError:
    pass  # It exists, under another user.
  if _is_zombie(holder.pid):
    return True
  started = _start_time(holder.pid)
  return holder.started is not None and started is not None and started != holder.started


def _me() -> Holder:
  return Holder(host=socket.gethostname(), pid=os.getpid(), started=_start_time(os.getpid()),
                since=time.time(), command=" ".join(sys.argv)[:300], token=uuid.uuid4().hex)


def _read(path: str) -> tuple[str, Holder | None] | None:
  """The lock file's text and holder (None if unreadable); None if there is no file."""
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except FileNotFoundError:
    return None
  try:
    return text, Holder(**json.loads(text))
  except (ValueError, TypeError):
    return text, None


def _create(path: str, holder: Holder) -> bool:
  """Creates the lock file exclusively; False if it exists."""
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    json.dump(dataclasses.asdict(holder), f)
    f.flush()
    os.fsync(f.fileno())
  return True


def _take_over(path: str, stale_text: str) -> None:
  """Removes a stale lock file, if it still is the one we judged stale.

  It is moved aside first (atomic) and checked there: another waiter may have taken it
  over already and created its own lock, which is then put back (``os.link`` does not
  replace a file, so a third process that locked meanwhile keeps its lock too).
  """
  aside = f"{path}.stale-{uuid.uuid4().hex}"
  try:
    os.rename(path, aside)
  except FileNotFoundError:
    return
  with open(aside, encoding="utf-8") as f:
    moved = f.read()
  if moved != stale_text:
    with contextlib.suppress(FileExistsError):
      os.link(aside, path)
  os.remove(aside)


class Lock:
  """A held lock; :meth:`release` (or leaving the ``with`` block) removes its file."""

  def __init__(self, path: str, holder: Holder):
    self.path = path
    self.holder = holder

  def release(self) -> None:
    current = _read(self.path)
    if current is not None and current[1] is not None and current[1].token == self.holder.token:
      os.remove(self.path)
    else:
      logging.warning("Lock %s was no longer ours when we released it.", self.path)

  def __enter__(self) -> "Lock":
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def acquire(path: str, *, what: str, timeout: float = 0.0, poll: float = 0.2) -> Lock:
  """Creates the lock file ``path``, waiting up to ``timeout`` seconds for its holder.

  Args:
    path: The lock file.
    what: What the lock protects, for messages ("the work directory x").
    timeout: Seconds to wait for a live holder; 0 refuses at once.
    poll: Seconds between attempts while waiting.

  Returns:
    The held :class:`Lock`.

  Raises:
    LockedError: a live holder (or one on another host) kept it past ``timeout``.
  """
  deadline = time.monotonic() + timeout
  me = _me()
  waiting = False
  while True:
    if _create(path, me):
      if waiting:
        logging.info("Got the lock on %s.", what)
      return Lock(path, me)
    found = _read(path)
    if found is None:
      continue  # Released between our attempt and our look: try again at once.
    text, holder = found
    if holder is None:
      try:
        age = time.time() - os.path.getmtime(path)
      except FileNotFoundError:
        continue
      if age > _UNREADABLE_GRACE_S:
        logging.warning("Taking over the unreadable lock file %s (%.0f s old).", path, age)
        _take_over(path, text)
        continue
      described = "a process that is writing its lock record"
    elif is_gone(holder):
      logging.warning("Taking over the lock on %s from %s, which is gone.", what,
                      holder.describe())
      _take_over(path, text)
      continue
    else:
      described = holder.describe()
    if time.monotonic() >= deadline:
      raise LockedError(
          f"{what} is in use by {described}" +
          (f"; waited {timeout:.0f} s" if timeout else "") +
          f". If that process is gone (e.g. it ran on another host), delete {path}.")
    if not waiting:
      logging.info("Waiting for %s, held by %s.", what, described)
      waiting = True
    time.sleep(poll)


def _leader_says(flag: bool) -> bool:
  """Process 0's ``flag`` in every process (no-op with one process)."""
  import jax  # pylint: disable=g-import-not-at-top

  if jax.process_count() == 1:
    return flag
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def _held_by_this_process(path: str) -> bool:
  """Whether the lock file ``path`` records this very process as its holder.

  A binary holds its work directory before it loads the model (so that a second run is
  refused in seconds, not after minutes of loading), and the stage it then calls holds the
  same directory again: the inner hold finds the outer one's record and neither takes nor
  releases the lock. The lock file is the only state, so nesting needs no registry.
  """
  current = _read(path)
  if current is None or current[1] is None:
    return False
  holder, me = current[1], _me()
  return (holder.host, holder.pid, holder.started) == (me.host, me.pid, me.started)


@contextlib.contextmanager
def hold_workdir(workdir: str):
  """Holds ``workdir`` for this run (see the module docstring), or raises LockedError.

  Re-entrant within one process (:func:`_held_by_this_process`)."""
  import jax  # pylint: disable=g-import-not-at-top

  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, WORKDIR_LOCK)
  what = f"the work directory {workdir}"
  lock, refusal = None, None
  if jax.process_index() == 0 and not _held_by_this_process(path):
    try:
      lock = acquire(path, what=what)
    except LockedError as e:
      refusal = e
  if _leader_says(refusal is not None) and refusal is None:
    refusal = LockedError(f"{what} is in use by another run (process 0 of this run was "
                          f"refused its lock {path}).")
  if refusal is not None:
    raise refusal
  try:
    yield
  finally:
    if lock is not None:
      lock.release()


def workdir_locked(fn):
  """Decorates a stage function with a ``workdir`` argument: the call holds that directory
  (:func:`hold_workdir`), so a second run pointed at it is refused instead of writing into
  the same files."""
  signature = inspect.signature(fn)

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    workdir = signature.bind(*args, **kwargs).arguments["workdir"]
    with hold_workdir(os.fspath(workdir)):
      return fn(*args, **kwargs)

  return wrapper
