"""The Faust patches are applied, and do what their docstrings say."""

from __future__ import annotations

import asyncio

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

import streams.app  # noqa: F401  (building the app applies the fixes)


class _Consumer:
    def __init__(self):
        self.asked = None

    def last_stable_offset(self, tp):  # what Faust used to read: unknown right after a rebalance
        return -1

    async def end_offsets(self, partitions):
        self.asked = partitions
        return {tp: 42 for tp in partitions}


class _Thread:
    def __init__(self):
        self.consumer = _Consumer()

    def _ensure_consumer(self):
        return self.consumer


def test_changelog_highwaters_come_from_the_broker_even_under_exactly_once():
    thread = _Thread()
    got = asyncio.run(AIOKafkaConsumerThread._highwaters(thread, ["tp0", "tp1"]))
    assert got == {"tp0": 42, "tp1": 42} and thread.consumer.asked == ["tp0", "tp1"]
