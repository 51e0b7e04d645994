"""The Faust patches are applied, and do what their docstrings say."""

from __future__ import annotations

import asyncio

import pytest
from faust.transport.consumer import Consumer
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


class _Acks:
    """The bookkeeping Faust's Consumer._new_offset reads."""

    def __init__(self, committed, acked):
        from collections import defaultdict

        from intervaltree import IntervalTree

        self._committed_offset = defaultdict(lambda: None, {"tp": committed})
        self._acked = defaultdict(list, {"tp": list(acked)})
        self._acked_index = defaultdict(set, {"tp": set(acked)})
        self._gap = defaultdict(IntervalTree)


@pytest.mark.parametrize("committed, acked, expected", [
    (10, [10, 11, 12], 13),        # the run starts at the committed offset: committed
    (10, [11, 12], None),          # offset 10 missing: Faust would commit 13 and lose it
    (10, [12, 13], None),          # a wider gap: Faust waits too
    (None, [5, 6], 7),             # nothing committed yet: Faust's rule
])
def test_a_commit_never_moves_past_an_unacknowledged_offset(committed, acked, expected):
    assert Consumer._new_offset(_Acks(committed, acked), "tp") == expected


def test_a_gap_that_does_not_fill_is_read_again_and_then_skipped_if_it_is_no_record(monkeypatch):
    from streams import faustfixes

    monkeypatch.setattr(faustfixes, "REFETCH_AFTER_S", 0.0)
    acks = _Acks(10, [11, 12])
    acks._read_offset = {}
    seeks = []

    async def seek(tp, offset):
        seeks.append((tp, offset))
        acks._read_offset[tp] = offset

    acks.seek = seek
    acks.log = type("Log", (), {"warning": staticmethod(lambda *a: None)})()

    async def commit_once():
        result = Consumer._new_offset(acks, "tp")
        await asyncio.sleep(0)
        return result

    assert asyncio.run(commit_once()) is None and seeks == [("tp", 10)]  # read again from 10
    assert asyncio.run(commit_once()) is None  # the re-read has not passed 10 yet: keep waiting
    acks._read_offset["tp"] = 12  # it has passed 10 without returning it: a transaction marker
    assert asyncio.run(commit_once()) == 13


class _ConsumerThread:
    def __init__(self, app):
        self.app = app


def test_the_worker_consumer_lets_the_broker_hold_a_fetch_for_the_bulk_delivery(monkeypatch):
    """Faust asks for any record at all (fetch.min.bytes 1): each trickle of events became a batch."""
    from types import SimpleNamespace

    from streams import bulk

    monkeypatch.setattr(bulk, "_create_worker_consumer",
                        lambda self, transport: SimpleNamespace(_fetch_min_bytes=1, _fetch_max_wait_ms=1500))
    waiting = SimpleNamespace(_leadpulse_bulk=SimpleNamespace(fetch_wait_ms=10))  # an app with a bulk delivery
    consumer = AIOKafkaConsumerThread._create_worker_consumer(_ConsumerThread(waiting), None)
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (bulk.FETCH_MIN_BYTES, 10)
    plain = AIOKafkaConsumerThread._create_worker_consumer(_ConsumerThread(SimpleNamespace()), None)
    assert (plain._fetch_min_bytes, plain._fetch_max_wait_ms) == (1, 1500)  # no bulk delivery: Faust's own
