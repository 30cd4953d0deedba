"""Running a binary: ``cli.run(main)`` in place of ``absl.app.run(main)``.

A binary stopped by bad input should say what to fix in one line, not end a long
traceback through absl with it. :func:`run` prints a
:class:`~lang_neuron_jax.errors.UserError` (or one of its subclasses, all listed in
``errors.py``) as ``<binary>: error: <message>`` on stderr and exits with status 1;
``--traceback`` shows the full traceback instead (for bug reports). Every other exception
is a bug and keeps its traceback: which errors are the user's is decided by their type,
never by where they were raised.
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
def is_user_facing(error: BaseException) -> bool:
  """Whether ``error`` reports bad input (a :class:`UserError`; see the module docstring)."""
  return isinstance(error, UserError)


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
    if _TRACEBACK.value or not is_user_facing(e):
      raise
    prog = os.path.basename(sys.argv[0]) if sys.argv else "lang_neuron_jax"
    sys.stderr.write(f"{prog}: error: {one_line(e)}\n")
    sys.stderr.flush()
    sys.exit(1)


def run(main: Callable[[list[str]], object], argv: list[str] | None = None) -> None:
  """``absl.app.run(main)``, printing user-facing errors as one line (module docstring)."""
  app.run(functools.partial(_guarded, main), argv=argv)
