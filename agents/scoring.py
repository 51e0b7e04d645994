"""The Faust side of the worker, kept thin: one agent over every input topic, the cooling timer, the
score-lookup page. The work itself happens in `agents.pipeline` and the pure `scoring` core."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from faust.types import TP
from faust.web import Request, Response, View

from agents.cooling import CoolingSchedule
from agents.pipeline import DEAD_LETTER_HEADROOM, EVENTS, ERASURES, PROFILES, QUALIFICATIONS, Outputs, Pipeline, now_ms, snapshot_record
from agents.writebehind import WriteBehind
from streams import metrics
from streams.app import app, codec, contacts, model, settings, topics
from streams.bulk import BulkDelivery
from streams.sender import send_batches
from streams.tables import PartitionStore

import agents.health  # noqa: E402,F401  (/health/live, /health/ready)

log = logging.getLogger("leadpulse.agents")
TICK = struct.Struct(">q")


# The table's store (RocksDB by default), a partition at a time: read and written directly, see persist_states.
store = PartitionStore(contacts.data)
changelog = contacts.changelog_topic.get_topic_name()
# State writes wait for the batch's outputs to be delivered (see agents.writebehind).
states = WriteBehind(store, focus=lambda msg: store.focus(msg.partition))
# The agent's input, a partition's fetch at a time (see streams.bulk).
delivery = BulkDelivery(app, topics.inputs.topics, fetch_wait_ms=settings.fetch_wait_ms)


def focus(msg) -> None:
    """The contact about to be read and written lives in its source message's partition."""
    states.focus(msg)
    store.focus(msg.partition)


pipeline = Pipeline(
    codec, model, metrics.track_contacts(states, model.decode_state), focus=focus,
    max_dead_letter_bytes=settings.max_message_bytes - DEAD_LETTER_HEADROOM,
    kinds={
        settings.events_topic: EVENTS,
        settings.profiles_topic: PROFILES,
        settings.qualifications_topic: QUALIFICATIONS,
        settings.erasures_topic: ERASURES,
    },
)
schedule = CoolingSchedule()
metrics.install(app, input_topics=topics.inputs.topics, rules_version=model.version,
                timers_pending=lambda: len(schedule))


class _TransactionalIds(dict):
    """Input partition → id of the transactional producer Faust keeps for it (exactly_once)."""

    def __missing__(self, partition: int) -> str:
        group = app.assignor.group_for_topic(settings.events_topic)
        tid = self[partition] = f"{app.conf.id}-{group}-{partition}"
        return tid


_tids = _TransactionalIds()


def _producer_for(partition: int):
    """The aiokafka producer for a contact partition's records: under exactly_once the one of that
    partition's transaction, which commits the partition's input offsets, so outputs and offsets
    become visible together or not at all."""
    producer = app.producer
    if app.in_transaction:
        return producer._transaction_producers[_tids[partition]]
    return producer._ensure_producer()


def _lock_for(partition: int):
    """Held while a batch joins a transaction: Faust commits and restarts it under the same lock."""
    if app.in_transaction:
        return app.producer._trn_locks[_tids[partition]]
    return contextlib.nullcontext()


async def send(records) -> list:
    """`(topic, partition, key, value)` records to the broker, one record batch per topic-partition
    (see streams.sender); returns `(delivery future, topic, partition, count)` per batch."""
    await app.maybe_start_producer()
    return await send_batches(records, _producer_for, _lock_for)


