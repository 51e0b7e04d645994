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
from agents.pipeline import EVENTS, ERASURES, PROFILES, QUALIFICATIONS, Outputs, Pipeline, RawMessage, now_ms, snapshot_record
from streams import metrics
from streams.app import app, codec, contacts, model, settings, topics

import agents.health  # noqa: E402,F401  (/health/live, /health/ready)

log = logging.getLogger("leadpulse.agents")
TICK = struct.Struct(">q")


def focus(msg: RawMessage) -> None:
    """Point Faust's current-event context at the contact's own message, so the table read and write
    land in that message's partition (store and changelog), not in the batch's last event's."""
    _current_event.set(weakref.ref(msg.event))


pipeline = Pipeline(
    codec, model, metrics.track_contacts(contacts, model.decode_state), focus=focus,
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

    Records go straight to Faust's producer (the transaction manager under exactly_once), not through
    `Topic.send`, whose per-message future, serialiser and sensor machinery costs more than our
    whole scoring step; the bytes are already encoded."""
    producer = await app.maybe_start_producer()
    send = producer.send
    pending = []
    for topic, records in (
        (settings.lifecycle_topic, out.lifecycle), (settings.scores_topic, out.scores),
        (settings.dlq_topic, out.dead_letters),
    ):
        for rec in records:
            pending.append(await send(topic, rec.key, rec.value, rec.partition, None, None))
    for rec in out.rekeyed:
        pending.append(await send(rec.topic, rec.key, rec.value, None, None, None))
    for partition, contact_id, at in out.touched:
        schedule.schedule(partition, contact_id, at)
    for change in out.changes:
        log.info("lifecycle contact=%s %s %s -> %s", change.contact_id, change.kind, change.from_value, change.to_value,
                 extra={"contact_id": change.contact_id, "kind": change.kind,
                        "from_value": change.from_value, "to_value": change.to_value})
    return pending


_in_flight = asyncio.Semaphore(64)  # batches published but not yet acknowledged by the broker


async def ack_when_delivered(source, events, deliveries: list) -> None:
    """Acknowledge a batch's inputs only once all of its outputs are on the broker (at-least-once).
    A failed delivery leaves them unacknowledged and stops the worker: they are read again on restart."""
    try:
        if deliveries:
            await asyncio.gather(*deliveries)
        for e in events:
            await source.ack(e)
    except Exception as exc:  # pragma: no cover - needs a broker failing mid-batch
        log.exception("publishing a batch failed; stopping so that it is processed again")
        await app.crash(exc)
    finally:
        _in_flight.release()


async def batches(stream, max_size: int):
    """Events in batches of whatever is already waiting (at most `max_size`), never waiting for more:
    a lone event is processed at once, a backlog in big batches. Acks are ours to give, after the
    batch's outputs are published (Faust's take() acks at yield and stalled here after rebalances)."""
    stream = stream.noack()
    queue = stream.channel.queue
    batch: list = []
    async for event in stream.events():
        batch.append(event)
        if len(batch) >= max_size or queue.empty():
            yield stream, batch
            batch = []


@app.agent(topics.inputs)
async def score(stream):
    """Every input of a contact (behaviour, profile, qualification, erasure, cooling tick) → new
    state, lifecycle changes and a score snapshot; a batch at a time."""
    async for source, events in batches(stream, settings.batch_max):
        started = time.perf_counter()
        messages, ticks = [], []
        for e in events:
            (ticks if e.message.topic == settings.ticks_topic else messages).append(raw(e))
        out = pipeline.process(messages)
        for tick in ticks:
            at = TICK.unpack(tick.value)[0]
            pipeline.cool(tick, schedule.pop_due(tick.partition, at), at, out)
        metrics.observe_batch(out, time.perf_counter() - started)
        deliveries = await publish(out)
        await _in_flight.acquire()
        asyncio.ensure_future(ack_when_delivered(source, events, deliveries))


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
        _ticker = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=0)
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
