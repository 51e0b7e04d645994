"""`leadpulse worker`, `leadpulse kafka` and the CLI's common behaviour (help, exit codes, --debug)."""

from __future__ import annotations

import json
import os
import socket
import sys

import pytest

from tests.tools.conftest import one_error_line
from tools.runtime import free_port


@pytest.fixture
def listening():
    """Something that accepts TCP connections: enough for the worker's "is the broker there" check."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield f"127.0.0.1:{s.getsockname()[1]}"
    s.close()


@pytest.fixture
def execv(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execv", lambda path, argv: calls.append((path, list(argv))))
    return calls


# -- worker ---------------------------------------------------------------------------------------

def test_worker_execs_the_faust_worker(cli, monkeypatch, listening, execv):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", listening)
    monkeypatch.delenv("LEADPULSE_LOG_LEVEL", raising=False)
    monkeypatch.delenv("LEADPULSE_RULES", raising=False)
    assert cli("worker")[0] == 0
    assert execv == [(sys.executable, [sys.executable, "-m", "agents", "worker", "-l", "info"])]


def test_worker_hands_arguments_to_faust(cli, monkeypatch, listening, execv):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", listening)
    monkeypatch.setenv("LEADPULSE_LOG_LEVEL", "warning")
    assert cli("worker", "--web-port", "7000", "--without-web")[0] == 0
    assert cli("worker", "-l", "debug")[0] == 0
    assert cli("worker", "--", "--loglevel=error")[0] == 0
    assert [argv[4:] for _, argv in execv] == [
        ["-l", "warning", "--web-port", "7000", "--without-web"], ["-l", "debug"], ["--loglevel=error"]]


def test_faust_help_needs_no_broker(cli, monkeypatch, execv):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    assert cli("worker", "--", "--help")[0] == 0
    assert execv[0][1][3:] == ["worker", "--help"]


def test_worker_help_lists_the_settings_in_effect(cli, monkeypatch):
    monkeypatch.setenv("LEADPULSE_EVENTS_TOPIC", "my-events")
    rc, out, _ = cli("worker", "--help")
    assert rc == 0
    assert "python -m agents worker -l info" in out
    assert "events_topic" in out and "my-events" in out


@pytest.mark.parametrize("env, message", [
    ({"LEADPULSE_PARTITIONS": "four"}, "LEADPULSE_PARTITIONS='four': expected a whole number"),
    ({"LEADPULSE_STORE": "redis://"}, "LEADPULSE_STORE='redis://': expected one of"),
    ({"LEADPULSE_RULES": "/nonexistent.toml"}, "rules file ($LEADPULSE_RULES) /nonexistent.toml: no such file"),
])
def test_worker_bad_settings_are_one_line(cli, monkeypatch, listening, execv, env, message):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", listening)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    rc, _, err = cli("worker")
    assert rc == 2 and execv == []
    assert message in one_error_line(err)


def test_worker_with_an_invalid_rules_file(cli, monkeypatch, listening, execv, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('version = "x"\n')
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", listening)
    monkeypatch.setenv("LEADPULSE_RULES", str(bad))
    rc, _, err = cli("worker")
    assert rc == 2 and execv == []
    assert "rules.points: missing" in one_error_line(err)


def test_worker_unreachable_broker(cli, monkeypatch, execv):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    rc, _, err = cli("worker")
    assert rc == 2 and execv == []
    assert "cannot reach Kafka at 127.0.0.1:" in one_error_line(err)


# -- kafka ----------------------------------------------------------------------------------------

def test_kafka_status_of_a_stopped_broker(cli, tmp_path):
    rc, out, _ = cli("kafka", "status", "--dir", tmp_path)
    assert rc == 1 and out.startswith("stopped")
    rc, out, _ = cli("kafka", "status", "--dir", tmp_path, "--json")
    assert rc == 1 and json.loads(out)["running"] is False


def test_kafka_stop_and_wipe_when_nothing_runs(cli, tmp_path):
    (tmp_path / "data").mkdir()
    assert cli("kafka", "stop", "--dir", tmp_path) == (0, f"not running ({tmp_path})\n", "")
    rc, out, _ = cli("kafka", "wipe", "--dir", tmp_path, "--json")
    assert rc == 0 and json.loads(out)["wiped"] is True
    assert not (tmp_path / "data").exists()


def test_kafka_bad_port(cli, tmp_path):
    rc, _, err = cli("kafka", "start", "--dir", tmp_path, "--port", "70000")
    assert rc == 2
    assert "port 70000 is not a valid TCP port" in one_error_line(err)


@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_start_status_stop(cli, tmp_path, kafka_bootstrap):
    """A second, private broker (the session one keeps running): start, status, stop."""
    rc, out, err = cli("kafka", "start", "--dir", tmp_path)
    try:
        assert rc == 0, err
        bootstrap = out.strip().splitlines()[0]
        assert bootstrap.startswith("127.0.0.1:")
        rc, out, _ = cli("kafka", "status", "--dir", tmp_path, "--json")
        assert rc == 0 and json.loads(out)["bootstrap"] == bootstrap and json.loads(out)["running"]
    finally:
        rc, out, _ = cli("kafka", "stop", "--dir", tmp_path)
    assert rc == 0 and out.startswith("stopped")
    assert cli("kafka", "status", "--dir", tmp_path)[0] == 1


# -- the CLI itself -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [[], ["worker"], ["kafka"], ["simulate"], ["backtest"], ["explain"], ["rules"],
                                  ["rules", "check"]])
def test_every_command_has_help(cli, argv):
    rc, out, _ = cli(*argv, "--help")
    assert rc == 0
    assert out.startswith("usage: leadpulse")


def test_usage_errors_exit_2(cli):
    assert cli()[0] == 2
    assert cli("frobnicate")[0] == 2
    rc, _, err = cli("explain", "x", "--nope")
    assert rc == 2 and "unrecognized arguments: --nope" in err


def test_an_unexpected_error_is_one_line_unless_debug(cli, monkeypatch):
    import tools.rules_check

    def boom(rules):
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(tools.rules_check, "describe", boom)
    rc, _, err = cli("rules", "check", "default")
    assert rc == 1
    assert one_error_line(err) == ("leadpulse: error: RuntimeError: something broke "
                                   "(run with --debug for the traceback)")
    rc, _, err = cli("rules", "check", "default", "--debug")
    assert rc == 1 and "Traceback" in err and "RuntimeError: something" in err


def test_entry_point_is_declared():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "leadpulse"]
    assert ep.value == "tools.cli:main"