async def publish(out: Outputs) -> list:
    """Hand every output record to the producer; returns the delivery futures (not awaited here:
    waiting one round trip per batch would cap throughput at a batch per millisecond). The bytes
    are already encoded; each record goes to its contact's partition (all topics are
    co-partitioned). Re-keyed inputs go back to their topic through the partitioner, in their
    source partition's transaction."""
    records = [(settings.lifecycle_topic, r.partition, r.key, r.value) for r in out.lifecycle]
    records += [(settings.scores_topic, r.partition, r.key, r.value) for r in out.scores]
    records += [(settings.dlq_topic, r.partition, r.key, r.value) for r in out.dead_letters]
    pending = [sent[0] for sent in await send(records)] if records else []
    if out.rekeyed:
        producer = app.producer
        for rec in out.rekeyed:
            kw = {"transactional_id": _tids[rec.source]} if app.in_transaction else {}
            pending.append(await producer.send(rec.topic, rec.key, rec.value, None, None, None, **kw))
    for partition, contact_id, at in out.touched:
        schedule.schedule(partition, contact_id, at)
    # A log line per erasure (an audit trail of what was forgotten); per other change only with
    # `-l debug`: at info a busy worker would write thousands a second, and the topic is the record.
    debug = log.isEnabledFor(logging.DEBUG)
    for change in out.changes:
        if debug or change.kind == "erasure":
            log.log(logging.INFO if change.kind == "erasure" else logging.DEBUG, "lifecycle contact=%s %s %s -> %s",
                    change.contact_id, change.kind, change.from_value, change.to_value,
                    extra={"contact_id": change.contact_id, "kind": change.kind,
                           "from_value": change.from_value, "to_value": change.to_value})
    return pending


_in_flight = asyncio.Semaphore(64)  # batches published but not yet acknowledged by the broker


async def ack_when_delivered(messages: list, deliveries: list, batch: int, previous: asyncio.Future | None) -> bool:
    """Once all of a batch's outputs are on the broker: write its contact states to the table, then
    acknowledge its inputs (at-least-once). A failed delivery writes and acknowledges nothing and
    stops the worker: the inputs are read again, against the old states, on restart.

    Batches are acknowledged in the order they were read: Faust's commit takes the first run of
    consecutive acknowledged offsets and, when nothing was committed yet or only one offset is
    missing before that run, does not see the gap — acknowledging a later batch first would commit
    past an earlier one still in flight, and a crash then loses it."""
    try:
        if deliveries:
            await asyncio.gather(*deliveries)
        if previous is not None and not await _succeeded(previous):
            return False  # the batch before failed and is stopping the worker; this one is replayed too
        await persist_states(batch)
        BulkDelivery.ack(app.consumer, messages)
        return True
    except Exception as exc:
        await crash("publishing a batch failed", exc)
        return False
    finally:
        _in_flight.release()


async def persist_states(batch: int) -> None:
    """The batch's contact states into the table: the local store, then one changelog record each.

    Done here rather than through `Table.__setitem__`, which queues every changelog record in
    Faust's send buffer (one future, callback and loop wake-up per record, and under exactly_once
    no flush before the commit); the records go to the producer like the outputs, in the contact's
    partition and (exactly_once) its transaction, and are delivered before the inputs are
    acknowledged. The store then learns the changelog offsets it holds, as Faust's own path does,
    so a restart restores only what came after them."""
    writes = states.write(batch)  # all store writes before the first await: later batches read them
    if not writes:
        return
    sent = await send([(changelog, msg.partition, key, value) for key, value, msg in writes])
    persisted: dict = {}
    for future, topic, partition, count in sent:
        last = (await future).offset + count - 1
        if last > persisted.get(partition, -1):
            persisted[partition] = last
    data = contacts.data
    for partition, offset in persisted.items():
        tp = TP(changelog, partition)
        if app.in_transaction:
            app.tables.persist_offset_on_commit(data, tp, offset)
        else:
            data.set_persisted_offset(tp, offset)


async def _succeeded(task: asyncio.Future) -> bool:
    try:
        return bool(await task)
    except BaseException:
        return False


_last_ack: asyncio.Future | None = None


async def crash(what: str, exc: BaseException) -> None:
    """Stop the worker rather than go on past a batch half done (Faust would restart the agent and
    skip it): on restart the batch's inputs are replayed from the last committed offsets."""
    log.error("%s: %s: %s; stopping the worker so that the batch is processed again", what, type(exc).__name__, exc,
              exc_info=exc)
    states.discard()
    await app.crash(exc)


