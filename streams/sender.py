"""A batch's records handed to the producer as one Kafka record batch per topic-partition.

Why: `AIOKafkaProducer.send` costs a coroutine, a future, a serialiser call and an accumulator
look-up per record, and Faust's `Producer.send` adds a sensor call on top: more than our whole
scoring step for one event. Building the record batches ourselves (`BatchBuilder`) costs one
`append` per record and one future per batch. The broker sees the same records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder

# Below the broker's default message.max.bytes (1 MiB) with room for the batch header; a record
# larger than this still goes, alone in its batch (every topic we write allows max_message_bytes).
BATCH_BYTES = 1000 * 1024


def _builder(producer: Any, batch_bytes: int) -> BatchBuilder:
    acc = producer._message_accumulator
    txn = acc._txn_manager
    return BatchBuilder(batch_bytes, acc._compression_type,
                        is_transactional=txn is not None and txn.transactional_id is not None)


async def send_batches(
    records: Iterable[tuple[str, int, bytes | None, bytes | None]],
    producer_for: Callable[[int], Any],
    lock_for: Callable[[int], AbstractAsyncContextManager] = lambda partition: nullcontext(),
    batch_bytes: int = BATCH_BYTES,
) -> list[tuple[asyncio.Future, str, int, int]]:
    """Send `(topic, partition, key, value)` records, in order per topic-partition. `producer_for`
    names the (aiokafka) producer of a partition's records, `lock_for` what to hold while handing it
    a batch (Faust's per-transaction lock under exactly_once). Returns, per batch sent, the future of
    its delivery (resolving to the metadata of its first record), its topic, partition and size."""
    builders: dict[tuple[str, int], tuple[Any, BatchBuilder]] = {}
    full: list[tuple[str, int, Any, BatchBuilder]] = []
    for topic, partition, key, value in records:
        entry = builders.get((topic, partition))
        if entry is None:
            producer = producer_for(partition)
            entry = builders[topic, partition] = (producer, _builder(producer, batch_bytes))
        producer, builder = entry
        if builder.append(timestamp=None, key=key, value=value, headers=[]) is None:
            full.append((topic, partition, producer, builder))
            builder = _builder(producer, batch_bytes)
            builder.append(timestamp=None, key=key, value=value, headers=[])
            builders[topic, partition] = (producer, builder)
    full.extend((topic, partition, producer, builder) for (topic, partition), (producer, builder) in builders.items())
    sent = []
    for topic, partition, producer, builder in full:
        builder.close()
        async with lock_for(partition):
            future = await producer.send_batch(builder, topic, partition=partition)
        sent.append((future, topic, partition, builder._relative_offset))
    return sent
