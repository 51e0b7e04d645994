"""The Faust side of the worker, kept thin: one agent over every input topic, the cooling timer, the
score-lookup page. The work itself happens in `agents.pipeline` and the pure `scoring` core."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import weakref

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from faust.streams import _current_event
from faust.web import Request, Response, View

from agents.cooling import CoolingSchedule
from agents.pipeline import DEAD_LETTER_HEADROOM, EVENTS, ERASURES, PROFILES, QUALIFICATIONS, Outputs, Pipeline, RawMessage, now_ms, snapshot_record
from agents.writebehind import WriteBehind
from streams import metrics
from streams.app import app, codec, contacts, model, settings, topics

import agents.health  # noqa: E402,F401  (/health/live, /health/ready)

log = logging.getLogger("leadpulse.agents")
TICK = struct.Struct(">q")


def focus_event(msg: RawMessage) -> None:
    """Point Faust's current-event context at the contact's own message, so the table read and write
    land in that message's partition (store and changelog), not in the batch's last event's."""
    _current_event.set(weakref.ref(msg.event))


# The table's store (RocksDB by default): read and written directly, see persist_states.
store = contacts.data
changelog = contacts.changelog_topic.get_topic_name()
# State writes wait for the batch's outputs to be delivered (see agents.writebehind).
states = WriteBehind(store, focus=focus_event)


def focus(msg: RawMessage) -> None:
    states.focus(msg)
    focus_event(msg)


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


def raw(event) -> RawMessage:
    m = event.message
    return RawMessage(m.topic, m.partition, m.offset, m.key, m.value, event)


async def publish(out: Outputs) -> list:
    """Hand every output record to the producer; returns the delivery futures (not awaited here:
    waiting one round trip per batch would cap throughput at a batch per millisecond).

    Records go straight to Faust's producer, not through `Topic.send`, whose per-message future,
    serialiser and sensor machinery costs more than our whole scoring step; the bytes are already
    encoded. Under exactly_once each record joins the transaction of its contact's partition, which
    commits that partition's input offsets: outputs and offsets become visible together or not at all."""
    producer = await app.maybe_start_producer()
    send = producer.send
    tid = _tids if app.in_transaction else None
    pending = []
    for topic, records in (
        (settings.lifecycle_topic, out.lifecycle), (settings.scores_topic, out.scores),
        (settings.dlq_topic, out.dead_letters),
    ):
        for rec in records:
            if tid is None:
                pending.append(await send(topic, rec.key, rec.value, rec.partition, None, None))
            else:
                pending.append(await send(topic, rec.key, rec.value, rec.partition, None, None,
                                          transactional_id=tid[rec.partition]))
    for rec in out.rekeyed:
        kw = {} if tid is None else {"transactional_id": tid[rec.source]}
        pending.append(await send(rec.topic, rec.key, rec.value, None, None, None, **kw))
    for partition, contact_id, at in out.touched:
        schedule.schedule(partition, contact_id, at)
    for change in out.changes:
        log.info("lifecycle contact=%s %s %s -> %s", change.contact_id, change.kind, change.from_value, change.to_value,
                 extra={"contact_id": change.contact_id, "kind": change.kind,
                        "from_value": change.from_value, "to_value": change.to_value})
    return pending


class _TransactionalIds(dict):
    """Input partition → id of the transactional producer Faust keeps for it (exactly_once)."""

    def __missing__(self, partition: int) -> str:
        group = app.assignor.group_for_topic(settings.events_topic)
        tid = self[partition] = f"{app.conf.id}-{group}-{partition}"
        return tid


_tids = _TransactionalIds()


_in_flight = asyncio.Semaphore(64)  # batches published but not yet acknowledged by the broker


async def ack_when_delivered(events, deliveries: list, batch: int, previous: asyncio.Future | None) -> bool:
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
        ack(events)
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
    writes = states.take(batch)
    if not writes:
        return
    for key, value, msg in writes:  # all store writes before the first await: later batches read it
        focus_event(msg)
        if value is not None:
            store[key] = value
        elif key in store:
            del store[key]
    producer = await app.maybe_start_producer()
    tid = _tids if app.in_transaction else None
    sent = []
    for key, value, msg in writes:
        p = msg.partition
        if tid is None:
            sent.append(await producer.send(changelog, key, value, p, None, None))
        else:
            sent.append(await producer.send(changelog, key, value, p, None, None, transactional_id=tid[p]))
    persisted: dict = {}
    for md in await asyncio.gather(*sent):
        if md.offset > persisted.get(md.topic_partition, -1):
            persisted[md.topic_partition] = md.offset
    for tp, offset in persisted.items():
        if tid is None:
            store.set_persisted_offset(tp, offset)
        else:
            app.tables.persist_offset_on_commit(store, tp, offset)


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


