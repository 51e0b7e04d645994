"""Recent messageIds per source, so a client's retry of a request that was stored is answered
"duplicate" without publishing it again. Bounded (least recently used first out), in memory:
it covers retries within one collector process. What covers the rest (a restart, another
replica, an evicted id) is the deterministic record id derived from the messageId, which the
scoring core's event-id dedup and every consumer drop (README, Collector, Guarantees).

A messageId is `pending` while its request waits for the broker: a concurrent retry waits for
that outcome instead of publishing a second copy.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

STORED = True


class RecentMessages:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._by_source: dict[str, OrderedDict[str, object]] = {}

    def _ids(self, source: str) -> OrderedDict[str, object]:
        ids = self._by_source.get(source)
        if ids is None:
            ids = self._by_source[source] = OrderedDict()
        return ids

    def claim(self, source: str, message_id: str) -> "bool | asyncio.Future":
        """True: the caller must publish this message (now pending under the caller); False: it
        is stored already; a future: another request is storing it, and the future says whether
        it was stored (if not, claim again). Never waits, so requests never wait on each other
        while holding claims of their own."""
        ids = self._ids(source)
        state = ids.get(message_id)
        if state is None:
            if self.capacity > 0:
                ids[message_id] = asyncio.get_running_loop().create_future()
                while len(ids) > self.capacity:
                    ids.popitem(last=False)
            return True
        ids.move_to_end(message_id)
        return False if state is STORED else state  # type: ignore[return-value]

    def settle(self, source: str, message_ids, stored: bool) -> None:
        """The broker's verdict on the messages this caller claimed."""
        ids = self._ids(source)
        for mid in message_ids:
            state = ids.get(mid)
            if stored:
                if mid in ids:
                    ids[mid] = STORED
            elif state is not None and state is not STORED:
                del ids[mid]
            if isinstance(state, asyncio.Future) and not state.done():
                state.set_result(stored)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_source.values())
