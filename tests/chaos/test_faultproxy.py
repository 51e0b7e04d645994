"""The fault proxy and the broker's opt-in PROXIED listener: a client bootstrapped at the proxy
keeps going through it (so its faults reach it), a direct client never does."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.localkafka import PROXIED, LocalKafka, probe_metadata
from tools import faultproxy
from tools.faultproxy import FaultProxy, FaultProxyError
from tools.runtime import free_port


def test_the_proxied_listener_is_opt_in_and_advertised_at_the_proxy(tmp_path):
    plain = LocalKafka(state_dir=tmp_path / "a").server_properties(19092, 19093)
    assert PROXIED not in plain["listeners"] + plain["advertised.listeners"] + plain["listener.security.protocol.map"]

    props = LocalKafka(state_dir=tmp_path / "b", advertise_proxied=29000).server_properties(19092, 19093, 19094)
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,PROXIED://127.0.0.1:19094"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092,PROXIED://127.0.0.1:29000"
    assert "PROXIED:PLAINTEXT" in props["listener.security.protocol.map"].split(",")
    assert props["inter.broker.listener.name"] == "PLAINTEXT" and props["controller.listener.names"] == "CONTROLLER"


def test_a_scram_broker_proxies_the_same_authentication(tmp_path):
    kafka = LocalKafka.with_scram("alice", "s3cret", tmp_path, advertise_proxied=29000)
    props = kafka.server_properties(19092, 19093, 19094)
    assert "PROXIED:SASL_PLAINTEXT" in props["listener.security.protocol.map"].split(",")
    assert props["listener.name.proxied.scram-sha-512.sasl.jaas.config"] == \
        props["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]


def test_missing_go_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADPULSE_KAFKA_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(FaultProxyError) as err:
        faultproxy.toxiproxy_binary()
    assert "Go not found" in str(err.value) and "\n" not in str(err.value)
    assert str(tmp_path / f"toxiproxy-{faultproxy.TOXIPROXY_VERSION}") in str(err.value)


def test_a_failed_build_names_its_cause_and_log(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "go").write_text("#!/bin/sh\necho 'go: downloading x'\necho 'go: module lookup disabled by GOPROXY=off' >&2\n"
                             "exit 1\n")
    (fake / "go").chmod(0o755)
    monkeypatch.setenv("LEADPULSE_KAFKA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}/usr/bin:/bin")
    with pytest.raises(FaultProxyError, match="module lookup disabled by GOPROXY=off.*go-install.log"):
        faultproxy.toxiproxy_binary()


@pytest.fixture
def proxied_broker(tmp_path):
    """A broker of its own (the session one has no PROXIED listener) behind a toxiproxy."""
    toxi = FaultProxy.start(tmp_path)
    listen = free_port()
    kafka = LocalKafka(state_dir=tmp_path / "kafka", advertise_proxied=listen)
    try:
        direct = kafka.start()
        link = toxi.create("workers", upstream=f"127.0.0.1:{kafka.proxied_port}", listen_port=listen)
        yield direct, link
    finally:
        kafka.stop()
        toxi.stop()


async def _roundtrip(bootstrap: str, topic: str, value: bytes, timeout_s: float = 20.0) -> bytes:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await producer.start()
    try:
        meta = await asyncio.wait_for(producer.send_and_wait(topic, value, key=b"k"), timeout_s)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, request_timeout_ms=int(timeout_s * 1000))
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        tp = TopicPartition(topic, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        msg = await asyncio.wait_for(consumer.getone(), timeout_s)
        return msg.value
    finally:
        await consumer.stop()


@pytest.mark.kafka
@pytest.mark.slow
async def test_clients_at_the_proxy_stay_behind_it_and_direct_ones_never_pass_it(proxied_broker):
    direct, link = proxied_broker
    assert probe_metadata(link.listen_port) == [(1, "127.0.0.1", link.listen_port)]
    assert probe_metadata(int(direct.rsplit(":", 1)[1])) == [(1, "127.0.0.1", int(direct.rsplit(":", 1)[1]))]

    assert await _roundtrip(link.address, "proxied", b"through") == b"through"
    link.silence()  # a blackout: no byte through the proxy, the direct listener untouched
    try:
        assert await _roundtrip(direct, "proxied", b"direct") == b"direct"
        with pytest.raises((KafkaError, asyncio.TimeoutError)):
            await _roundtrip(link.address, "proxied", b"blocked", timeout_s=4.0)
    finally:
        link.restore()
    assert await _roundtrip(link.address, "proxied", b"after") == b"after"


@pytest.mark.kafka
@pytest.mark.slow
async def test_latency_reaches_a_client_at_the_proxy(proxied_broker):
    _, link = proxied_broker
    loop = asyncio.get_running_loop()
    link.latency(400, jitter=0)
    try:
        start = loop.time()
        await asyncio.to_thread(probe_metadata, link.listen_port, 5.0)
        assert loop.time() - start >= 0.75  # 400 ms each way
    finally:
        link.remove_kind("latency")
    start = loop.time()
    await asyncio.to_thread(probe_metadata, link.listen_port, 5.0)
    assert loop.time() - start < 0.3
