"""When each contact will cool next, per partition, so a timer finds due contacts without a table scan.

A heap per partition of (instant, contact). Rescheduling a contact pushes a new entry; the stale one
is recognised and dropped when it surfaces (the latest instant per contact is kept aside).
"""

from __future__ import annotations

import asyncio
import heapq

from scoring.accounts import ACCOUNT_KEY_PREFIX
from scoring.identity import alias_target


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


# -- the worker's side: rebuilding the schedule, and the timer that sends ticks ---------------------

def rebuild(schedule: CoolingSchedule, partitions: set[int], items_of, next_cooling_at, decode_state,
            owner=None, census=None, account_check_at=None) -> int:
    """After a rebalance, once the partitions' stores are up to date and no batch is in flight: the
    cooling instants of every contact of `partitions` (and a census of them), the others forgotten.
    Read from each partition's own store, never by hashing keys: a contact is wherever its state is.
    `owner`, when given, filters a store shared by every partition (memory://). Accounts (keys
    starting with NUL) are scheduled by `account_check_at(account, raw)` when given. Returns the
    number of contacts."""
    schedule.drop_partitions(set())
    n = 0
    for p in sorted(partitions):
        for key, raw in items_of(p):
            contact_id = key.decode()
            if contact_id[:1] == "\0":
                account = contact_id[len(ACCOUNT_KEY_PREFIX):]
                if account_check_at is not None and (owner is None or owner(account) == p):
                    schedule.schedule(p, contact_id, account_check_at(account, raw))
                continue
            if (owner is not None and owner(contact_id) != p) or alias_target(raw) is not None:
                continue
            state = decode_state(raw)
            if census is not None:
                census.add(state)
            schedule.schedule(p, contact_id, next_cooling_at(state))
            n += 1
    return n


def due_partitions(schedule: CoolingSchedule, owned: set[int], now: int) -> list[int]:
    """The owned partitions with a contact due to cool at `now`."""
    return [p for p in sorted(owned) if (at := schedule.next_due(p)) is not None and at <= now]


def register(rt) -> None:
    """The cooling timer: for each owned partition with a contact due, a tick into that partition
    of the ticks topic. The agent does the cooling, so it is ordered with the partition's inputs and
    committed with them (exactly-once included). Ticks go through a plain producer of their own:
    they must not wait for a transaction."""
    from aiokafka import AIOKafkaProducer

    from agents.pipeline import TICK, now_ms

    app, s, schedule = rt.app, rt.settings, rt.schedule
    ticker: list = []

    @app.timer(s.cooling_interval_s)
    async def cooling_ticks() -> None:
        if not rt.recovered or app.rebalancing:
            return
        now = now_ms()
        due = due_partitions(schedule, rt.owned, now)
        if not due:
            return
        if not ticker:
            producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers, linger_ms=0, acks="all",
                                        client_id=f"{s.app_id}-ticker", **s.kafka_client_kwargs())
            await producer.start()
            ticker.append(producer)
        sent = [await ticker[0].send(s.ticks_topic, value=TICK.pack(now), partition=p) for p in due]
        await asyncio.gather(*sent)

    @app.on_before_shutdown.connect
    async def stop_ticker(app, **kwargs) -> None:
        while ticker:
            await ticker.pop().stop()
