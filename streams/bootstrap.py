"""The one wiring place: `bootstrap(settings)` builds a worker's app, its parts and their links.

Nothing is built at import time: a test, the CLI or the backtest can import any module without an
app, a store or a producer coming into being. `python -m agents worker` calls `bootstrap`, then
hands the app to Faust's command line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from faust.types import TP

from agents.cooling import CoolingSchedule, rebuild
from agents.pipeline import (
    ERASURES, EVENTS, FORWARDED, IDENTITIES, MEMBERSHIPS, MERGES, PROFILES, SHARES, QUALIFICATIONS, TICKS, DEAD_LETTER_HEADROOM, Pipeline,
)
from agents.writebehind import WriteBehind
from scoring.model import ScoringModel
from scoring.rules import default_rules, load_rules
from streams import compat, failpoints, metrics
from streams.app import Topics, contacts_table, create_app
from streams.bulk import BulkDelivery
from streams.checkpoint import AtLeastOnceKafka, Checkpoint, TransactionalKafka
from streams.codec import AvroCodec, codec_from_settings
from streams.restore import consumer_kwargs, restore_partitions
from streams.routing import ContactRouter
from streams.sender import BATCH_BYTES
from streams.settings import Settings
from streams.tables import PartitionStore
from streams.watchdog import Signals, Watchdog

log = logging.getLogger("leadpulse.runtime")


@dataclass(eq=False)
class Runtime:
    """A worker's parts. Built by `bootstrap`; the agents, pages and timers read from it."""

    settings: Settings
    app: Any
    topics: Topics
    contacts: Any  # the Faust table (its changelog, its store)
    model: ScoringModel
    codec: AvroCodec
    router: ContactRouter
    store: PartitionStore
    states: WriteBehind
    pipeline: Pipeline
    delivery: BulkDelivery
    kafka: Any  # AtLeastOnceKafka | TransactionalKafka
    checkpoint: Checkpoint
    schedule: CoolingSchedule
    watchdog: Watchdog
    changelog: str
    owned: set[int] = field(default_factory=set)  # contact partitions this worker owns now
    recovered: bool = False  # the owned partitions' stores are up to date
    busy_since: float | None = None  # the agent is working on a batch it took
    heartbeat_at: float = field(default_factory=time.monotonic)

    # -- failure ----------------------------------------------------------------------------------
    def fatal(self, what: str, exc: BaseException) -> None:
        """Stop for good rather than go on past a batch half done: on restart (or on the new owner
        of the partitions) its inputs are read again from the committed offsets."""
        log.error("%s: %s: %s; the worker exits so that its inputs are read again", what, type(exc).__name__, exc,
                  exc_info=exc)
        if self.checkpoint.failed is None:
            self.checkpoint.failed = exc  # no later batch may commit past this one
        self.states.discard()
        self.watchdog.fatal(f"{what}: {type(exc).__name__}: {exc}")

    # -- rebalances -------------------------------------------------------------------------------
    async def drain(self, timeout: float) -> bool:
        """Until the agent holds no batch and every batch handed over is durable; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.busy_since is not None or self.checkpoint.in_flight():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if not await self.checkpoint.drain(min(left, 0.05)) or self.busy_since is not None:
                await asyncio.sleep(0.01)
        return True

    async def on_revoked(self, app: Any, revoked: Any = None, **kwargs: Any) -> None:
        """Before the partitions go (Faust has suspended the fetch loop): finish
        every batch taken, so its offsets commit under this generation and the next owner starts
        right after them. Fetches not yet taken are dropped first: they are read again after the
        rebalance, from the committed offsets."""
        self.recovered = False
        self.delivery.clear()
        if self.checkpoint.in_flight():
            log.info("rebalance: finishing %d batches in flight", self.checkpoint.in_flight())
        if not await self.drain(self.settings.stall_timeout_s or 60.0):
            self.fatal("a rebalance began with batches that did not complete",
                       TimeoutError(f"{self.checkpoint.in_flight()} batches still in flight"))
        self.store.forget()

    async def before_recovery(self, tps: set[TP]) -> dict[TP, int | None]:
        """Before Faust's recovery of the newly assigned partitions (streams.compat patch 4): own
        them (exactly_once: fence their previous owner), bring their stores to the end of the
        changelog, and rebuild the cooling schedule and the contact census from them."""
        try:
            partitions = {tp.partition for tp in tps if tp.topic == self.changelog}
            self.store.forget()
            if isinstance(self.kafka, TransactionalKafka):
                await self.kafka.prepare(partitions)
            s = self.settings
            held = await restore_partitions(self.store, sorted(partitions), self.changelog, consumer_kwargs(s),
                                            read_committed=s.processing_guarantee == "exactly_once")
            census = metrics.ContactCensus()
            rebuild(self.schedule, partitions, self.store.items_of, self.model.next_cooling_at,
                    self.model.decode_state, owner=None if self.store.partitioned else self.router.owner,
                    census=census, account_check_at=lambda account, raw: self.pipeline.accounts.next_check_at(
                        self.pipeline.accounts.decode(raw, account)))
            census.publish()
            self.owned = partitions
            self.recovered = True
            return {TP(self.changelog, p): offset for p, offset in held.items()}
        except asyncio.CancelledError as exc:
            if asyncio.current_task().cancelling():
                raise  # another rebalance began: Faust's recovery starts over and calls this again
            # A client library raised a cancellation we did not ask for: were it let through, it would
            # end Faust's recovery task for good and leave the worker stuck, healthy-looking.
            self.fatal("preparing the assigned partitions failed", RuntimeError(f"a Kafka client call was cancelled: {exc!r}"))
            raise
        except Exception as exc:
            self.fatal("preparing the assigned partitions failed", exc)
            raise

    # -- health -----------------------------------------------------------------------------------
    def watchdog_signals(self) -> Signals:
        def work_waiting() -> bool:
            return self.delivery.pending() > 0 or self.checkpoint.in_flight() > 0 or self.busy_since is not None

        def last_progress() -> float:
            busy = self.busy_since
            return max(self.checkpoint.last_done_at, busy if busy is not None and not self.checkpoint.in_flight() else 0.0)

        def recovering() -> bool:
            app = self.app
            return bool(app.rebalancing or not self.recovered or not app.tables.recovery.completed.is_set())

        def recovery_progress() -> int:
            offsets = self.app.tables.recovery.active_offsets  # Faust's own recovery, should it read
            return restore_partitions.records + sum(o for o in offsets.values() if o is not None)

        return Signals(work_waiting=work_waiting, last_progress=last_progress, recovering=recovering,
                       recovery_progress=recovery_progress, heartbeat=lambda: self.heartbeat_at)


def output_producer(s: Settings, transactional_id: str | None = None) -> AIOKafkaProducer:
    """The producers of a batch's outputs and states: idempotent, acks from every in-sync replica,
    record batches large enough for a busy partition's whole output."""
    return AIOKafkaProducer(
        bootstrap_servers=s.bootstrap_servers, client_id=f"{s.app_id}-outputs", acks="all",
        enable_idempotence=True, transactional_id=transactional_id, max_batch_size=BATCH_BYTES,
        max_request_size=s.max_message_bytes, linger_ms=0, **s.kafka_client_kwargs(),
    )


