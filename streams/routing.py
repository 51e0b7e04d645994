"""Which partition owns a contact, whatever partition its producer wrote it to.

Why: a contact's state lives in exactly one partition of the contacts table. Producers choose
partitions with their own partitioner: the Java client, Kafka's tools and aiokafka hash the key with
murmur2, librdkafka (confluent-kafka for Python, Go, .NET, node) with CRC32, and a keyless or
differently keyed producer spreads one contact over several. So the worker never trusts the
partition a record arrived in: it decodes the contact id and computes the owner itself, with the
Java client's murmur2 (the most common choice, so most records are already in place). A record in
another partition is forwarded to the owner partition of the repartition topic (a step Kafka
Streams takes when a key changes), and scored there. Score lookups route with the same function.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

_CACHE_MAX = 1 << 20  # contact ids remembered before the cache starts over (≈100 MB at most)


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner picks for `key` (non-null keys)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class ContactRouter:
    """`owner(contact_id)` → its partition among `partitions`; cached, murmur2 costs ~2 µs a key."""

    __slots__ = ("partitions", "_owner")

    def __init__(self, partitions: int):
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.partitions = partitions
        self._owner: dict[str, int] = {}

    def owner(self, contact_id: str) -> int:
        p = self._owner.get(contact_id)
        if p is None:
            if len(self._owner) >= _CACHE_MAX:
                self._owner.clear()
            p = self._owner[contact_id] = murmur2_partition(contact_id.encode(), self.partitions)
        return p
