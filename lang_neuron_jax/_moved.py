"""Old module paths, kept for one release after the package was split into subpackages.

Each old flat module (``lang_neuron_jax/sampling.py``, ...) is one line that calls
:func:`alias`: importing it warns once and hands back the new module itself (not a copy),
so its functions, private helpers and monkeypatching behave exactly as before.
"""

from __future__ import annotations

import importlib
import sys
import warnings


def alias(old: str, new: str) -> None:
  """Makes module ``old`` the module ``new`` (``sys.modules``), with a DeprecationWarning."""
  warnings.warn(f"{old} moved to {new}; import it from there (the old path goes away in the "
                "next release).", DeprecationWarning, stacklevel=3)
  sys.modules[old] = importlib.import_module(new)
