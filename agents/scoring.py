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


# State writes wait for the batch's outputs to be delivered (see agents.writebehind).
states = WriteBehind(contacts, focus=focus_event)


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


async def ack_when_delivered(events, deliveries: list, batch: int) -> None:
    """Once all of a batch's outputs are on the broker: write its contact states to the table, then
    acknowledge its inputs (at-least-once). A failed delivery writes and acknowledges nothing and
    stops the worker: the inputs are read again, against the old states, on restart."""
    try:
        if deliveries:
            await asyncio.gather(*deliveries)
        states.flush(batch)
        # The state writes' changelog records wait in Faust's send buffer; under exactly_once the
        # commit does not flush it, so hand them to the producer before the offsets can be committed.
        await app.producer.buffer.flush()
        ack(events)
    except Exception as exc:
        await crash("publishing a batch failed", exc)
    finally:
        _in_flight.release()


async def crash(what: str, exc: BaseException) -> None:
    """Stop the worker rather than go on past a batch half done (Faust would restart the agent and
    skip it): on restart the batch's inputs are replayed from the last committed offsets."""
    log.error("%s: %s: %s; stopping the worker so that the batch is processed again", what, type(exc).__name__, exc,
              exc_info=exc)
    states.discard()
    await app.crash(exc)


async def batches(stream, max_size: int):
    """Events in batches of whatever is already waiting (at most `max_size`), never waiting for more:
    a lone event is processed at once, a backlog in big batches. Acks are ours to give, after the
    batch's outputs are published (Faust's take() acks at yield and stalled here after rebalances).

    Only a batch's first event comes through Faust's stream iterator, which spends a loop turn and
    its sensors on every event; the rest are taken straight off the agent's queue, with the same
    bookkeeping the iterator does: events of an older consumer generation, or arriving while flow
    is stopped for a rebalance, are dropped (acknowledged unprocessed, as Faust does: they are read
    again by the partition's owner), the others are tracked as unacknowledged."""
    stream = stream.noack()
    queue = stream.channel.queue
    take = queue.get_nowait
    app_ = stream.app
    unacked = app_.consumer.unacked
    acking = app_.topics.acking_topics
    on_message_in = app_.sensors.on_message_in
    async for first in stream.events():
        batch = [first]
        if not queue.empty():
            generation = app_.consumer_generation_id
            current = app_.flow_control.is_active()
            while len(batch) < max_size and not queue.empty():
                event = take()
                m = event.message
                if not current or m.generation_id != generation:
                    event.ack()
                    continue
                if m.topic in acking and not m.tracked:
                    m.tracked = True
                    unacked.add(m)
                    on_message_in(m.tp, m.offset, m)
                batch.append(event)
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
    async for events in batches(stream, settings.batch_max):
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
        asyncio.ensure_future(ack_when_delivered(events, deliveries, batch))


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
        raw_state = contacts.get(contact_id.encode())
        if raw_state is None:
            return self.json({"error": f"unknown contact {contact_id!r}"}, status=404)
        return self.json(snapshot_record(model.snapshot(model.decode_state(raw_state))))
