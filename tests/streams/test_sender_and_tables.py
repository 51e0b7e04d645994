"""One record batch per topic-partition, in order; the table store a partition at a time."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from streams.sender import last_offsets, send_batches
from streams.tables import PartitionStore


class _Producer:
    """What send_batches uses of an AIOKafkaProducer: create_batch and send_batch."""

    def __init__(self, batch_bytes: int = 1024 * 1024):
        self.batch_bytes = batch_bytes
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []

    def create_batch(self):
        return BatchBuilder(self.batch_bytes, 0, is_transactional=False)

    async def send_batch(self, builder, topic, *, partition):
        batch = DefaultRecordBatch(bytes(builder._builder.build()))
        self.sent.append((topic, partition, [(r.key, r.value) for r in batch]))
        future = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(offset=100 * len(self.sent)))
        return future


def test_records_go_as_one_batch_per_topic_partition_in_order():
    producer = _Producer()
    records = [("scores", i % 2, f"k{i}".encode(), f"v{i}".encode(), None) for i in range(6)]
    records.insert(3, ("lifecycle", 1, b"c", b"change", [("h", b"1")]))
    sent = asyncio.run(send_batches(records, lambda partition: producer))
    assert sorted((t, p, kv) for t, p, kv in producer.sent) == [
        ("lifecycle", 1, [(b"c", b"change")]),
        ("scores", 0, [(b"k0", b"v0"), (b"k2", b"v2"), (b"k4", b"v4")]),
        ("scores", 1, [(b"k1", b"v1"), (b"k3", b"v3"), (b"k5", b"v5")]),
    ]
    assert sorted((topic, partition, count) for _, topic, partition, count in sent) == [
        ("lifecycle", 1, 1), ("scores", 0, 3), ("scores", 1, 3)]


def test_a_full_batch_is_sent_and_the_next_one_started_keeping_the_order():
    producer = _Producer(batch_bytes=1024)
    records = [("scores", 0, f"k{i}".encode(), b"x" * 400, None) for i in range(10)]
    sent = asyncio.run(send_batches(records, lambda partition: producer))
    keys = [k for _, _, kv in producer.sent for k, _ in kv]
    assert keys == [f"k{i}".encode() for i in range(10)] and len(producer.sent) > 1
    assert sum(count for *_, count in sent) == 10
    assert [count for *_, count in sent] == [len(kv) for _, _, kv in producer.sent]


def test_a_record_larger_than_a_batch_still_goes_alone():
    producer = _Producer(batch_bytes=1024)
    asyncio.run(send_batches([("dlq", 0, b"k", b"x" * 5000, None)], lambda partition: producer))
    assert producer.sent == [("dlq", 0, [(b"k", b"x" * 5000)])]


def test_last_offsets_are_the_base_offset_plus_the_count_per_topic_partition():
    producer = _Producer(batch_bytes=1024)
    records = [("scores", 0, f"k{i}".encode(), b"x" * 400, None) for i in range(5)] + [("dlq", 1, b"k", b"v", None)]

    async def run():
        return await last_offsets(await send_batches(records, lambda partition: producer))

    reached = asyncio.run(run())
    bases = {}  # base offset the fake gave each batch, in send order
    for i, (topic, partition, kv) in enumerate(producer.sent):
        bases.setdefault((topic, partition), []).append((100 * (i + 1), len(kv)))
    assert reached == {tp: max(b + n - 1 for b, n in runs) for tp, runs in bases.items()}


class _Rocks:
    """Faust's RocksDB store: a database per partition, open for the assigned ones (`_dbs`)."""

    def __init__(self, assigned=(0, 1, 2, 3)):
        self._dbs: dict[int, _Db] = {p: _Db() for p in assigned}
        self.dbs = self._dbs

    def _db_for_partition(self, partition):  # what Faust opens with; leadpulse never calls it
        raise AssertionError("the worker must not open a partition's database itself")

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


def test_a_partition_faust_has_revoked_reads_empty_and_is_not_written():
    """Its database is no longer open here; opening it again while the old handle lives would fail
    on RocksDB's lock (a chaos run hit it). Its states are on the changelog."""
    rocks = _Rocks()
    store = PartitionStore(rocks)
    store.focus(3)
    store[b"k"] = b"v"
    del rocks._dbs[3]  # revoked: Faust drops the partition's database
    store.forget()
    store.focus(3)
    assert store.get(b"k") is None
    assert store.write(3, [(b"k", b"w")], 10) is False and 3 not in rocks._dbs

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


class _RealRocks:
    """A database per partition, real RocksDB (rocksdict), opened as Faust opens them."""

    def __init__(self, path):
        from faust.stores.rocksdb import RocksDBOptions

        self.path, self.options = path, RocksDBOptions()
        self._dbs = {p: self.options.open(self.path / f"p{p}.db") for p in (0, 1)}  # assigned: open

    def _db_for_partition(self, partition):
        raise AssertionError("the worker must not open a partition's database itself")

    def keys(self):
        return []


def test_a_partition_write_lands_whole_with_the_changelog_offset_it_reaches(tmp_path):
    store = PartitionStore(_RealRocks(tmp_path))
    assert store.held(1) is None
    store.write(1, [(b"a", b"1"), (b"b", b"2")], 41)
    store.write(1, [(b"a", None)], 42)  # a delete in the same kind of write
    store.write(0, [(b"c", b"3")], None)  # no changelog offset: the held one is left as it was
    assert store.held(1) == 42 and store.held(0) is None
    assert sorted(store.items_of(1)) == [(b"b", b"2")]  # the offset key is not a contact
    store.focus(0)
    assert store.get(b"c") == b"3" and store.get(b"b") is None


def test_the_memory_store_keeps_the_offsets_it_reached_beside_its_one_dict():
    store = PartitionStore(_Memory())
    store.write(2, [(b"a", b"1")], 7)
    store.write(3, [(b"b", b"2"), (b"a", None)], 9)
    assert (store.held(2), store.held(3), store.held(0)) == (7, 9, None)
    assert list(store.items_of(2)) == [(b"b", b"2")]  # one dict: the caller filters by owner
