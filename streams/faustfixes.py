"""Fixes for faust-streaming defects that the fault suite (tools/chaos.py) hit, applied once when the
app is built. Each says what goes wrong without it; remove one when Faust fixes the defect.
"""

from __future__ import annotations

from collections.abc import Mapping

from faust.transport.drivers import aiokafka as faust_aiokafka


async def _highwaters_from_the_broker(self, partitions) -> Mapping:
    """Changelog high watermarks for recovery, asked of the broker.

    Under exactly_once Faust reads them from the consumer's fetch state (`last_stable_offset`), which
    is unknown (-1) for a partition not fetched since it was assigned — every partition a worker takes
    over in a rebalance (robinhood/faust#658). Recovery then restores nothing (the contacts' state is
    lost, and events after it are scored on an empty state) or, with the consistency check on,
    crashes. ListOffsets with the consumer's isolation level (read_committed under exactly_once)
    returns the last stable offset itself."""
    return await self._ensure_consumer().end_offsets(list(partitions))


def apply() -> None:
    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters_from_the_broker
