"""Errors meant for the person running the code, not for a bug report.

A :class:`UserError` says what was wrong with the input or the environment and what to
do about it; the binaries (:func:`lang_neuron_jax.runtime.cli.run`) print its message as one
line instead of a traceback. It subclasses ``ValueError`` so that callers and tests
that catch ``ValueError`` keep working.
"""

from __future__ import annotations


class UserError(ValueError):
  """Bad input or environment, with a message that says what to do."""


class LockedError(UserError):
  """A cache entry or work directory is held by another live process."""
