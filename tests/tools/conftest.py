"""Fixtures of the `leadpulse` CLI tests: run the CLI in-process, and one shared simulated funnel."""

from __future__ import annotations

import pytest

from tools.cli import main

END = "2025-01-01T00:00:00Z"
END_MS = 1_735_689_600_000


@pytest.fixture
def cli(capsys):
    """`cli("backtest", "--events", f)` → (exit code, stdout, stderr), in this process."""

    def run(*argv):
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture(scope="session")
def funnel(tmp_path_factory):
    """A simulated funnel file shared by the read-only tests (800 contacts, 60 days, seed 7)."""
    path = tmp_path_factory.mktemp("funnel") / "funnel.avro"
    assert main(["simulate", "--contacts", "800", "--days", "60", "--seed", "7", "--end", END,
                 "--out", str(path), "--json"]) == 0
    return path


@pytest.fixture(scope="session")
def strict_rules(tmp_path_factory):
    """The default rules with a higher MQL threshold (75 instead of 65)."""
    from importlib import resources

    text = resources.files("scoring").joinpath("default_rules.toml").read_text(encoding="utf-8")
    assert "\nmin_score = 65\n" in text
    text = text.replace("\nmin_score = 65\n", "\nmin_score = 75\n")
    text = text.replace('version = "', 'version = "strict-75-', 1)
    path = tmp_path_factory.mktemp("rules") / "strict.toml"
    path.write_text(text, encoding="utf-8")
    return path


def one_error_line(err: str) -> str:
    """stderr must be exactly one `leadpulse: error: ...` line, no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("leadpulse: error: "), err
    assert "Traceback" not in err
    return lines[0]
