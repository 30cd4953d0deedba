"""Errors meant for the person running the code, not for a bug report.

Every error that reports bad input or a bad environment is a :class:`UserError` or one of
the subclasses below; its message says what was wrong and what to do about it. The
binaries (:func:`lang_neuron_jax.runtime.cli.run`) print exactly these as one line and exit
with status 1; every other exception is a bug and keeps its traceback. ``UserError``
subclasses ``ValueError`` so that callers and tests that catch ``ValueError`` keep
working; the file and float variants also subclass ``FileNotFoundError`` and
``FloatingPointError``.

The bad-input errors of the package, all here:

=========================  =======================================================
``UserError``              anything else the user must fix (a flag, an argument)
``ConfigError``            a configuration value out of range or inconsistent
``CorpusError``            a corpus or translation file missing, malformed, unusable
``CheckpointMismatchError``  a checkpoint's tensors do not match its config
``MissingFileError``       a file or directory the user named does not exist
``NonFiniteError``         activations or responses that are not finite
``StageMismatchError``     a work directory written by another configuration
``LockedError``            a cache entry or work directory held by a live process
=========================  =======================================================
"""

from __future__ import annotations


class UserError(ValueError):
  """Bad input or environment, with a message that says what to do."""


class ConfigError(UserError):
  """A configuration value (a flag, a preset field, an argument) is out of range."""


class CorpusError(UserError):
  """A corpus file is missing, malformed or unusable."""


class CheckpointMismatchError(UserError):
  """A checkpoint's tensors do not match the model its config describes."""


class MissingFileError(UserError, FileNotFoundError):
  """A file or directory named by the user does not exist."""


class NonFiniteError(UserError, FloatingPointError):
  """Activations or responses are not finite (try float32)."""


class StageMismatchError(UserError):
  """A directory holds a stage's results or partial work of another configuration."""


class LockedError(UserError):
  """A cache entry or work directory is held by another live process."""
