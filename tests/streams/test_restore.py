"""The bulk restore leaves a table store exactly as Faust's own restore would: the latest value per
key, deletions applied, and the offset it holds recorded, so the next start reads only what is new."""

from __future__ import annotations

import asyncio

import faust
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP

from streams.restore import restore_before_start
from streams.settings import Settings

PARTITIONS = 3


async def _produce(bootstrap: str, topic: str, records, create: bool) -> None:
    if create:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})])
        finally:
            await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition, key, value in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


def _store(tmp_path, unique: str, store: str = "rocksdb://"):
    app = faust.App(f"restore-{unique}", store=store, datadir=str(tmp_path), key_serializer="raw",
                    value_serializer="raw")
    return app.Table("contacts", partitions=PARTITIONS, key_type=bytes, value_type=bytes).data


def _close(store) -> None:
    """Release the databases (a restore opens them in its own processes)."""
    for db in store._dbs.values():
        db.close()
    store._dbs.clear()


@pytest.mark.kafka
@pytest.mark.parametrize("processes", [1, 2])
def test_restore_writes_the_latest_value_per_key_and_then_only_what_is_new(kafka_bootstrap, unique, tmp_path,
                                                                            processes, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)  # the restoring processes read it too
    settings = Settings.from_env()
    topic = f"restore-{unique}-changelog"
    first = [(i % PARTITIONS, f"c{i}".encode(), f"v1-{i}".encode()) for i in range(30)]
    first += [(0, b"c0", b"v2-0"), (1, b"c1", None), (2, b"c2", b"v2-2")]  # an update, a deletion, an update
    asyncio.run(_produce(kafka_bootstrap, topic, first, create=True))
    store = _store(tmp_path, unique)

    done = restore_before_start(store, topic, settings, processes=processes)

    assert done.records == len(first) and done.partitions == PARTITIONS
    expected = {}
    for partition, key, value in first:
        expected[partition, key] = value
    for (partition, key), value in expected.items():
        assert store._db_for_partition(partition).get(key) == value, key
    held = {p: store.persisted_offset(TP(topic, p)) for p in range(PARTITIONS)}
    assert held == {0: 10, 1: 10, 2: 10}  # 11 records each, offsets 0..10
    _close(store)

    again = restore_before_start(store, topic, settings, processes=processes)
    assert again.records == 0  # the store holds everything already

    asyncio.run(_produce(kafka_bootstrap, topic, [(1, b"c4", b"v3-4")], create=False))
    tail = restore_before_start(store, topic, settings, processes=processes)
    assert tail.records == 1
    assert store._db_for_partition(1).get(b"c4") == b"v3-4"
    assert store.persisted_offset(TP(topic, 1)) == 11
    _close(store)


@pytest.mark.kafka
def test_a_changelog_not_created_yet_restores_nothing(kafka_bootstrap, unique, tmp_path, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    store = _store(tmp_path, unique)
    done = restore_before_start(store, f"restore-{unique}-missing", Settings.from_env())
    assert done.records == 0 and done.partitions == 0


def test_the_memory_store_is_left_to_faust(unique, tmp_path):
    store = _store(tmp_path, unique, store="memory://")
    assert restore_before_start(store, "any", Settings.from_env()) is None
