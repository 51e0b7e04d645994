"""Bulk delivery: the agent receives each fetch of a partition as one list, not a message at a time.

Why: Faust hands a consumed message to its agent through an async generator, the conductor, a
channel queue and `wait_first` (two tasks and an `asyncio.wait`), one message per event-loop turn:
about 70 µs a message before any work, a ceiling near 13k events/s (see ../shared/notes). The
patched fetch loop (`streams.compat`, patch 1) keeps everything Faust does per fetch but puts a
bulk topic's records for a partition on this queue as one item. Other topics (table changelogs
during recovery) take Faust's own path.

The queue is one of Faust's flow-controlled queues: a rebalance suspends and empties it, as it does
the agents' channels, and the partitions are then read again from their committed offsets. The
agent never acknowledges messages to Faust: the checkpoint (`streams.checkpoint`) commits each
partition's offsets itself once the batch's outputs and states are durable.
"""

from __future__ import annotations

from collections.abc import Iterable


class BulkDelivery:
    """Lists of consumed messages of `topics`, a partition's fetch per item, for one agent."""

    def __init__(self, app, topics: Iterable[str], maxsize: int = 16):
        self.topics = frozenset(topics)
        self.queue = app.FlowControlQueue(maxsize=maxsize, clear_on_resume=True)

    async def put(self, messages: list) -> None:
        await self.queue.put(messages)

    async def take(self, max_size: int) -> list:
        """The messages waiting: at least one fetch, topped up to about `max_size` messages."""
        queue = self.queue
        batch = list(await queue.get())
        while len(batch) < max_size and not queue.empty():
            batch += queue.get_nowait()
        return batch

    def pending(self) -> int:
        """Fetches waiting to be taken (for the stall watchdog)."""
        return self.queue.qsize()