class _StartedProducer:
    """An aiokafka producer started on first use (it must be made inside the running loop)."""

    def __init__(self, make):
        self._make = make
        self._producer: AIOKafkaProducer | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._producer is None:
                    producer = self._make()
                    await producer.start()
                    self._producer = producer
        return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class _AtLeastOnce(AtLeastOnceKafka):
    def __init__(self, started: _StartedProducer, commit):
        super().__init__(None, commit)
        self.started = started

    async def hand_off(self, records):
        if records and self.producer is None:
            self.producer = await self.started.get()
        return await super().hand_off(records)


def bootstrap(settings: Settings | None = None) -> Runtime:
    """Build everything a worker runs, wired together, on a new Faust app."""
    s = settings or Settings.from_env()
    compat.apply()
    failpoints.configure(s.failpoints)
    app = create_app(s)
    topics = Topics.declare(app, s)
    contacts = contacts_table(app, s)
    changelog = contacts.changelog_topic.get_topic_name()
    model = ScoringModel(load_rules(s.rules_path) if s.rules_path else default_rules())
    codec = codec_from_settings(s)
    router = ContactRouter(s.partitions)
    store = PartitionStore(contacts.data)
    states = WriteBehind(store)

    def focus(partition: int) -> None:
        states.focus(partition)
        store.focus(partition)

    kinds = {s.events_topic: EVENTS, s.profiles_topic: PROFILES, s.qualifications_topic: QUALIFICATIONS,
             s.erasures_topic: ERASURES, s.identity_topic: IDENTITIES, s.merges_topic: MERGES,
             s.accounts_input_topic: MEMBERSHIPS, s.account_shares_topic: SHARES,
             s.repartition_topic: FORWARDED, s.ticks_topic: TICKS}
    pipeline = Pipeline(codec, model, metrics.track_contacts(states, model.decode_state), kinds, router=router,
                        repartition_topic=s.repartition_topic, focus=focus,
                        max_dead_letter_bytes=s.max_message_bytes - DEAD_LETTER_HEADROOM)
    delivery = BulkDelivery(topics.input_names)
    if s.processing_guarantee == "exactly_once":
        kafka: Any = TransactionalKafka(lambda tid: output_producer(s, tid), group_id=s.app_id, id_prefix=s.app_id)
    else:
        kafka = _AtLeastOnce(_StartedProducer(lambda: output_producer(s)),
                             commit=lambda offsets: compat.commit_offsets(app, offsets))
    schedule = CoolingSchedule()
    rt = Runtime(settings=s, app=app, topics=topics, contacts=contacts, model=model, codec=codec, router=router,
                 store=store, states=states, pipeline=pipeline, delivery=delivery, kafka=kafka,
                 checkpoint=None, schedule=schedule, watchdog=None, changelog=changelog)  # type: ignore[arg-type]
    rt.checkpoint = Checkpoint(kafka, store, states, changelog, on_fatal=rt.fatal)
    rt.watchdog = Watchdog(rt.watchdog_signals(), stall_after=s.stall_timeout_s)
    compat.install(app, compat.Hooks(bulk_topics=topics.input_names, put=delivery.put, fetch_wait_ms=s.fetch_wait_ms,
                                     read_committed=s.processing_guarantee == "exactly_once",
                                     before_recovery=rt.before_recovery))
    app.on_partitions_revoked.connect(rt.on_revoked)
    metrics.install(app, input_topics=topics.input_names, rules_version=model.version,
                    timers_pending=lambda: len(schedule),
                    committed=lambda tp: rt.checkpoint.committed.get(tp),
                    in_flight=rt.checkpoint.partitions_in_flight)

    from agents import cooling, health, lookup, scoring

    scoring.register(rt)
    cooling.register(rt)
    health.register(rt)
    lookup.register(rt)
    _register_lifecycle(rt)
    return rt


def _register_lifecycle(rt: Runtime) -> None:
    app = rt.app

    @app.task
    async def start_watchdog() -> None:
        """The event loop's heartbeat and the watchdog thread, once the worker runs."""
        rt.watchdog.start()
        while True:
            rt.heartbeat_at = time.monotonic()
            await asyncio.sleep(1.0)

    @app.on_before_shutdown.connect
    async def stop_outputs(app, **kwargs) -> None:
        """A clean stop: finish the batches in flight, then close the producers."""
        rt.watchdog.stop()
        if not await rt.drain(10.0):
            log.warning("stopping with batches in flight: their inputs are read again on restart")
        if isinstance(rt.kafka, TransactionalKafka):
            await rt.kafka.stop()
        else:
            await rt.kafka.started.stop()
