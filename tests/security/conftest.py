"""Fixtures of the security tests: an authenticated broker, the environment that reaches it, and
`leadpulse` / worker subprocesses whose whole output can be searched for the password."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.runtime import ROOT

SECURITY_VARS = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
                 "KAFKA_SASL_PASSWORD_FILE", "KAFKA_SSL_CAFILE")
USER = "leadpulse"


@pytest.fixture(autouse=True)
def no_inherited_security(monkeypatch):
    """Whatever the shell running the tests has set, every test starts from PLAINTEXT."""
    for var in SECURITY_VARS:
        monkeypatch.delenv(var, raising=False)


@dataclass
class SecureBroker:
    bootstrap: str
    protocol: str           # SASL_PLAINTEXT or SASL_SSL
    password: str
    ca: Path | None         # the CA to trust (SASL_SSL)
    state_dir: Path

    def env(self, **overrides: str) -> dict[str, str]:
        """The variables that reach this broker with the password from the environment."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_SECURITY_PROTOCOL": self.protocol,
               "KAFKA_SASL_USERNAME": USER, "KAFKA_SASL_PASSWORD": self.password}
        if self.ca:
            env["KAFKA_SSL_CAFILE"] = str(self.ca)
        env.update(overrides)
        return {k: v for k, v in env.items() if v is not None}


@pytest.fixture(scope="module", params=["SASL_PLAINTEXT", "SASL_SSL"])
def broker(request, tmp_path_factory):
    """A SCRAM-SHA-512 broker for the module, once without and once with TLS (certificates made
    with openssl). Never the session's plaintext broker: that one accepts anyone."""
    from streams.localkafka import LocalKafka, LocalKafkaError, make_tls_files

    protocol = request.param
    state = tmp_path_factory.mktemp(f"kafka-{protocol.lower()}")
    password = "pw-" + secrets.token_urlsafe(18)  # distinctive: searched for in every output
    try:
        tls = make_tls_files(state / "tls") if protocol == "SASL_SSL" else None
        kafka = LocalKafka.with_scram(USER, password, state_dir=state / "broker", tls=tls)
        bootstrap = kafka.start()
    except LocalKafkaError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no {protocol} broker: {exc}", pytrace=False)
        pytest.skip(f"no {protocol} broker: {exc}")
    try:
        yield SecureBroker(bootstrap, protocol, password, tls.ca if tls else None, kafka.state_dir)
    finally:
        kafka.stop()


@pytest.fixture
def secure_env(broker, monkeypatch):
    """This test process reaches the broker through the environment (tools.runtime produce/consume)."""
    for k, v in broker.env().items():
        monkeypatch.setenv(k, v)
    return broker.env()


@dataclass
class Run:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def one_error_line(self) -> str:
        """stderr is exactly one `leadpulse: error: ...` line: no traceback, no library log noise."""
        lines = [ln for ln in self.err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("leadpulse: error: "), self.err
        return lines[0]


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> Run:
    """`python -m ARGS` in a subprocess: its real stdout and stderr, nothing captured by pytest."""
    full = {k: v for k, v in os.environ.items() if k not in SECURITY_VARS}
    full.update(env)
    res = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=full, capture_output=True, text=True,
                         timeout=timeout)
    return Run(res.returncode, res.stdout, res.stderr)
