"""The compiled hot modules against the pure-Python source they are compiled from: same outputs, bit for bit.

``make venv`` compiles scoring/{model,engagement,state}.py with Cython (setup.py); ``LEADPULSE_PURE_PYTHON=1``
runs the source instead. Each run below is a fresh interpreter, so both builds are what a worker would load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import scoring
from scoring import _compiled

ROOT = Path(__file__).resolve().parents[2]


def _run(pure: bool, *args: int) -> dict:
    env = dict(os.environ)
    env.pop("LEADPULSE_PURE_PYTHON", None)
    if pure:
        env["LEADPULSE_PURE_PYTHON"] = "1"
    out = subprocess.run([sys.executable, "-m", "tests.scoring.differential", *map(str, args)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout)


def test_the_hot_modules_run_compiled():
    """make venv builds them; a silent fallback to the source would lose the speed without a word."""
    if _compiled.pure_requested():
        assert scoring.BUILD == "pure"
    else:
        assert scoring.BUILD == "compiled", "run `make venv` (it compiles scoring/ with Cython)"
        for name in _compiled.COMPILED:  # an extension older than its source would run yesterday's code
            mod = sys.modules[name]
            src = Path(mod.__file__).with_name(name.rpartition(".")[2] + ".py")
            assert Path(mod.__file__).stat().st_mtime >= src.stat().st_mtime, f"{src} changed since it was compiled: make venv"


def test_pure_python_is_the_source():
    assert _run(True, 3, 200, 20)["build"] == "pure"


@pytest.mark.parametrize("seed,events,contacts", [(1, 30_000, 1_500), (2, 20_000, 300), (3, 8_000, 4_000)])
def test_compiled_and_pure_give_identical_outputs(seed, events, contacts):
    if _compiled.pure_requested() and not any((ROOT / "scoring").glob("model.*.so")) and not os.environ.get("CI"):
        # Installed with LEADPULSE_PURE_PYTHON=1 (no C compiler wanted): there is no compiled build to
        # compare with. Never skipped in CI, which builds both.
        pytest.skip("installed with LEADPULSE_PURE_PYTHON=1: no compiled build to compare the source with")
    compiled, pure = _run(False, seed, events, contacts), _run(True, seed, events, contacts)
    assert (compiled["build"], pure["build"]) == ("compiled", "pure")
    assert compiled == {**pure, "build": "compiled"}
    # the workload reaches what it is meant to: lifecycle changes and refusals of both kinds
    assert pure["changes"] > 100 and pure["rejected"] > 10


def test_the_digest_sees_the_input():
    assert _run(True, 4, 3_000, 200)["digest"] != _run(True, 5, 3_000, 200)["digest"]
