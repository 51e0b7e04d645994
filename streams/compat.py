"""Every place leadpulse reaches into faust-streaming's or aiokafka's internals, in one module.

Why one module: each of these depends on private code of exact library versions. They are written
for the versions in `REQUIRED` (pinned in `constraints.txt`, which `make venv` installs with), and
`check_versions()` refuses to start a worker on anything else, rather than let a patch silently
miss its target after an upgrade. To upgrade: install the new versions, run the whole suite and
`make chaos`, then change `REQUIRED` and the pins together. Each patch says what goes wrong without
it; each is small enough to be offered upstream.

The patches (applied once by `apply`):
1. Bulk delivery (`Consumer._drain_messages`): a partition's fetch of the agent's topics goes to
   the agent as one list, not one message per event-loop turn (see `streams.bulk`).
2. Fetch wait and isolation (`AIOKafkaConsumerThread._create_worker_consumer`): the broker may hold
   a fetch for `LEADPULSE_FETCH_WAIT_MS` to fill a batch (Faust asks for any record at all); under
   exactly_once the worker reads committed records only (Faust itself runs at_least_once: the
   checkpoint owns the transactions, see `streams.checkpoint`).
3. Changelog high watermarks from the broker (`AIOKafkaConsumerThread._highwaters`), never from
   the consumer's fetch state, which is unknown right after a rebalance (robinhood/faust#658).
4. Restore before recovery (`Recovery._build_offsets`): before Faust's table recovery reads a
   newly assigned partition a record at a time, the worker's own hook brings the partition's store
   up to the end of the changelog in bulk (transaction markers included) and prepares the partition
   (exactly_once: fences the previous owner's producer), so Faust then has nothing left to read and
   seeks the inputs only once the previous owner's transactions are settled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from importlib import metadata
from typing import Any

from aiokafka.structs import OffsetAndMetadata, TopicPartition
from faust.tables import recovery as faust_recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ConsumerMessage

log = logging.getLogger("leadpulse.compat")

#: The exact versions every patch below was written and tested for.
REQUIRED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}
FETCH_MIN_BYTES = 1024 * 1024  # a backlog fills this at once; a trickle waits out the fetch wait


class CompatError(RuntimeError):
    """The installed faust-streaming / aiokafka are not the versions leadpulse's patches target."""


def installed_versions() -> dict[str, str | None]:
    found = {}
    for name in REQUIRED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def check_versions(found: Mapping[str, str | None] | None = None) -> None:
    """Raise CompatError naming every package whose installed version is not the required one."""
    found = installed_versions() if found is None else found
    wrong = [f"{name} {found.get(name) or 'not installed'} (needs {want})"
             for name, want in REQUIRED.items() if found.get(name) != want]
    if wrong:
        raise CompatError("leadpulse patches Faust and aiokafka internals written for exact versions; installed: "
                          + ", ".join(wrong) + ". Reinstall with `make venv` (constraints.txt), or see "
                          "streams/compat.py on upgrading")


# -- the hooks the worker gives the patches ---------------------------------------------------------

class Hooks:
    """What the patched code calls back into; one per app (`app.__dict__['_leadpulse_hooks']`)."""

    def __init__(self, *, bulk_topics: Iterable[str] = (), put: Callable[[list], Awaitable] | None = None,
                 fetch_wait_ms: int = 0, read_committed: bool = False,
                 before_recovery: Callable[[set[TP]], Awaitable[dict[TP, int]]] | None = None):
        self.bulk_topics = frozenset(bulk_topics)
        self.put = put
        self.fetch_wait_ms = fetch_wait_ms
        self.read_committed = read_committed
        # Newly assigned active changelog partitions → the offset each store now holds (or None).
        self.before_recovery = before_recovery


def hooks_of(app: Any) -> Hooks | None:
    return app.__dict__.get("_leadpulse_hooks")


