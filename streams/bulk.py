"""Bulk delivery: the agent receives each fetch of a partition as one list, not a message at a time.

Why: Faust hands a consumed message to its agent through an async generator, the conductor, a
channel queue and `wait_first` (two tasks and an `asyncio.wait`), one message per event-loop turn:
about 70 µs a message before any work, a ceiling near 13k events/s (see ../shared/notes). The
patched fetch loop (`streams.compat`, patch 1) keeps everything Faust does per fetch but puts a
bulk topic's records for a partition on this queue as one item. Other topics (table changelogs
during recovery) take Faust's own path.

The worker empties the queue when a rebalance begins (`clear`, from the revocation handler), and
the partitions are then read again from their committed offsets. It is not one of Faust's
flow-controlled queues, which Faust also empties when it resumes the flow at the end of a recovery:
by then the recovery has sought the inputs to their committed offsets and resumed them, so the
fetches emptied there were made after the seek, their records were never read again, and the next
batch's offsets were committed past them (a fault run lost 3 events so). The agent never
acknowledges messages to Faust: the checkpoint (`streams.checkpoint`) commits each partition's
offsets itself once the batch's outputs and states are durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class BulkDelivery:
    """Lists of consumed messages of `topics`, a partition's fetch per item, for one agent."""

    def __init__(self, topics: Iterable[str], maxsize: int = 16):
        self.topics = frozenset(topics)
        self.queue: asyncio.Queue[list] = asyncio.Queue(maxsize=maxsize)
        self._next: dict[tuple[str, int], int] = {}  # partition → next offset to hand the agent

    async def put(self, messages: list) -> None:
        await self.queue.put(messages)

    def clear(self) -> None:
        """Drop every fetch waiting (a rebalance begins: the next owner reads them again from the
        committed offsets)."""
        self._next.clear()
        while not self.queue.empty():
            self.queue.get_nowait()  # get_nowait also wakes a fetch waiting to be queued

    async def take(self, max_size: int) -> list:
        """The messages waiting: at least one fetch, topped up to about `max_size` messages, without
        the ones handed over before (a recovery's seek makes the fetch loop read again what it had
        just queued; under exactly_once a dead letter would be written twice)."""
        queue = self.queue
        batch = self._new(await queue.get())
        while len(batch) < max_size and not queue.empty():
            batch += self._new(queue.get_nowait())
        return batch

    def _new(self, fetch: list) -> list:
        """The messages of one partition's fetch (in offset order) not handed over yet."""
        if not fetch:
            return []
        first = fetch[0]
        tp = (first.topic, first.partition)
        after = self._next.get(tp)
        self._next[tp] = max(fetch[-1].offset + 1, after or 0)
        if after is None or first.offset >= after:
            return fetch  # the fetch loop's own list, handed over: no copy
        return [m for m in fetch if m.offset >= after]

    def pending(self) -> int:
        """Fetches waiting to be taken (for the stall watchdog)."""
        return self.queue.qsize()
