"""A batch's records handed to the producer as one Kafka record batch per topic-partition.

Why: `AIOKafkaProducer.send` costs a coroutine, a future, a serialiser call and an accumulator
look-up per record: more than our whole scoring step for one event. Filling the producer's own
record batches (`create_batch`, `send_batch`, aiokafka's public API) costs one `append` per record
and one future per batch. The broker sees the same records. The producers are made with a
`max_batch_size` of `BATCH_BYTES`, so one batch holds a busy partition's whole output.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

# Below the broker's default message.max.bytes (1 MiB) with room for the batch header; a record
# larger than this still goes, alone in its batch (every topic we write allows max_message_bytes).
BATCH_BYTES = 1000 * 1024

#: (topic, partition, key, value, headers)
OutRecord = tuple[str, int, "bytes | None", "bytes | None", "list[tuple[str, bytes]] | None"]


async def send_batches(
    records: Iterable[OutRecord], producer_for: Callable[[int], Any],
) -> list[tuple[asyncio.Future, str, int, int]]:
    """Send records in order per topic-partition; `producer_for(partition)` names the aiokafka
    producer of a target partition's records. Returns, per batch sent, the future of its delivery
    (resolving to the metadata of its first record), its topic, partition and record count."""
    builders: dict[tuple[str, int], tuple[Any, Any, int]] = {}
    full: list[tuple[str, int, Any, Any, int]] = []
    for topic, partition, key, value, headers in records:
        entry = builders.get((topic, partition))
        if entry is None:
            producer = producer_for(partition)
            entry = (producer, producer.create_batch(), 0)
        producer, builder, count = entry
        if builder.append(timestamp=None, key=key, value=value, headers=headers or []) is None:
            full.append((topic, partition, producer, builder, count))
            builder, count = producer.create_batch(), 0
            builder.append(timestamp=None, key=key, value=value, headers=headers or [])
        builders[topic, partition] = (producer, builder, count + 1)
    full.extend((topic, partition, producer, builder, count)
                for (topic, partition), (producer, builder, count) in builders.items())
    sent = []
    for topic, partition, producer, builder, count in full:
        builder.close()
        future = await producer.send_batch(builder, topic, partition=partition)
        sent.append((future, topic, partition, count))
    return sent


async def last_offsets(sent: list[tuple[asyncio.Future, str, int, int]]) -> dict[tuple[str, int], int]:
    """Wait for every batch's delivery; the last offset written per (topic, partition)."""
    last: dict[tuple[str, int], int] = {}
    for future, topic, partition, count in sent:
        end = (await future).offset + count - 1
        if end > last.get((topic, partition), -1):
            last[topic, partition] = end
    return last