async def batches(stream, max_size: int, within_s: float):
    """Events in batches of whatever is already waiting (at most `max_size`): a lone event is
    processed at once; when a backlog is forming, the batch waits up to `within_s` for it to grow.

    Events are taken straight off the agent's queue, not through Faust's stream iterator, which
    spends a loop turn and its sensors on every event and acknowledges, unprocessed, the events it
    skips as read before a rebalance: Faust then commits past them, and a SIGKILL loses them.
    Dropping them unacknowledged instead leaves gaps that nothing fills when no seek follows. So
    every event taken is processed: tracked as unacknowledged at once (a rebalance waits for it;
    Faust empties the queues when one starts, so nothing is taken for a partition already given
    away) and acknowledged, in order, after its batch's outputs and states are delivered (see
    ack_when_delivered). One read again after a rebalance counts once (event-id dedup)."""
    await stream.maybe_start()
    queue = stream.channel.queue
    take = queue.get_nowait
    app_ = stream.app
    unacked = app_.consumer.unacked
    acking = app_.topics.acking_topics
    on_message_in = app_.sensors.on_message_in

    def admit(event, batch: list) -> None:
        m = event.message
        if m.topic in acking and not m.tracked:
            m.tracked = True
            unacked.add(m)
            on_message_in(m.tp, m.offset, m)
        batch.append(event)

    while True:
        batch: list = []
        admit(await queue.get(), batch)  # tracked at once: a rebalance waits for it
        if not queue.empty() and queue.qsize() < max_size and within_s > 0:
            # A backlog is forming: let Faust's fetcher (one message per loop turn) fill the queue
            # for a moment instead of paying the batch's fixed costs for a handful of events.
            await asyncio.sleep(within_s)
        while len(batch) < max_size and not queue.empty():
            admit(take(), batch)
        if batch:
            yield batch


def ack(events) -> None:
    on_message_out = app.sensors.on_message_out
    for e in events:
        if e.ack():
            m = e.message
            on_message_out(m.tp, m.offset, m)


@app.agent(topics.inputs)
async def score(stream):
    """Every input of a contact (behaviour, profile, qualification, erasure, cooling tick) → new
    state, lifecycle changes and a score snapshot; a batch at a time."""
    global _last_ack
    async for events in batches(stream, settings.batch_max, settings.batch_within_s):
        try:
            started = time.perf_counter()
            batch = states.begin()
            messages, ticks = [], []
            for e in events:
                (ticks if e.message.topic == settings.ticks_topic else messages).append(raw(e))
            out = pipeline.process(messages)
            for tick in ticks:
                at = TICK.unpack(tick.value)[0]
                pipeline.cool(tick, schedule.pop_due(tick.partition, at), at, out)
            metrics.observe_batch(out, time.perf_counter() - started)
            deliveries = await publish(out)
        except Exception as exc:
            await crash("scoring a batch failed", exc)
            raise
        await _in_flight.acquire()
        _last_ack = asyncio.ensure_future(ack_when_delivered(events, deliveries, batch, _last_ack))


# -- cooling timer ------------------------------------------------------------------------------------

_ticker: AIOKafkaProducer | None = None
_scheduled_for: frozenset[int] = frozenset()


def owned_partitions() -> frozenset[int]:
    return frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == settings.events_topic)


def rebuild_schedule(owned: frozenset[int]) -> None:
    """After a rebalance: the cooling instants of the contacts this worker now owns. One pass over
    the owned part of the table per rebalance; ticks never scan."""
    schedule.drop_partitions(set())
    n = settings.partitions
    census = metrics.ContactCensus()
    for key, raw_state in contacts.items():
        partition = (murmur2(key) & 0x7FFFFFFF) % n
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
        raw_state = states.get(contact_id.encode())
        if raw_state is None:
            return self.json({"error": f"unknown contact {contact_id!r}"}, status=404)
        return self.json(snapshot_record(model.snapshot(model.decode_state(raw_state))))
