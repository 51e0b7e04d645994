"""When each contact will cool next, per partition, so a timer finds due contacts without a table scan.

A heap per partition of (instant, contact). Rescheduling a contact pushes a new entry; the stale one
is recognised and dropped when it surfaces (the latest instant per contact is kept aside).
"""

from __future__ import annotations

import heapq


class CoolingSchedule:
    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self._due_at: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._due_at)

    def schedule(self, partition: int, contact_id: str, at: int | None) -> None:
        """Set (or, with None, clear) the instant `contact_id` cools next."""
        if at is None:
            self._due_at.pop(contact_id, None)
            return
        if self._due_at.get(contact_id) == at:
            return
        self._due_at[contact_id] = at
        heapq.heappush(self._heaps.setdefault(partition, []), (at, contact_id))

    def next_due(self, partition: int) -> int | None:
        heap = self._heaps.get(partition)
        while heap:
            at, contact_id = heap[0]
            if self._due_at.get(contact_id) == at:
                return at
            heapq.heappop(heap)  # stale
        return None

    def pop_due(self, partition: int, now: int) -> list[str]:
        """The contacts of `partition` due at or before `now`, removed from the schedule."""
        heap = self._heaps.get(partition)
        due: list[str] = []
        while heap and heap[0][0] <= now:
            at, contact_id = heapq.heappop(heap)
            if self._due_at.get(contact_id) == at:
                del self._due_at[contact_id]
                due.append(contact_id)
        return due

    def drop_partitions(self, keep: set[int]) -> None:
        """Forget partitions this worker no longer owns."""
        for p in [p for p in self._heaps if p not in keep]:
            for _, contact_id in self._heaps.pop(p):
                self._due_at.pop(contact_id, None)

    def partitions(self) -> list[int]:
        return list(self._heaps)
