"""When a batch is done: the one place that orders outputs, states and input offsets.

A batch is done when, in this order,
1. its outputs (lifecycle changes, score snapshots, dead letters, inputs forwarded to their
   contact's partition) are on Kafka,
2. its contact states are on Kafka (the table's changelog) and then in the local store, a
   partition's states and the changelog offset they reach in one atomic write,
3. its input offsets are committed.
Why this order: the states remember which events they counted. A state durable before the outputs
its events caused would make a replay skip those events, and the outputs would be lost; an offset
committed before the states would lose the events themselves. Any crash in between replays the
batch's inputs against the states as they were, and the replay publishes the same outputs again
under the same deterministic ids.

Under exactly_once steps 1–3 are one Kafka transaction per input partition (outputs, changelog
records and that partition's input offsets commit together or not at all; each partition has a
transactional producer of its own, whose id fences the partition's previous owner), committed here
per batch — not on a timer between a batch's outputs and its offsets — and the local store follows
the commit, so it is never ahead of what Kafka holds.

Batches complete in the order they were read (a later batch's offsets never commit before an
earlier one's states). Any failure is fatal: the worker stops and its partitions' inputs are read
again from the last committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka.structs import TopicPartition
from faust.types import TP

from streams import failpoints
from streams.sender import OutRecord, last_offsets, send_batches

log = logging.getLogger("leadpulse.checkpoint")


@dataclass
class Batch:
    """What one agent batch must make durable together."""

    number: int  # the state buffer's batch (WriteBehind.begin)
    offsets: dict[TP, int]  # input partition → the next offset to read once this batch is done
    outputs: dict[int, list[OutRecord]] = field(default_factory=dict)  # input partition → records it caused

    def partitions(self, writes: Iterable[int] = ()) -> set[int]:
        return {tp.partition for tp in self.offsets} | set(self.outputs) | set(writes)


class StateBuffer(Protocol):
    """The held contact states (agents.writebehind.WriteBehind)."""

    def writes(self, batch: int) -> dict[int, list[tuple[bytes, bytes | None]]]: ...
    def release(self, batch: int) -> None: ...


class LocalStore(Protocol):
    """The table's local store (streams.tables.PartitionStore)."""

    def write(self, partition: int, items: list[tuple[bytes, bytes | None]], held: int | None) -> None: ...


class Kafka(Protocol):
    """The Kafka side: `AtLeastOnceKafka` or `TransactionalKafka` below, or a test's fake."""

    transactional: bool

    async def hand_off(self, records: list[OutRecord]) -> Awaitable[dict[tuple[str, int], int]]: ...
    async def commit_offsets(self, offsets: dict[TP, int]) -> None: ...
    async def commit_transactions(self, records: dict[int, list[OutRecord]],
                                  offsets: dict[TP, int]) -> dict[tuple[str, int], int]: ...