def install(app: Any, hooks: Hooks) -> None:
    """Give `app` its hooks and make sure the patches are applied."""
    apply()
    app.__dict__["_leadpulse_hooks"] = hooks


# -- 1. bulk delivery -----------------------------------------------------------------------------

_drain_messages = faust_consumer.Consumer._drain_messages


async def _drain_in_bulk(self, fetcher) -> None:
    """Faust's `_drain_messages` (faust-streaming 0.15.3), with a partition's fetch of a bulk topic
    delivered as one list. Per fetch the same steps as Faust's loop (flow control, the rebalance
    generation check, read offsets, end offsets); per message only the read-offset check and the
    message object. A bulk topic's records are never dropped for a partition that went inactive
    during the fetch: the checkpoint commits each partition's processed offsets as they come, so a
    record skipped in the middle would be committed past."""
    hooks = hooks_of(self.app)
    if hooks is None or hooks.put is None:
        return await _drain_messages(self, fetcher)
    app = self.app
    callback = self.callback
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    read_offsets = self._read_offset
    acks_enabled_for = app.topics.acks_enabled_for
    bulk_topics = hooks.bulk_topics
    put = hooks.put
    track_end = app.monitor.track_tp_end_offset
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            records, active = await self._wait_next_records(1.0)
            await self.sleep(0)
            if records is None or self.should_stop:
                continue
            if not self.flow_active:
                try:
                    await self.perform_seek()  # as Faust does: read again from the committed offsets
                except Exception as exc:
                    self.log.warning(f"exception performing seek when flow not active {exc}")
                continue
            generation = app.consumer_generation_id
            for tp, recs in records.items():
                if not self.flow_active or app.consumer_generation_id != generation:
                    break  # a rebalance: the partitions are read again from their committed offsets
                track_end(tp, self.highwater(tp))
                if tp.topic in bulk_topics:
                    r_offset = read_offsets.get(tp)
                    messages = []
                    for rec in recs:
                        offset = rec.offset
                        if r_offset is not None and offset < r_offset:
                            continue  # read before (Faust drops these too)
                        ts = rec.timestamp
                        messages.append(ConsumerMessage(
                            rec.topic, rec.partition, offset, None if ts is None else ts / 1000.0,
                            rec.timestamp_type, rec.headers, rec.key, rec.value, rec.checksum,
                            rec.serialized_key_size, rec.serialized_value_size, tp, generation_id=generation,
                        ))
                        r_offset = offset
                    if messages:
                        await self.wait_first(put(messages), self.suspend_flow.wait())
                        if not self.flow_active:
                            break  # suspended meanwhile: the queue is emptied, the partition read again
                        read_offsets[tp] = r_offset + 1
                    continue
                if active is not None and tp not in active and tp not in self._buffered_partitions:
                    continue
                commit_every = self._commit_every
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                for rec in recs:  # Faust's own path, a message at a time (table changelogs in recovery)
                    message = self._to_message(tp, rec)
                    offset = message.offset
                    r_offset = read_offsets.get(tp)
                    if r_offset is None or offset >= r_offset:
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                        read_offsets[tp] = offset
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise


# -- 2. fetch wait and isolation --------------------------------------------------------------------

_create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def _create_consumer_with_fetch_wait(self, transport):
    """Faust's worker consumer, with the fetch wait (Faust sets no minimum size) and, when the
    checkpoint runs transactions, read_committed (Faust only sets it for its own transactions)."""
    consumer = _create_worker_consumer(self, transport)
    hooks = hooks_of(self.app)
    if hooks is not None:
        if hooks.fetch_wait_ms > 0:
            consumer._fetch_min_bytes = FETCH_MIN_BYTES
            consumer._fetch_max_wait_ms = hooks.fetch_wait_ms
        if hooks.read_committed:
            consumer._isolation_level = "read_committed"
    return consumer


# -- 3. changelog high watermarks -----------------------------------------------------------------

