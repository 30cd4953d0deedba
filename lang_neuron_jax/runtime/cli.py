"""Running a binary: ``cli.run(main)`` in place of ``absl.app.run(main)``.

A binary stopped by bad input should say what to fix in one line, not end a long
traceback through absl with it. :func:`run` prints a user-facing error as
``<binary>: error: <message>`` on stderr and exits with status 1; ``--traceback``
shows the full traceback instead (for bug reports). Every other exception is a bug and
keeps its traceback.

An error is user-facing when it is a :class:`lang_neuron_jax.errors.UserError`, or a
``ValueError`` / ``OSError`` / ``FloatingPointError`` raised by a ``raise`` statement in
this package or in the binary's directory: that is how the library reports bad input
(``CorpusError``, ``StageMismatchError``, ``CheckpointMismatchError`` and plain
``ValueError`` with a message). The same exception types raised deep inside numpy, JAX or
another library are not ours to explain, and keep their traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable

from absl import app
from absl import flags

from lang_neuron_jax.errors import UserError

_TRACEBACK = flags.DEFINE_bool("traceback", False, "Show the full traceback of errors in "
                               "the input (which are otherwise printed as one line).")

# The package root (this module sits in its runtime/ subpackage).
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_USER_FACING_TYPES = (ValueError, OSError, FloatingPointError)


def _raised_by(error: BaseException) -> str:
  """The file of the innermost frame of the error's traceback."""
  tb = error.__traceback__
  if tb is None:
    return ""
  while tb.tb_next is not None:
    tb = tb.tb_next
  return os.path.abspath(tb.tb_frame.f_code.co_filename)


def is_user_facing(error: BaseException, binary: str | None = None) -> bool:
  """Whether ``error`` reports bad input (see the module docstring)."""
  if isinstance(error, UserError):
    return True
  if not isinstance(error, _USER_FACING_TYPES):
    return False
  where = _raised_by(error)
  ours = [_PACKAGE_DIR + os.sep]
  if binary:  # The binary and its helpers beside it (experiments/multihost_flags.py).
    ours.append(os.path.dirname(os.path.abspath(binary)) + os.sep)
  return any(where.startswith(p) for p in ours)


def require_positive(*holders: flags.FlagHolder) -> None:
  """Refuses (a :class:`UserError`) integer or float flags that are not positive, naming
  the flag: the benchmarks' counts and sizes."""
  for holder in holders:
    if holder.value is not None and not holder.value > 0:
      raise UserError(f"--{holder.name} must be positive, got {holder.value}.")


def one_line(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return text or type(error).__name__


def _guarded(main: Callable[[list[str]], object], argv: list[str]):
  try:
    return main(argv)
  except Exception as e:  # pylint: disable=broad-except
    if _TRACEBACK.value or not is_user_facing(e, sys.argv[0] if sys.argv else None):
      raise
    prog = os.path.basename(sys.argv[0]) if sys.argv else "lang_neuron_jax"
    sys.stderr.write(f"{prog}: error: {one_line(e)}\n")
    sys.stderr.flush()
    sys.exit(1)


def run(main: Callable[[list[str]], object], argv: list[str] | None = None) -> None:
  """``absl.app.run(main)``, printing user-facing errors as one line (module docstring)."""
  app.run(functools.partial(_guarded, main), argv=argv)