@app.agent(topics.inputs)
async def score(stream):
    """Every input of a contact (behaviour, profile, qualification, erasure, cooling tick) → new
    state, lifecycle changes and a score snapshot; a batch at a time.

    The batch is whatever Faust's fetcher has delivered meanwhile (streams.bulk), at most
    LEADPULSE_BATCH_MAX events: one event when the load is light, thousands when a backlog forms.
    Every message taken is processed and acknowledged in read order after its batch's outputs and
    states are delivered (see ack_when_delivered); one read again after a rebalance counts once
    (event-id dedup)."""
    global _last_ack
    ticks_topic = settings.ticks_topic
    while True:
        messages = await delivery.take(settings.batch_max)
        try:
            started = time.perf_counter()
            batch = states.begin()
            inputs = [m for m in messages if m.topic != ticks_topic]
            out = pipeline.process(inputs)
            if len(inputs) < len(messages):
                for tick in messages:
                    if tick.topic == ticks_topic:
                        at = TICK.unpack(tick.value)[0]
                        pipeline.cool(tick, schedule.pop_due(tick.partition, at), at, out)
            metrics.observe_batch(out, time.perf_counter() - started)
            deliveries = await publish(out)
        except Exception as exc:
            await crash("scoring a batch failed", exc)
            raise
        await _in_flight.acquire()
        _last_ack = asyncio.ensure_future(ack_when_delivered(messages, deliveries, batch, _last_ack))



# -- cooling timer ------------------------------------------------------------------------------------

_ticker: AIOKafkaProducer | None = None
_scheduled_for: frozenset[int] = frozenset()


def partition_of(key: bytes) -> int:
    """The partition of a contact's key, as the producers' default partitioner (murmur2) puts it."""
    return (murmur2(key) & 0x7FFFFFFF) % settings.partitions


def owned_partitions() -> frozenset[int]:
    return frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == settings.events_topic)


def rebuild_schedule(owned: frozenset[int]) -> None:
    """After a rebalance: the cooling instants of the contacts this worker now owns. One pass over
    the owned part of the table per rebalance; ticks never scan."""
    schedule.drop_partitions(set())
    census = metrics.ContactCensus()
    for key, raw_state in contacts.items():
        partition = partition_of(key)
        if partition in owned:
            state = model.decode_state(raw_state)
            census.add(state)
            schedule.schedule(partition, key.decode(), model.next_cooling_at(state))
    census.publish()


@app.timer(settings.cooling_interval_s)
async def cooling_ticks() -> None:
    """For each owned partition with a contact due to cool, put a tick into that partition's input.
    The agent does the cooling, so it is ordered with the partition's events and committed with them
    (exactly-once included). Ticks go through a plain producer: they must not wait for a transaction."""
    global _ticker, _scheduled_for
    if app.rebalancing or not app.tables.recovery.completed.is_set():
        return
    owned = owned_partitions()
    if owned != _scheduled_for:
        rebuild_schedule(owned)
        _scheduled_for = owned
    now = now_ms()
    due = [p for p in owned if (at := schedule.next_due(p)) is not None and at <= now]
    if not due:
        return
    if _ticker is None:
        _ticker = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=0,
                                   **settings.kafka_client_kwargs())
        await _ticker.start()
    await asyncio.gather(*[
        await _ticker.send(settings.ticks_topic, value=TICK.pack(now), partition=p) for p in due
    ])


@app.on_before_shutdown.connect
async def stop_ticker(app, **kwargs) -> None:
    global _ticker
    if _ticker is not None:
        await _ticker.stop()
        _ticker = None


# -- score lookup -------------------------------------------------------------------------------------

@app.page("/contacts/{contact_id}")
class ContactView(View):
    """GET /contacts/{id}: score, temperature, stage, fit, grade and explanation, answered by the
    worker that owns the contact's partition (requests to another worker are routed there)."""

    @app.table_route(table=contacts, match_info="contact_id")
    async def get(self, request: Request, contact_id: str) -> Response:
        # Through the write-behind buffer: a state whose lifecycle changes are already published
        # may not have reached the store yet, and a lookup must not show the contact behind them.
        key = contact_id.encode()
        store.focus(partition_of(key))
        raw_state = states.get(key)
        if raw_state is None:
            return self.json({"error": f"unknown contact {contact_id!r}"}, status=404)
        return self.json(snapshot_record(model.snapshot(model.decode_state(raw_state))))