async def _highwaters_from_the_broker(self, partitions) -> Mapping:
    """Changelog high watermarks for recovery, asked of the broker (ListOffsets with the consumer's
    isolation level: the last stable offset under read_committed). Faust under exactly_once reads
    `last_stable_offset` from the fetch state, -1 for a partition not fetched since it was assigned —
    every partition taken over in a rebalance — and recovery then restores nothing."""
    return await self._ensure_consumer().end_offsets(list(partitions))


# -- 4. restore before recovery -------------------------------------------------------------------

_build_offsets = faust_recovery.Recovery._build_offsets


async def _build_offsets_after_restore(self, consumer, tps, destination, title: str) -> None:
    """Faust's `_build_offsets`; for the active partitions, after the worker's own bulk restore."""
    hooks = hooks_of(self.app)
    if title == "active" and hooks is not None and hooks.before_recovery is not None:  # none assigned too
        held = await hooks.before_recovery(set(tps))
        for tp, offset in held.items():
            if offset is not None:
                destination[tp] = offset
    await _build_offsets(self, consumer, tps, destination, title)


_applied = False


def apply() -> None:
    """Install every patch (idempotent)."""
    global _applied
    if _applied:
        return
    faust_consumer.Consumer._drain_messages = _drain_in_bulk
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_consumer_with_fetch_wait
    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters_from_the_broker
    faust_recovery.Recovery._build_offsets = _build_offsets_after_restore
    _applied = True


# -- internals read or called from outside Faust's own flow -----------------------------------------

async def commit_offsets(app: Any, offsets: Mapping[TP, int]) -> set[TP]:
    """Commit `offsets` (the next offset to read, per input partition) for the worker's group, on
    Faust's consumer thread; only partitions still assigned to this worker are committed (a batch of
    a partition revoked meanwhile is read again by its new owner). Returns the partitions committed.
    A commit refused because the group rebalanced meanwhile commits nothing and is no error: the
    batch is durable, and whoever owns the partitions now reads it again from the group's last
    commit (its events count once). Other errors propagate."""
    from aiokafka.errors import CommitFailedError

    thread = app.consumer._thread

    async def commit() -> set[TP]:
        aiokafka_consumer = thread._ensure_consumer()
        assigned = aiokafka_consumer.assignment()
        wanted = {TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(offset, "")
                  for tp, offset in offsets.items()}
        wanted = {tp: om for tp, om in wanted.items() if tp in assigned}
        if wanted:
            try:
                await aiokafka_consumer.commit(wanted)
            except CommitFailedError as exc:
                log.warning("offsets not committed, the group rebalanced meanwhile (%s): the partitions' next "
                            "owner reads them again", str(exc).split("\n")[0])
                return set()
        return {TP(tp.topic, tp.partition) for tp in wanted}

    return await thread.call_thread(commit)


async def committed_offsets(app: Any, tps: Iterable[TP]) -> dict[TP, int | None]:
    """The group's committed offsets of `tps`, asked of the broker on Faust's consumer thread."""
    thread = app.consumer._thread
    wanted = [TopicPartition(tp.topic, tp.partition) for tp in tps]

    async def ask() -> dict[TP, int | None]:
        aiokafka_consumer = thread._ensure_consumer()
        return {TP(tp.topic, tp.partition): await aiokafka_consumer.committed(tp) for tp in wanted}

    return await thread.call_thread(ask)


def changelog_db(store: Any, partition: int) -> Any:
    """The RocksDB database of one partition of a Faust table's store if Faust has it open (it
    opens an assigned partition's at the assignment and drops a revoked one's), else None. Never
    opened here: a second handle on a database this process still holds fails on RocksDB's lock."""
    return store._dbs.get(partition)


def has_partition_dbs(store: Any) -> bool:
    return hasattr(store, "_db_for_partition")


def memory_data(store: Any) -> dict:
    """The one dict of Faust's memory store (every partition's keys)."""
    return store.data
