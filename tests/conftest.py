"""One session-scoped Kafka broker for every `kafka`-marked test, and one Schema Registry for every
`registry`-marked test.

The broker, in order: KAFKA_BOOTSTRAP_SERVERS if set; a testcontainers Kafka if a Docker engine
answers; else the project's own local KRaft launcher. The registry: SCHEMA_REGISTRY_URL if set, else
the project's local Apicurio Registry launcher (streams/localregistry.py). When CI is set, a broker or
registry that cannot be had fails the run; it is never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

IN_CI = bool(os.environ.get("CI"))


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _unavailable(reason: str, what: str = "Kafka broker", marker: str = "kafka"):
    if IN_CI:
        pytest.fail(f"no {what} for the {marker}-marked tests (CI never skips them): {reason}", pytrace=False)
    pytest.skip(f"no {what}: {reason}")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> str:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from streams.localkafka import LocalKafka, LocalKafkaError

    broker = LocalKafka(state_dir=tmp_path_factory.mktemp("kafka"))
    try:
        bootstrap = broker.start()
    except LocalKafkaError as exc:
        _unavailable(str(exc))
    try:
        yield bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def schema_registry_url(tmp_path_factory) -> str:
    """A Confluent-compatible Schema Registry's URL (its ccompat API, for the local Apicurio)."""
    configured = os.environ.get("SCHEMA_REGISTRY_URL")
    if configured:
        yield configured
        return
    from streams.localkafka import LocalKafkaError
    from streams.localregistry import LocalRegistry

    registry = LocalRegistry(state_dir=tmp_path_factory.mktemp("registry"))
    try:
        url = registry.start()
    except LocalKafkaError as exc:
        _unavailable(str(exc), "Schema Registry", "registry")
    try:
        yield url
    finally:
        registry.stop()


@pytest.fixture
def unique() -> str:
    """A suffix that keeps a test's topics and consumer groups apart from every other test's."""
    return uuid.uuid4().hex[:10]


def _process_logs(item) -> list:
    """The logs of the worker and collector processes a test used: under its tmp_path, and those of
    the processes its fixtures hold (a module-scoped stack lives in another directory)."""
    from pathlib import Path

    funcargs = getattr(item, "funcargs", {}) or {}
    found = set()
    tmp = funcargs.get("tmp_path")
    if tmp is not None:
        found.update(Path(tmp).glob("**/worker-*.log"))
    for value in funcargs.values():
        for obj in value if isinstance(value, (tuple, list)) else (value,):
            path = getattr(obj, "log_path", None)
            if isinstance(path, Path) and path.exists():
                found.add(path)
    return sorted(found)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's worker and collector logs are copied to .leadpulse/test-logs/<test>/ (pytest
    rotates its tmp dirs away; a flaky failure in CI is only worth something with the whole log)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        from pathlib import Path

        logs = _process_logs(item)
        if logs:
            dest = Path(__file__).resolve().parent.parent / ".leadpulse" / "test-logs" / item.name
            dest.mkdir(parents=True, exist_ok=True)
            for log in logs:
                shutil.copy(log, dest / log.name)
            report.sections.append(("worker logs", f"copied to {dest}"))
