"""Fixes for faust-streaming defects that the fault suite (tools/chaos.py) hit, applied once when the
app is built. Each says what goes wrong without it; remove one when Faust fixes the defect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from faust.transport import consumer as faust_consumer
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


_new_offset = faust_consumer.Consumer._new_offset
REFETCH_AFTER_S = 3.0


def _new_offset_without_skipping(self, tp):
    """The offset to commit for `tp`: only a run of acknowledged offsets that starts right at the
    committed offset.

    Faust commits the first run of consecutive acknowledged offsets even when a single offset is
    missing in front of it (it allows one for a transaction marker, which the consumer never
    returns); a message whose delivery a rebalance interrupted was then committed past and lost
    (the fault suite lost an event in about one short run in three). Here the commit waits for the
    missing offset; if it has not come after a few seconds the partition is read again from the
    committed offset (events read twice count once: event-id dedup); and if that re-read goes past
    the offset without returning it, it is not a record (a transaction marker) and is skipped."""
    committed = self._committed_offset[tp]
    acked = self._acked[tp]
    gaps = self.__dict__.setdefault("_leadpulse_gaps", {})  # tp → (noticed at, re-read at or None)
    if committed is None or not acked or self._gap[tp] or min(acked) <= committed:
        gaps.pop(tp, None)
        return _new_offset(self, tp)
    now = time.monotonic()
    noticed, reread = gaps.setdefault(tp, (now, None))
    if reread is None and now - noticed >= REFETCH_AFTER_S:
        gaps[tp] = (noticed, now)
        self.log.warning("offset %s of %s was not delivered: reading the partition again from there", committed, tp)
        asyncio.ensure_future(self.seek(tp, committed))
    elif reread is not None and now - reread >= REFETCH_AFTER_S and (self._read_offset.get(tp) or -1) > committed:
        gaps.pop(tp, None)
        self._gap[tp].addi(committed, min(acked))  # read past, never returned: not a record
        return _new_offset(self, tp)
    return None


def apply() -> None:
    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters_from_the_broker
    faust_consumer.Consumer._new_offset = _new_offset_without_skipping
