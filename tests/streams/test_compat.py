"""The Faust/aiokafka patches (streams.compat) are applied and do what their docstrings say."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace

from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from streams import compat

compat.apply()


class _Consumer:
    def __init__(self):
        self.asked = None

    def last_stable_offset(self, tp):  # what Faust used to read: unknown right after a rebalance
        return -1

    async def end_offsets(self, partitions):
        self.asked = partitions
        return {tp: 42 for tp in partitions}


def test_changelog_highwaters_come_from_the_broker():
    thread = SimpleNamespace(consumer=_Consumer())
    thread._ensure_consumer = lambda: thread.consumer
    got = asyncio.run(AIOKafkaConsumerThread._highwaters(thread, ["tp0", "tp1"]))
    assert got == {"tp0": 42, "tp1": 42} and thread.consumer.asked == ["tp0", "tp1"]


def test_the_worker_consumer_gets_the_fetch_wait_and_read_committed_from_its_hooks(monkeypatch):
    """Faust asks for any record at all (fetch.min.bytes 1), and reads uncommitted records unless it
    runs the transactions itself; the checkpoint runs them under exactly_once."""
    made = lambda self, transport: SimpleNamespace(  # noqa: E731
        _fetch_min_bytes=1, _fetch_max_wait_ms=1500, _isolation_level="read_uncommitted")
    monkeypatch.setattr(compat, "_create_worker_consumer", made)
    app = SimpleNamespace()
    app.__dict__["_leadpulse_hooks"] = compat.Hooks(fetch_wait_ms=10, read_committed=True)
    consumer = AIOKafkaConsumerThread._create_worker_consumer(SimpleNamespace(app=app), None)
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms, consumer._isolation_level) == (
        compat.FETCH_MIN_BYTES, 10, "read_committed")
    plain = AIOKafkaConsumerThread._create_worker_consumer(SimpleNamespace(app=SimpleNamespace()), None)
    assert (plain._fetch_min_bytes, plain._fetch_max_wait_ms, plain._isolation_level) == (1, 1500, "read_uncommitted")


def test_active_recovery_starts_from_what_the_worker_restored_itself(monkeypatch):
    seen = []

    async def original(self, consumer, tps, destination, title):
        seen.append((title, dict(destination)))

    monkeypatch.setattr(compat, "_build_offsets", original)
    tp0, tp1 = TP("cl", 0), TP("cl", 1)

    async def before_recovery(tps):
        assert tps == {tp0, tp1}
        return {tp0: 99, tp1: None}

    app = SimpleNamespace()
    app.__dict__["_leadpulse_hooks"] = compat.Hooks(before_recovery=before_recovery)
    recovery = SimpleNamespace(app=app)
    destination = Counter({tp0: -1, tp1: 5})
    asyncio.run(Recovery._build_offsets(recovery, None, {tp0, tp1}, destination, "active"))
    asyncio.run(Recovery._build_offsets(recovery, None, {tp0}, Counter({tp0: 3}), "standby"))
    assert seen == [("active", {tp0: 99, tp1: 5}), ("standby", {tp0: 3})]  # standbys: Faust's own way
