"""Compiles the scoring core's hot modules with Cython, from the very same Python source.

Everything else is in pyproject.toml.  The pure-Python modules stay the reference (and the fallback):
``LEADPULSE_PURE_PYTHON=1`` at install time builds nothing; at run time it makes ``scoring`` import the
``.py`` sources even where compiled modules sit beside them (see ``scoring/_compiled.py``).
"""

import os

from setuptools import setup

#: The per-contact step and the state codec; the Cython build reads the ``float`` annotations of
#: ``ScoringModel.apply_events`` as C doubles.  Keep in step with ``scoring._compiled.COMPILED``.
COMPILED = ["scoring/model.py", "scoring/engagement.py", "scoring/state.py"]

ext_modules = []
if os.environ.get("LEADPULSE_PURE_PYTHON", "") in ("", "0"):
    from Cython.Build import cythonize

    ext_modules = cythonize(COMPILED, compiler_directives={"language_level": 3}, quiet=True)

setup(ext_modules=ext_modules)
