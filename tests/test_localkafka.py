"""Tests for streams/localkafka.py: unit tests need no broker; the `kafka` one starts real brokers."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from streams import localkafka
from streams.localkafka import LocalKafka, LocalKafkaError

FAKE_JAVA = """#!/bin/sh
echo 'openjdk version "17.0.15" 2025-04-15' >&2
exit 0
"""


def _script(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def listening_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """No inherited LEADPULSE_KAFKA_* settings; an empty jar cache."""
    for var in ("LEADPULSE_KAFKA_PORT", "LEADPULSE_KAFKA_DIR", "LEADPULSE_KAFKA_VERSION", "LEADPULSE_KAFKA_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


# ------------------------------------------------------------------ no broker needed


def test_server_properties_content(isolated_env):
    kafka = LocalKafka(state_dir=isolated_env / "state")
    kafka._write_configs(19092, 19093)
    text = kafka.properties_path.read_text()
    lines = set(text.splitlines())
    for expected in [
        "process.roles=broker,controller",
        "node.id=1",
        "controller.quorum.bootstrap.servers=127.0.0.1:19093",
        "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093",
        "advertised.listeners=PLAINTEXT://127.0.0.1:19092",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={kafka.data_dir}",
        "num.partitions=4",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=8",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=8",
        "min.insync.replicas=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        "message.max.bytes=8388608",
        "replica.fetch.max.bytes=8388608",
    ]:
        assert expected in lines, expected
    assert "controller.quorum.voters" not in text  # --standalone needs bootstrap.servers, not voters
    assert "0.0.0.0" not in text and "localhost" not in text
    assert kafka.bootstrap_path.read_text().strip() == "127.0.0.1:19092"
    assert kafka.bootstrap == "127.0.0.1:19092"
    log4j = kafka.log4j_path.read_text()
    assert f"appender.file.fileName = {kafka.log_path}" in log4j
    assert "rootLogger.level = INFO" in log4j


def test_extra_properties_override_and_placeholders(isolated_env):
    kafka = LocalKafka(state_dir=isolated_env / "state", extra_properties={
        "listeners": "SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": "SASL_PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config":
            'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="a\\b";',
    })
    props = kafka.server_properties(20000, 20001)
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:20000,CONTROLLER://127.0.0.1:20001"
    assert props["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert props["transaction.state.log.replication.factor"] == "1"  # defaults kept
    assert kafka._listener_protocol(props, 20000) == "SASL_PLAINTEXT"
    kafka._write_configs(20000, 20001)
    text = kafka.properties_path.read_text()
    assert 'user_alice="a\\\\b";' in text  # backslash escaped for java.util.Properties


def test_pom_pins_slf4j2_and_versions(isolated_env, monkeypatch):
    monkeypatch.setenv("LEADPULSE_KAFKA_VERSION", "4.1.0")
    kafka = LocalKafka(state_dir=isolated_env / "state")
    assert kafka.version == "4.1.0"
    assert kafka.cache_dir == isolated_env / "cache" / "leadpulse" / "kafka-4.1.0"
    pom = kafka.pom_xml()
    assert "<packaging>pom</packaging>" in pom
    assert "<artifactId>kafka_2.13</artifactId><version>4.1.0</version>" in pom
    assert "<artifactId>log4j-slf4j2-impl</artifactId><version>2.25.3</version>" in pom
    assert "<artifactId>slf4j-api</artifactId><version>2.0." in pom


def test_busy_fixed_port_is_one_line_error(isolated_env, listening_port):
    kafka = LocalKafka(state_dir=isolated_env / "state", port=listening_port)
    with pytest.raises(LocalKafkaError) as err:
        kafka.start(timeout=5)
    assert str(err.value) == (f"port {listening_port} on 127.0.0.1 is in use: set LEADPULSE_KAFKA_PORT "
                              f"to a free port or stop what uses it")
    assert not kafka.pid_path.exists()


def test_busy_port_from_env(isolated_env, listening_port, monkeypatch):
    monkeypatch.setenv("LEADPULSE_KAFKA_PORT", str(listening_port))
    with pytest.raises(LocalKafkaError, match=f"port {listening_port} on 127.0.0.1 is in use"):
        LocalKafka(state_dir=isolated_env / "state").start(timeout=5)


def test_cli_error_is_one_line_exit_2(isolated_env, listening_port, capsys):
    rc = localkafka.main(["start", "--dir", str(isolated_env / "state"), "--port", str(listening_port)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"port {listening_port} on 127.0.0.1 is in use" in err


def test_missing_java(isolated_env, monkeypatch):
    empty = isolated_env / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    kafka = LocalKafka(state_dir=isolated_env / "state")
    with pytest.raises(LocalKafkaError) as err:
        kafka.start(timeout=5)
    msg = str(err.value)
    assert "\n" not in msg
    assert "Java" in msg and "install Java 17" in msg
    assert not (isolated_env / "cache").exists()  # failed before touching Maven


def test_missing_maven(isolated_env, monkeypatch):
    bin_dir = isolated_env / "bin"
    _script(bin_dir, "java", FAKE_JAVA)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(LocalKafkaError) as err:
        LocalKafka(state_dir=isolated_env / "state").start(timeout=5)
    assert str(err.value).startswith("Maven (mvn) not found: install it (apt-get install maven)")


def test_maven_failure_points_to_log(isolated_env, monkeypatch):
    bin_dir = isolated_env / "bin"
    _script(bin_dir, "java", FAKE_JAVA)
    _script(bin_dir, "mvn", "#!/bin/sh\necho '[ERROR] Could not resolve dependencies: network is down'\nexit 1\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    kafka = LocalKafka(state_dir=isolated_env / "state")
    with pytest.raises(LocalKafkaError) as err:
        kafka.start(timeout=5)
    msg = str(err.value)
    mvn_log = kafka.cache_dir / "mvn.log"
    assert "\n" not in msg
    assert "network is down" in msg and str(mvn_log) in msg
    assert "network is down" in mvn_log.read_text()
    assert not (kafka.cache_dir / ".complete").exists()
    assert not kafka.libs_dir.exists()


def test_stop_never_kills_a_non_kafka_pid(isolated_env):
    kafka = LocalKafka(state_dir=isolated_env / "state")
    kafka.state_dir.mkdir(parents=True)
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        kafka.pid_path.write_text(f"{victim.pid}\n")
        assert kafka.status()["running"] is False
        assert kafka.stop(timeout=1) is False
        time.sleep(0.2)
        assert victim.poll() is None, "stop() killed a process that is not a Kafka broker"
        assert not kafka.pid_path.exists()
        kafka._terminate(victim.pid, timeout=0.5)  # the low-level helper refuses too
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_status_of_never_started_dir(isolated_env):
    st = LocalKafka(state_dir=isolated_env / "state").status()
    assert st["state"] == "stopped" and st["running"] is False and st["pid"] is None
    rc = localkafka.main(["status", "--dir", str(isolated_env / "state")])
    assert rc == 1


def test_cluster_id_format():
    for _ in range(50):
        cid = localkafka.new_cluster_id()
        assert len(cid) == 22 and not cid.startswith("-")
        padded = cid + "=="
        assert uuid.UUID(bytes=__import__("base64").urlsafe_b64decode(padded))


# -------------------------------------------------------------------- real broker


def _pid_gone(pid: int) -> bool:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat_line.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@pytest.mark.kafka
@pytest.mark.slow
async def test_real_broker_produce_consume_stop(tmp_path, monkeypatch):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    monkeypatch.delenv("LEADPULSE_KAFKA_PORT", raising=False)
    kafka = LocalKafka(state_dir=tmp_path / "kafka")
    other = LocalKafka(state_dir=tmp_path / "kafka-2")
    pid = None
    try:
        bootstrap = await asyncio.to_thread(kafka.start, 120)
        assert bootstrap.startswith("127.0.0.1:") and bootstrap == kafka.bootstrap
        pid = kafka.status()["pid"]
        assert kafka.status()["state"] == "running"
        # idempotent: same broker, same bootstrap
        assert await asyncio.to_thread(LocalKafka(state_dir=tmp_path / "kafka").start, 30) == bootstrap
        assert LocalKafka(state_dir=tmp_path / "kafka").status()["pid"] == pid
        # a second, independent broker at the same time
        bootstrap2 = await asyncio.to_thread(other.start, 120)
        assert bootstrap2 != bootstrap

        big = os.urandom(5 * 1024 * 1024)  # message.max.bytes is 8 MiB
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 * 1024 * 1024,
                                    enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait("lp-localkafka-test", b"hello", key=b"k1")
            await producer.send_and_wait("lp-localkafka-test", big, key=b"k2")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer("lp-localkafka-test", bootstrap_servers=bootstrap, group_id="lp-test",
                                    auto_offset_reset="earliest", fetch_max_bytes=16 * 1024 * 1024,
                                    max_partition_fetch_bytes=16 * 1024 * 1024)
        await consumer.start()
        try:
            got = {}
            async with asyncio.timeout(30):
                while len(got) < 2:
                    msg = await consumer.getone()
                    got[msg.key] = msg.value
            assert got[b"k1"] == b"hello" and got[b"k2"] == big
            await consumer.commit()
        finally:
            await consumer.stop()

        log = kafka.log_path.read_text()
        assert "Kafka Server started" in log  # written through Log4j2, not a no-op SLF4J binding
        assert "SLF4J" not in log
    finally:
        assert kafka.stop() in (True, False)
        other.stop()

    assert pid is not None and _pid_gone(pid)
    assert not kafka.pid_path.exists()
    assert kafka.status()["state"] == "stopped"
    assert other.status()["state"] == "stopped"


@pytest.mark.kafka
def test_broker_dying_at_startup_reports_cause(tmp_path, listening_port):
    kafka = LocalKafka(state_dir=tmp_path / "kafka", extra_properties={
        "listeners": f"PLAINTEXT://127.0.0.1:{{port}},CONTROLLER://127.0.0.1:{listening_port}",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{listening_port}",
    })
    with pytest.raises(LocalKafkaError) as err:
        kafka.start(timeout=60)
    msg = str(err.value)
    assert "\n" not in msg
    assert "exited with code" in msg and "Address already in use" in msg and str(kafka.log_path) in msg
    assert err.value.log_tail and len(err.value.log_tail.splitlines()) <= 20
    assert not kafka.pid_path.exists()
    assert kafka.status()["state"] == "stopped"
