"""Running leadpulse locally: worker subprocesses and plain Kafka clients, shared by the demo, the
CLI and the integration tests."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
_started: list[subprocess.Popen] = []


@atexit.register
def _kill_orphans() -> None:
    """A worker must not outlive the test run, demo or benchmark that started it, even one that
    crashed before its own cleanup."""
    for proc in _started:
        if proc.poll() is None:
            proc.kill()


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def topic_env(suffix: str) -> dict[str, str]:
    """Topic names and app id with a suffix, so runs (tests, demos) never see each other's data."""
    return {
        "LEADPULSE_APP_ID": f"leadpulse-{suffix}",
        "LEADPULSE_EVENTS_TOPIC": f"lead-events-{suffix}",
        "LEADPULSE_PROFILES_TOPIC": f"lead-profiles-{suffix}",
        "LEADPULSE_QUALIFICATIONS_TOPIC": f"lead-qualifications-{suffix}",
        "LEADPULSE_ERASURES_TOPIC": f"lead-erasures-{suffix}",
        "LEADPULSE_LIFECYCLE_TOPIC": f"lead-lifecycle-{suffix}",
        "LEADPULSE_SCORES_TOPIC": f"lead-scores-{suffix}",
        "LEADPULSE_DLQ_TOPIC": f"lead-dlq-{suffix}",
        "LEADPULSE_IDENTITY_TOPIC": f"lead-identities-{suffix}",
        "LEADPULSE_ACCOUNTS_INPUT_TOPIC": f"lead-account-memberships-{suffix}",
        "LEADPULSE_MERGES_TOPIC": f"lead-contact-merges-{suffix}",
        "LEADPULSE_ACCOUNTS_TOPIC": f"lead-accounts-{suffix}",
    }


@dataclass
class Worker:
    """A `python -m agents worker` subprocess with its own data dir, web port and log file."""


    bootstrap: str
    suffix: str
    workdir: Path
    name: str = "w1"
    extra_env: dict[str, str] = field(default_factory=dict)
    web_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    command = ("-m", "agents", "worker", "-l", "info")
    ready_line = "Ready"  # what the log says once it serves (then /health/ready decides)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(topic_env(self.suffix))
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            LEADPULSE_DATA_DIR=str(self.workdir / f"data-{self.name}"),
            LEADPULSE_WEB_PORT=str(self.web_port),
            LEADPULSE_FAST_REBALANCE="1",
            PYTHONUNBUFFERED="1",
        )
        if self.api_token:  # creates the tokens file
            env["LEADPULSE_API_TOKENS_FILE"] = str(self.workdir / "api-tokens")
        env.update(self.extra_env)
        return env

    @property
    def log_path(self) -> Path:
        return self.workdir / f"worker-{self.name}.log"

    @property
    def api_token(self) -> str:
        """An admin token of the lookup API (streams.webauth), shared by the workers of one work
        directory (a lookup routed to the contact's owner carries the caller's token along)."""
        import secrets

        path = self.workdir / "api-tokens"
        if not path.exists():
            self.workdir.mkdir(parents=True, exist_ok=True)
            path.write_text(f"tests admin {secrets.token_urlsafe(32)}\n")
            path.chmod(0o600)
        return path.read_text().split()[2]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> "Worker":
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, *self.command],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        _started.append(self.proc)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ready(self) -> bool:
        """The worker's own readiness endpoint: recovery done, partitions assigned, not rebalancing."""
        try:
            return self.get_json("/health/ready", timeout=2.0)[0] == 200
        except (OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until Faust says Ready and the readiness endpoint agrees."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            if self.ready_line in self.log_text() and self.ready():
                return
            time.sleep(0.2)
        raise AssertionError(f"worker {self.name} not ready in {timeout}s:\n{self.log_text()[-4000:]}")

    def get_json(self, path: str, timeout: float = 5.0) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.api_token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            return exc.code, json.loads(body) if body else {}

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@dataclass
class CollectorProcess(Worker):
    """A `python -m collector` subprocess (the HTTP collector) on `web_port`, with the given write
    keys (source name → key) and the topics of `suffix`."""

    name: str = "collector"
    write_keys: dict[str, str] = field(default_factory=dict)
    ca: Path | None = None  # with LEADPULSE_COLLECTOR_TLS_*: the CA our own requests trust

    command = ("-m", "collector")
    ready_line = ""  # /health/ready alone decides (the start-up line is at info, which may be off)

    @property
    def env(self) -> dict[str, str]:
        env = super().env
        env.update(LEADPULSE_COLLECTOR_PORT=str(self.web_port),
                   LEADPULSE_COLLECTOR_WRITE_KEYS_FILE=str(self.workdir / f"write-keys-{self.name}"))
        env.update(self.extra_env)
        return env

    @property
    def url(self) -> str:
        tls = "LEADPULSE_COLLECTOR_TLS_CERT" in self.extra_env
        return f"{'https' if tls else 'http'}://127.0.0.1:{self.web_port}"

    def get_json(self, path: str, timeout: float = 5.0) -> tuple[int, dict]:
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.ca)) if self.ca else None
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout, context=ctx) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            return exc.code, json.loads(body) if body else {}

    def start(self) -> "CollectorProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        keys = self.workdir / f"write-keys-{self.name}"
        keys.write_text("".join(f"{source} {key}\n" for source, key in self.write_keys.items()))
        keys.chmod(0o600)
        super().start()
        return self


def client_kwargs() -> dict:
    """Credentials and TLS of plain clients: from the environment, like the worker's."""
    return Settings.from_env().kafka_client_kwargs()


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, enable_idempotence=True,
                                **client_kwargs())
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k, value=v) for k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume(
    bootstrap: str, topic: str, until, timeout: float = 60.0, decode=None,
) -> list:
    """Read `topic` from the start (read_committed) until `until(records)` is true or time runs out."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        isolation_level="read_committed", group_id=None, **client_kwargs(),
    )
    await consumer.start()
    got: list = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(got):
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                for m in msgs:
                    got.append(decode(m) if decode else m)
        return got
    finally:
        await consumer.stop()


def wait_group_stable(workers: list[Worker], settle: float = 2.0, timeout: float = 60.0) -> None:
    """Until every worker has been ready for `settle` seconds in a row: a worker that joins makes the
    others rebalance, and events produced in the middle of that are a different test."""
    deadline = time.monotonic() + timeout
    since = None
    while time.monotonic() < deadline:
        if all(w.ready() for w in workers):
            since = since or time.monotonic()
            if time.monotonic() - since >= settle:
                return
        else:
            since = None
        time.sleep(0.2)
    raise AssertionError(f"workers {[w.name for w in workers]} not stable in {timeout}s")
