"""Which build of the hot modules runs: the Cython-compiled one ``make venv`` builds, or the pure-Python
source it is compiled from (the reference, kept and tested against it; see ``tests/scoring/test_compiled.py``).

``LEADPULSE_PURE_PYTHON=1`` makes ``scoring`` import the ``.py`` sources even where compiled modules sit
beside them: for a differential run, a profile that names Python lines, or a machine without a compiler.
It must be set before ``scoring`` is first imported.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

#: The modules setup.py compiles.
COMPILED = ("scoring.model", "scoring.engagement", "scoring.state")
_DIR = Path(__file__).resolve().parent


def pure_requested() -> bool:
    return os.environ.get("LEADPULSE_PURE_PYTHON", "") not in ("", "0")


class _SourceOnly:
    """A meta-path finder that answers only for the compiled modules, with their ``.py`` source."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in COMPILED:
            return None
        src = _DIR / (name.rpartition(".")[2] + ".py")
        return importlib.util.spec_from_file_location(name, src, loader=importlib.machinery.SourceFileLoader(name, str(src)))


def install() -> None:
    """Called by ``scoring/__init__.py`` before it imports the hot modules."""
    if pure_requested() and not any(isinstance(f, _SourceOnly) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceOnly())


def build() -> str:
    """"compiled" when every hot module was loaded from an extension, "pure" when none was, else "mixed"."""
    kinds = {isinstance(getattr(sys.modules.get(m), "__loader__", None), importlib.machinery.ExtensionFileLoader)
             for m in COMPILED}
    return "mixed" if len(kinds) > 1 else "compiled" if kinds == {True} else "pure"
