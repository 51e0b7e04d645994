"""One record batch per topic-partition, in order; the table store a partition at a time."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from aiokafka.record.default_records import DefaultRecordBatch

from streams.sender import send_batches
from streams.tables import PartitionStore


class _Accumulator:
    _compression_type = 0
    _txn_manager = None


class _Producer:
    """What send_batches uses of an AIOKafkaProducer: the accumulator's settings and send_batch."""

    def __init__(self):
        self._message_accumulator = _Accumulator()
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []

    async def send_batch(self, builder, topic, *, partition):
        batch = DefaultRecordBatch(bytes(builder._builder.build()))
        self.sent.append((topic, partition, [(r.key, r.value) for r in batch]))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def test_records_go_as_one_batch_per_topic_partition_in_order():
    producer = _Producer()
    records = [("scores", i % 2, f"k{i}".encode(), f"v{i}".encode()) for i in range(6)]
    records.insert(3, ("lifecycle", 1, b"c", b"change"))
    sent = asyncio.run(send_batches(records, lambda partition: producer))
    assert sorted((t, p, kv) for t, p, kv in producer.sent) == [
        ("lifecycle", 1, [(b"c", b"change")]),
        ("scores", 0, [(b"k0", b"v0"), (b"k2", b"v2"), (b"k4", b"v4")]),
        ("scores", 1, [(b"k1", b"v1"), (b"k3", b"v3"), (b"k5", b"v5")]),
    ]
    assert sorted((topic, partition, count) for _, topic, partition, count in sent) == [
        ("lifecycle", 1, 1), ("scores", 0, 3), ("scores", 1, 3)]


def test_a_full_batch_is_sent_and_the_next_one_started_keeping_the_order():
    producer = _Producer()
    records = [("scores", 0, f"k{i}".encode(), b"x" * 400) for i in range(10)]
    sent = asyncio.run(send_batches(records, lambda partition: producer, batch_bytes=1024))
    keys = [k for _, _, kv in producer.sent for k, _ in kv]
    assert keys == [f"k{i}".encode() for i in range(10)] and len(producer.sent) > 1
    assert sum(count for *_, count in sent) == 10


def test_a_record_larger_than_a_batch_still_goes_alone():
    producer = _Producer()
    asyncio.run(send_batches([("dlq", 0, b"k", b"x" * 5000)], lambda partition: producer, batch_bytes=1024))
    assert producer.sent == [("dlq", 0, [(b"k", b"x" * 5000)])]


def test_each_batch_is_handed_over_under_its_partitions_lock():
    producer, held = _Producer(), []

    @asynccontextmanager
    async def lock(partition):
        held.append(partition)
        yield

    asyncio.run(send_batches([("scores", 3, b"k", b"v"), ("scores", 1, b"k", b"v")], lambda p: producer, lock))
    assert sorted(held) == [1, 3]


class _Rocks:
    """Faust's RocksDB store: a database per partition."""

    def __init__(self):
        self.dbs: dict[int, dict] = {}

    def _db_for_partition(self, partition):
        return self.dbs.setdefault(partition, _Db())

    def keys(self):
        return [k for db in self.dbs.values() for k in db.data]


class _Db:
    def __init__(self):
        self.data = {}

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value):
        self.data[key] = value

    def delete(self, key):
        self.data.pop(key, None)


def test_reads_and_writes_land_in_the_focused_partition():
    rocks = _Rocks()
    store = PartitionStore(rocks)
    store.focus(2)
    store[b"a"] = b"1"
    store.focus(0)
    assert store.get(b"a") is None and b"a" not in store
    store[b"b"] = b"2"
    store.focus(2)
    assert store[b"a"] == b"1"
    del store[b"a"]
    assert rocks.dbs[2].data == {} and rocks.dbs[0].data == {b"b": b"2"}
    assert list(store) == [b"b"] and len(store) == 1


class _Memory:
    def __init__(self):
        self.data = {}

    def keys(self):
        return self.data.keys()


def test_the_memory_store_is_one_mapping_for_every_partition():
    memory = _Memory()
    store = PartitionStore(memory)
    store.focus(1)
    store[b"a"] = b"1"
    store.focus(3)
    assert store[b"a"] == b"1" and memory.data == {b"a": b"1"}