class Checkpoint:
    """Runs each batch's `commit` in the background, in read order, with a bounded number in flight."""

    def __init__(self, kafka: Kafka, store: LocalStore, states: StateBuffer, changelog: str, *,
                 max_in_flight: int = 32, on_fatal: Callable[[str, BaseException], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.kafka = kafka
        self.store = store
        self.states = states
        self.changelog = changelog
        self.on_fatal = on_fatal or (lambda what, exc: None)
        self.clock = clock
        self.committed: dict[TP, int] = {}  # input partition → next offset to read, as committed
        self.last_done_at = clock()
        self.failed: BaseException | None = None
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tail: _Turn | None = None  # the last batch submitted
        self._in_flight: set[asyncio.Future] = set()
        self._partitions_in_flight: dict[int, int] = {}

    # -- the steps ----------------------------------------------------------------------------------
    async def commit(self, batch: Batch, previous: "_Turn | None" = None, turn: "_Turn | None" = None,
                     outputs: Awaitable | None = None) -> None:
        """Make `batch` durable, in the order the module docstring gives. `previous` is the batch read
        before it: this one's states are handed to Kafka after that one's, and reach the store and
        commit after it (and fail if it failed); `outputs`, the delivery of this batch's outputs when
        `submit` already handed them over."""
        turn = turn or _Turn()
        writes = self.states.writes(batch.number)
        changelog = self.changelog
        await failpoints.hit("checkpoint.start")
        if self.kafka.transactional:
            records = {p: list(rs) for p, rs in batch.outputs.items()}
            for p, items in writes.items():
                records.setdefault(p, []).extend((changelog, p, k, v, None) for k, v in items)
            # 1 + 2 (changelog) + 3, on Kafka: one transaction per input partition, in read order.
            reached = await self.kafka.commit_transactions(records, batch.offsets)
            await failpoints.hit("checkpoint.after_commit")
        else:
            if outputs is None:
                outputs = await self.kafka.hand_off([r for rs in batch.outputs.values() for r in rs])
            await outputs  # 1. outputs
            await failpoints.hit("checkpoint.after_outputs")
            if previous is not None:
                await _succeeded(previous.states_sent)
            states = await self.kafka.hand_off(  # 2. states, on the changelog, in read order
                [(changelog, p, k, v, None) for p, items in writes.items() for k, v in items])
            turn.states_sent.set_result(None)
            reached = await states
        if previous is not None:
            await _succeeded(previous.done)  # an earlier batch still on its way: its states go to the store first
        for p, items in writes.items():  # 2. states, in the local store (a partition atomically)
            self.store.write(p, items, reached.get((changelog, p)))
        self.states.release(batch.number)
        if not self.kafka.transactional:
            await failpoints.hit("checkpoint.before_offsets")
            await self.kafka.commit_offsets(batch.offsets)  # 3. input offsets
        self.committed.update(batch.offsets)
        self.last_done_at = self.clock()
        turn.finish()

    # -- running batches ------------------------------------------------------------------------------
    async def submit(self, batch: Batch) -> None:
        """Hand the batch's outputs to the producer (at_least_once), then run the rest of `commit`
        in the background; returns once a slot is free and the outputs are handed over. Handing
        them over here, in read order, keeps a contact's snapshots and changes in the order its
        states were computed on every topic."""
        if self.failed is not None:
            raise self.failed
        await self._slots.acquire()
        try:
            outputs = None
            if not self.kafka.transactional:
                outputs = await self.kafka.hand_off([r for rs in batch.outputs.values() for r in rs])
        except BaseException:
            self._slots.release()
            raise
        previous, turn = self._tail, _Turn()
        self._tail = turn
        done = asyncio.ensure_future(self._run(batch, previous, turn, outputs))
        self._in_flight.add(done)
        parts = batch.partitions()
        for p in parts:
            self._partitions_in_flight[p] = self._partitions_in_flight.get(p, 0) + 1
        done.add_done_callback(lambda fut: self._finished(fut, parts))

    async def _run(self, batch: Batch, previous: "_Turn | None", turn: "_Turn", outputs: Awaitable | None) -> None:
        try:
            await self.commit(batch, previous, turn, outputs)
        except BaseException as exc:
            turn.fail(exc)
            if self.failed is None:
                self.failed = exc
                log.error("a batch could not be made durable: %s: %s; stopping the worker so that its inputs are "
                          "read again", type(exc).__name__, exc, exc_info=exc)
                self.on_fatal("a batch could not be made durable", exc)
            raise
        finally:
            self._slots.release()

    def _finished(self, fut: asyncio.Future, partitions: set[int]) -> None:
        self._in_flight.discard(fut)
        for p in partitions:
            left = self._partitions_in_flight.get(p, 1) - 1
            if left:
                self._partitions_in_flight[p] = left
            else:
                self._partitions_in_flight.pop(p, None)
        if not fut.cancelled():
            fut.exception()  # retrieved: reported through on_fatal

    def in_flight(self) -> int:
        return len(self._in_flight)

    def partitions_in_flight(self) -> set[int]:
        return set(self._partitions_in_flight)

    async def drain(self, timeout: float) -> bool:
        """Wait until every submitted batch is done (a rebalance, a stop); False on timeout."""
        pending = list(self._in_flight)
        if not pending:
            return True
        done, not_done = await asyncio.wait(pending, timeout=timeout)
        return not not_done


class _Turn:
    """A batch in flight, as the next one waits for it: its states handed to Kafka, then all done."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.states_sent = loop.create_future()
        self.done = loop.create_future()

    def finish(self) -> None:
        if not self.states_sent.done():
            self.states_sent.set_result(None)
        self.done.set_result(None)

    def fail(self, exc: BaseException) -> None:
        for fut in (self.states_sent, self.done):
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: the next batch sees it through _succeeded


async def _succeeded(previous: asyncio.Future) -> None:
    """Wait for the batch before; if it failed, this one must not go on either."""
    try:
        await asyncio.shield(previous)
    except BaseException as exc:
        raise RuntimeError("an earlier batch failed") from exc


# -- the Kafka side ---------------------------------------------------------------------------------

class AtLeastOnceKafka:
    """One idempotent producer (acks=all) for every output; offsets committed by the group.

    Commits are coalesced: while one is on its way, the offsets of the batches that finish meanwhile
    wait for the next, which carries the latest of each partition (batches arrive in read order, so
    the latest is the highest). At most one commit request is in flight; none waits longer than one
    round trip behind another."""

    transactional = False

    def __init__(self, producer: Any, commit: Callable[[dict[TP, int]], Awaitable[Any]]):
        self.producer = producer
        self._commit = commit
        self._pending: dict[TP, int] = {}
        self._next: asyncio.Future | None = None  # resolves when the pending offsets are committed
        self._running = False

    async def hand_off(self, records: list[OutRecord]) -> Awaitable[dict[tuple[str, int], int]]:
        """Hand `records` to the producer (in the order of the calls); returns their delivery, which
        resolves to the last offset written per topic-partition."""
        producer = self.producer
        sent = await send_batches(records, lambda partition: producer) if records else []
        return asyncio.ensure_future(last_offsets(sent))

    async def commit_offsets(self, offsets: dict[TP, int]) -> None:
        if not offsets:
            return
        self._pending.update(offsets)
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        mine = self._next
        if not self._running:
            self._running = True
            asyncio.ensure_future(self._commit_loop())
        await asyncio.shield(mine)

    async def _commit_loop(self) -> None:
        try:
            while self._pending:
                offsets, self._pending = self._pending, {}
                done, self._next = self._next, None
                try:
                    await self._commit(offsets)
                except BaseException as exc:  # every batch waiting fails with it (and stops the worker)
                    for waiting in (done, self._next):
                        if waiting is not None:
                            waiting.set_exception(exc)
                    self._next, self._pending = None, {}
                    return
                done.set_result(None)
        finally:
            self._running = False

    async def commit_transactions(self, records, offsets):  # pragma: no cover - not transactional
        raise NotImplementedError


class TransactionalKafka:
    """A transactional producer per owned input partition (id `<app>-p<N>`), a transaction per
    batch per partition; transactions of one partition commit in batch order."""

    transactional = True

    def __init__(self, make_producer: Callable[[str], Any], group_id: str, id_prefix: str):
        self._make = make_producer
        self.group_id = group_id
        self.id_prefix = id_prefix
        self._producers: dict[int, Any] = {}
        self._tails: dict[int, asyncio.Future] = {}

    def transactional_id(self, partition: int) -> str:
        return f"{self.id_prefix}-p{partition}"

    async def prepare(self, partitions: set[int]) -> None:
        """Own exactly `partitions`: start a producer for each new one — its start fences the
        previous owner's producer and settles that owner's open transaction, so the committed
        offsets read after this are final — and stop the others."""
        for p in sorted(set(self._producers) - partitions):
            producer = self._producers.pop(p)
            self._tails.pop(p, None)
            await _stop_quietly(producer)
        new = sorted(partitions - set(self._producers))
        started = await asyncio.gather(*(self._start(p) for p in new))
        self._producers.update(zip(new, started))

    async def _start(self, partition: int) -> Any:
        producer = self._make(self.transactional_id(partition))
        await producer.start()
        return producer

    async def commit_transactions(self, records: dict[int, list[OutRecord]],
                                  offsets: dict[TP, int]) -> dict[tuple[str, int], int]:
        by_partition: dict[int, dict[TP, int]] = {}
        for tp, offset in offsets.items():
            by_partition.setdefault(tp.partition, {})[tp] = offset
        parts = sorted(set(records) | set(by_partition))
        reached: dict[tuple[str, int], int] = {}
        for result in await asyncio.gather(*(self._commit_one(p, records.get(p, []), by_partition.get(p, {}))
                                             for p in parts)):
            reached.update(result)
        return reached

    async def _commit_one(self, partition: int, records: list[OutRecord], offsets: dict[TP, int]):
        loop = asyncio.get_running_loop()
        previous = self._tails.get(partition)
        mine = self._tails[partition] = loop.create_future()
        try:
            if previous is not None:
                await _succeeded(previous)
            producer = self._producers.get(partition)
            if producer is None:  # not prepared (a partition this worker was not told it owns)
                producer = self._producers[partition] = await self._start(partition)
            await producer.begin_transaction()
            try:
                reached = await last_offsets(await send_batches(records, lambda _: producer)) if records else {}
                if offsets:
                    await producer.send_offsets_to_transaction(
                        {TopicPartition(tp.topic, tp.partition): off for tp, off in offsets.items()}, self.group_id)
                await failpoints.hit("checkpoint.before_commit")
                await producer.commit_transaction()
            except BaseException:
                await _abort(producer)
                raise
        except BaseException as exc:
            mine.set_exception(exc)
            mine.exception()  # retrieved here; the next batch of the partition sees it through _succeeded
            raise
        mine.set_result(None)
        return reached

    async def stop(self) -> None:
        for producer in self._producers.values():
            await _stop_quietly(producer)
        self._producers.clear()


async def _stop_quietly(producer: Any, timeout: float = 10.0) -> None:
    """Stop a partition's producer that is no longer needed. However it fails (a broken connection,
    a fenced producer, an error aiokafka raises as a cancellation) nothing is lost: its partition's
    next owner fences it anyway."""
    try:
        await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(producer.stop())), timeout)
    except asyncio.CancelledError:
        if asyncio.current_task().cancelling():
            raise  # we are being cancelled ourselves
        log.warning("stopping a partition's producer was cancelled; its next owner fences it")
    except Exception as exc:  # noqa: BLE001
        log.warning("stopping a partition's producer failed (%s: %s); its next owner fences it", type(exc).__name__, exc)


async def _abort(producer: Any) -> None:
    try:
        await producer.abort_transaction()
    except Exception as exc:  # noqa: BLE001 - fenced or broken: the coordinator aborts it on its own
        log.warning("could not abort a transaction (%s: %s); it times out on the broker", type(exc).__name__, exc)
