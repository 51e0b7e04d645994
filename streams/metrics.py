"""Prometheus metrics of a leadpulse worker, served at ``/metrics`` by the Faust web server.

One dedicated ``CollectorRegistry`` (``REGISTRY``) holds two families of metrics:

* the domain metrics below, all prefixed ``leadpulse_`` (see docs/operating.md for the list);
* Faust's own sensor metrics (``faust.sensors.prometheus``: messages in/out, rebalances, commit and
  send latencies, ...), prefixed ``leadpulse_faust_`` whatever the app id, so dashboards and alerts
  work for every deployment.

Faust's ``setup_prometheus_sensors`` would register its own ``/metrics`` page serving
``CONTENT_TYPE_LATEST`` (text format 1.0.0 in prometheus-client 0.26); ``install`` instead installs the
same sensor (``FaustMetrics`` + ``PrometheusMonitor``) and serves one page itself, in the 0.0.4 text
format every Prometheus 2.x and 3.x parses. There is exactly one ``/metrics`` route.

Cost on the hot path: ``observe_batch`` is called once per batch and does per-batch aggregation;
per-event work is one ``bisect`` for the freshness histogram. Label sets are bounded: event types,
error classes, lifecycle values and partitions, never contact ids (``_Bounded`` folds anything past a
cap into ``other``).

API (called from streams/bootstrap.py and agents/scoring.py):

    install(app, input_topics=..., rules_version=..., timers_pending=lambda: len(schedule))
    track_contacts(table, decode_state)  -> the table to hand to Pipeline (counts contacts)
    observe_batch(out, duration_s)       once per batch, right after the table writes (before any await)
    census = ContactCensus(); census.add(state) ...; census.publish()   at rebalance (cooling.rebuild)
    set_timers_pending(n | callable), set_rules_version(v), set_ready_check(callable)
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Info, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from scoring import BUILD as SCORING_BUILD
from scoring.identity import alias_target
from scoring.lifecycle import COLD, LEAD, STAGES, TEMPERATURES

log = logging.getLogger("leadpulse.metrics")

# No `<name>_created` series next to every counter and histogram: they double the series count and
# no dashboard or alert here uses them. (Process-wide switch of prometheus-client.)
prometheus_client.disable_created_metrics()

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # "text/plain; version=0.0.4; charset=utf-8"
FAUST_PREFIX = "leadpulse_faust"

#: Event time → scored, seconds: 10 ms for a healthy live stream up to a day for late, back-filled
#: or replayed events (they exist: the model accepts events up to its late tolerance).
FRESHNESS_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
)
#: One batch: decode, validate, score, table writes (publishing is pipelined: see Faust's send latency).
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: Inputs that are not behaviour events are counted under their kind (Pipeline's `consumed` keys).
INPUT_KINDS = ("profiles", "qualifications", "erasures", "identities", "merges", "merge-states", "memberships",
               "account-shares")
#: Outputs of a batch, by what they are (not by topic name: names differ per deployment).
OUTPUTS = ("lifecycle", "scores", "dlq", "forwarded", "accounts", "account-shares")

LABEL_CAP = 100  # distinct values per label before new ones are folded into "other"


class _Bounded:
    """Keeps a label's value set bounded: past `cap` distinct values, new ones become "other"."""

    __slots__ = ("cap", "seen")

    def __init__(self, cap: int = LABEL_CAP, initial: Iterable[str] = ()):
        self.cap = cap
        self.seen: set[str] = set(initial)

    def __call__(self, value: Any) -> str:
        value = "none" if value is None else str(value)
        if value in self.seen:
            return value
        if len(self.seen) >= self.cap:
            return "other"
        self.seen.add(value)
        return value


class _FastHistogram:
    """A histogram collector for many observations per call (the freshness of every event of a
    batch): one bisect per value, no lock. Only ever touched from the event loop's thread (the
    agent observes, the /metrics page collects), like everything else in a Faust worker."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float]):
        self.name = name
        self.documentation = documentation
        self.bounds = list(buckets)  # upper bounds, ascending; +Inf implicit
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe_many(self, values: Iterable[float]) -> None:
        bounds, counts, locate = self.bounds, self.counts, bisect.bisect_left
        total = 0.0
        for v in values:
            counts[locate(bounds, v)] += 1  # bisect_left: v == bound counts in that bucket (le)
            total += v
        self.sum += total

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def describe(self) -> list:
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation)
        cumulative, buckets = 0, []
        for bound, n in zip(self.bounds + [math.inf], self.counts):
            cumulative += n
            buckets.append(("+Inf" if bound == math.inf else _le(bound), cumulative))
        family.add_metric([], buckets, self.sum)
        yield family


def _le(bound: float) -> str:
    return repr(float(bound))


class _ContactGauges:
    """Contacts of this worker's active table partitions: total, by temperature, by stage. Plain
    integers updated per batch, exposed at collect time."""

    def __init__(self) -> None:
        self.total = 0
        self.temperature: dict[str, int] = dict.fromkeys(TEMPERATURES, 0)
        self.stage: dict[str, int] = dict.fromkeys(STAGES, 0)
        self.temperature_label = _Bounded(16, TEMPERATURES)
        self.stage_label = _Bounded(16, STAGES)

    def add(self, temperature: str | None, stage: str | None, n: int = 1) -> None:
        """Count (n=1) or uncount (n=-1) one contact at (temperature, stage)."""
        self.total += n
        self.move("temperature", None, temperature, n)
        self.move("stage", None, stage, n)

    def move(self, kind: str, frm: str | None, to: str | None, n: int = 1) -> None:
        if kind == "temperature":
            counts, label = self.temperature, self.temperature_label
        elif kind == "stage":
            counts, label = self.stage, self.stage_label
        else:
            return
        if frm is not None:
            k = label(frm)
            counts[k] = counts.get(k, 0) - n
        if to is not None:
            k = label(to)
            counts[k] = counts.get(k, 0) + n

    def replace(self, total: int, temperature: dict[str, int], stage: dict[str, int]) -> None:
        self.total = total
        self.temperature = {**dict.fromkeys(TEMPERATURES, 0), **temperature}
        self.stage = {**dict.fromkeys(STAGES, 0), **stage}

    def describe(self) -> list:
        return list(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def _families(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "leadpulse_contacts", "Contacts in this worker's active partitions of the contacts table",
            value=self.total,
        )
        by_t = GaugeMetricFamily(
            "leadpulse_contacts_by_temperature",
            "Contacts in this worker's active partitions, by temperature", labels=["temperature"],
        )
        for k, v in sorted(self.temperature.items()):
            by_t.add_metric([k], v)
        yield by_t
        by_s = GaugeMetricFamily(
            "leadpulse_contacts_by_stage", "Contacts in this worker's active partitions, by lifecycle stage",
            labels=["stage"],
        )
        for k, v in sorted(self.stage.items()):
            by_s.add_metric([k], v)
        yield by_s


class ContactTracker(MutableMapping):
    """The contacts table as the pipeline sees it, remembering per batch which contacts existed
    before (first read) and whether they exist after (last write or delete), so that
    `observe_batch` can count created and erased contacts exactly.

    Why: the scoring core emits no LifecycleChange when a contact is created (a new contact is
    silently cold/lead), and an erasure change does not say what was erased. Cost: one dict
    operation per table read and per write; the raw bytes are only decoded for erased contacts."""

    def __init__(self, table: MutableMapping[bytes, bytes], decode_state: Callable[[bytes], Any]):
        self.table = table
        self.decode_state = decode_state
        self.before: dict[bytes, bytes | None] = {}
        self.after: dict[bytes, bool] = {}

    # -- what the pipeline uses ---------------------------------------------------------------
    def get(self, key, default=None):
        raw = self.table.get(key)
        if key[:1] == b"\0":  # an account's state, not a contact
            return default if raw is None else raw
        if key not in self.before:
            self.before[key] = None if raw is not None and alias_target(raw) is not None else raw
        return default if raw is None else raw

    def __setitem__(self, key, value) -> None:
        self.table[key] = value
        if key[:1] != b"\0":
            self.after[key] = alias_target(value) is None  # an alias marker: the contact was merged away

    def pop(self, key, *default):
        try:
            return self.table.pop(key, *default)
        finally:
            if key[:1] != b"\0":
                self.after[key] = False

    def __delitem__(self, key) -> None:
        del self.table[key]
        self.after[key] = False

    # -- the rest of a mapping, untracked -------------------------------------------------------
    def __getitem__(self, key):
        return self.table[key]

    def __contains__(self, key) -> bool:
        return key in self.table

    def __iter__(self):
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)

    def __getattr__(self, name: str):
        return getattr(self.table, name)

    def drain(self) -> tuple[dict[bytes, bytes | None], dict[bytes, bool]]:
        before, after = self.before, self.after
        self.before, self.after = {}, {}
        return before, after


class ContactCensus:
    """Counts decoded contact states (one pass over the owned table partitions, e.g. in
    agents.cooling.rebuild after a rebalance) and then replaces the contact gauges with the result."""

    def __init__(self, metrics: "WorkerMetrics | None" = None):
        self.metrics = metrics
        self.total = 0
        self.temperature: dict[str, int] = {}
        self.stage: dict[str, int] = {}

    def add(self, state: Any) -> None:
        self.total += 1
        t, s = state.temperature, state.stage
        self.temperature[t] = self.temperature.get(t, 0) + 1
        self.stage[s] = self.stage.get(s, 0) + 1

    def publish(self) -> None:
        metrics = self.metrics or METRICS
        metrics.contacts.replace(self.total, self.temperature, self.stage)
        tracker = metrics.tracker
        if tracker is not None and (tracker.before or tracker.after):
            # A batch has written the table but not been observed yet (its agent is awaiting
            # something): this count already includes it, so its observe_batch must not add it again.
            tracker.drain()
            metrics.census_absorbed_batch = True


class WorkerMetrics:
    """Every domain metric of a worker, in one registry. The module keeps one (`METRICS`, in
    `REGISTRY`); tests make their own."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        r = registry
        self.consumed = Counter(
            "leadpulse_events_consumed", "Valid inputs consumed, by behaviour event type (or input kind: "
            "profiles, qualifications, erasures)", ["event_type"], registry=r,
        )
        self.rejected = Counter(
            "leadpulse_events_rejected", "Inputs rejected to the dead-letter topic, by reason (error class)",
            ["reason"], registry=r,
        )
        self.transitions = Counter(
            "leadpulse_lifecycle_transitions", "Lifecycle changes published, by kind (temperature, stage, "
            "erasure) and from/to value", ["kind", "from", "to"], registry=r,
        )
        self.published = Counter(
            "leadpulse_records_published", "Records published, by output (lifecycle, scores, dlq, forwarded)",
            ["output"], registry=r,
        )
        self.freshness = _FastHistogram(
            "leadpulse_event_freshness_seconds",
            "Behaviour event time to scored (wall clock), per event", FRESHNESS_BUCKETS,
        )
        r.register(self.freshness)
        self.batch_duration = _FastHistogram(
            "leadpulse_batch_duration_seconds",
            "Processing time of one batch: decode, validate, score and table writes, up to the hand-off "
            "of its outputs to the producer", BATCH_BUCKETS,
        )
        r.register(self.batch_duration)
        self.contacts = _ContactGauges()
        r.register(self.contacts)
        self.lag = Gauge(
            "leadpulse_consumer_lag_messages", "Input messages not yet processed and committed "
            "(high watermark minus committed offset), per assigned partition", ["topic", "partition"],
            registry=r,
        )
        self.timers_pending = Gauge(
            "leadpulse_cooling_timers_pending", "Contacts with a pending cooling instant on this worker",
            registry=r,
        )
        self.ready = Gauge(
            "leadpulse_ready", "1 when the worker is ready (recovery done, partitions assigned, not "
            "rebalancing), else 0", registry=r,
        )
        self.rules = Info("leadpulse_rules", "Scoring rules in use", registry=r)
        self.scoring_build = Info("leadpulse_scoring_build", "Build of the scoring core's hot modules: compiled "
                                  "(Cython, by make venv) or pure (the Python source, LEADPULSE_PURE_PYTHON=1)", registry=r)
        self.scoring_build.info({"build": SCORING_BUILD})
        self.event_type_label = _Bounded(LABEL_CAP)
        self.reason_label = _Bounded(LABEL_CAP)
        self.value_label = _Bounded(LABEL_CAP)
        self.tracker: ContactTracker | None = None
        self.census_absorbed_batch = False
        self._lag_series: set[tuple[str, str]] = set()
        self.ready.set(0)
        try:
            from scoring.events import EVENT_TYPES
        except ImportError:  # pragma: no cover
            EVENT_TYPES = ()
        # Series exist (at 0) before the first event: rate() and the stall alert need them.
        for name in (*EVENT_TYPES, *INPUT_KINDS):
            self.consumed.labels(self.event_type_label(name))
        for name in OUTPUTS:
            self.published.labels(name)

    # -- per batch ----------------------------------------------------------------------------
    def observe_batch(self, out: Any, duration_s: float | None = None) -> None:
        """Everything a batch's `Outputs` says: inputs consumed and rejected, records published,
        lifecycle transitions, freshness of each behaviour event, contacts by temperature/stage.

        Best called right after the batch's table writes, before any `await`. If the rebalance
        recount (`ContactCensus`, run from a timer) slips in between the writes and this call, it has
        counted the batch already, and this call leaves the contact gauges alone."""
        for name, n in out.consumed.items():
            self.consumed.labels(self.event_type_label(name)).inc(n)
        for name, n in out.rejected.items():
            self.rejected.labels(self.reason_label(name)).inc(n)
        for name, records in (
            ("lifecycle", out.lifecycle), ("scores", out.scores), ("dlq", out.dead_letters),
            ("forwarded", out.forwarded), ("accounts", out.accounts), ("account-shares", out.shares),
        ):
            if records:
                self.published.labels(name).inc(len(records))
        if out.lags_ms:
            self.freshness.observe_many([(ms if ms > 0 else 0) / 1000.0 for ms in out.lags_ms])
        if duration_s is not None:
            self.batch_duration.observe(max(duration_s, 0.0))
        changes = out.changes
        if changes:
            counted: dict[tuple[str, str, str], int] = {}
            label = self.value_label
            for c in changes:
                k = (label(c.kind), label(c.from_value), label(c.to_value))
                counted[k] = counted.get(k, 0) + 1
            for (kind, frm, to), n in counted.items():
                self.transitions.labels(kind, frm, to).inc(n)
        self._count_contacts(changes)

    def _count_contacts(self, changes: list) -> None:
        gauges = self.contacts
        if self.census_absorbed_batch:  # counted by a recount that ran after its table writes
            self.census_absorbed_batch = False
            if self.tracker is not None:
                self.tracker.drain()
            return
        if self.tracker is None:  # no tracker: changes only (creations and erasures are missed)
            for c in changes:
                gauges.move(c.kind, c.from_value, c.to_value)
            return
        before, after = self.tracker.drain()
        by_contact: dict[str, list] = {}
        for c in changes:
            by_contact.setdefault(c.contact_id, []).append(c)
        for key, exists_after in after.items():
            contact_id = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
            own = by_contact.pop(contact_id, ())
            raw = before.get(key)
            existed = raw is not None
            if existed and exists_after and not any(c.kind == "erasure" for c in own):
                for c in own:  # the usual case: an existing contact moved along its changes
                    gauges.move(c.kind, c.from_value, c.to_value)
                continue
            self._replay(raw, own, exists_after)
        for own in by_contact.values():  # changes of contacts the tracker did not see (none expected)
            for c in own:
                gauges.move(c.kind, c.from_value, c.to_value)

    def _replay(self, raw: bytes | None, changes: Iterable, exists_after: bool) -> None:
        """A contact created or erased in this batch: walk its changes from its state before."""
        gauges = self.contacts
        current: list | None = None  # [temperature, stage] while the contact exists
        if raw is not None:
            try:
                state = self.tracker.decode_state(raw)  # type: ignore[union-attr]
                current = [state.temperature, state.stage]
            except Exception:  # noqa: BLE001 - a metric must never fail a batch
                log.exception("metrics: cannot decode the state of an erased contact")
                current = [None, None]
        for c in changes:
            if c.kind == "erasure":
                if current is not None:
                    gauges.add(current[0], current[1], -1)
                    current = None
                continue
            if current is None:  # created by this batch: a new contact starts cold, lead
                current = [COLD, LEAD]
                gauges.add(COLD, LEAD, +1)
            gauges.move(c.kind, c.from_value, c.to_value)
            if c.kind == "temperature":
                current[0] = c.to_value
            elif c.kind == "stage":
                current[1] = c.to_value
        if exists_after and current is None:
            gauges.add(COLD, LEAD, +1)
        elif not exists_after and current is not None:  # merged into another contact
            gauges.add(current[0], current[1], -1)

    def observe_batch_duration(self, duration_s: float) -> None:
        """For a caller that measures the duration later than `observe_batch` (e.g. up to the acks)."""
        self.batch_duration.observe(max(duration_s, 0.0))

    # -- set from outside -----------------------------------------------------------------------
    def set_timers_pending(self, n: int | Callable[[], float]) -> None:
        if callable(n):
            self.timers_pending.set_function(lambda: float(n()))
        else:
            self.timers_pending.set(n)

    def set_rules_version(self, version: str) -> None:
        self.rules.info({"version": str(version)})

    def set_ready_check(self, check: Callable[[], bool]) -> None:
        """`leadpulse_ready` is evaluated at scrape time, so it is right even while the worker's
        timers are not running yet (they start after the first table recovery)."""

        def value() -> float:
            try:
                return 1.0 if check() else 0.0
            except Exception:  # noqa: BLE001
                return 0.0

        self.ready.set_function(value)

    def track_contacts(self, table: MutableMapping, decode_state: Callable[[bytes], Any]) -> ContactTracker:
        self.tracker = ContactTracker(table, decode_state)
        return self.tracker

    # -- consumer lag ---------------------------------------------------------------------------
    async def update_lag(self, app: Any, topics: Iterable[str],
                         committed: Callable[[Any], int | None] = lambda tp: None,
                         in_flight: Callable[[], set[int]] = set) -> None:
        """Lag per assigned input partition = high watermark (last stable offset under
        exactly-once) minus the committed offset (`committed(tp)`: what this worker committed, else
        what the group had when the partition was assigned). A partition whose consumer has fetched
        up to the high watermark and has nothing in flight (`in_flight()`: contact partitions with
        batches not yet durable) is at 0: what is left is a transaction commit marker (an upstream
        producer writing with transactions, or the worker's own forwarded inputs under exactly_once),
        which takes an offset but is not a message — counted, it would read as a stuck lag of 1."""
        consumer = app.consumer
        wanted = set(topics)
        seen: set[tuple[str, str]] = set()
        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic in wanted]
        except Exception:  # noqa: BLE001 - consumer not started / being rebuilt
            assigned = []
        busy = in_flight()
        group_committed = getattr(consumer, "_committed_offset", {})
        for tp in assigned:
            try:
                hw = consumer.highwater(tp)
            except Exception:  # noqa: BLE001
                continue
            if hw is None:
                continue
            position = await _position(consumer, tp)
            done = committed(tp)
            if done is None:
                done = group_committed.get(tp)
            if done is None:
                done = position
            if done is None:
                continue
            lag = max(0, hw - done)
            if lag and position is not None and position >= hw and tp.partition not in busy:
                lag = 0
            labels = (tp.topic, str(tp.partition))
            self.lag.labels(*labels).set(lag)
            seen.add(labels)
        for labels in self._lag_series - seen:  # revoked partitions: no stale lag on this worker
            try:
                self.lag.remove(*labels)
            except KeyError:
                pass
        self._lag_series = seen

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def _position(consumer: Any, tp: Any) -> int | None:
    try:
        return await asyncio.wait_for(consumer.position(tp), timeout=2.0)
    except Exception:  # noqa: BLE001 - not assigned any more, consumer restarting, timeout
        return None


# -- the worker's registry and the module-level API ----------------------------------------------

REGISTRY = CollectorRegistry()
METRICS = WorkerMetrics(REGISTRY)
_installed: Any = None


def install(
    app: Any,
    *,
    input_topics: Iterable[str],
    rules_version: str | None = None,
    timers_pending: int | Callable[[], float] | None = None,
    lag_interval_s: float | None = None,
    committed: Callable[[Any], int | None] = lambda tp: None,
    in_flight: Callable[[], set[int]] = set,
) -> None:
    """Wire the metrics into a Faust app (once, before it starts): Faust's Prometheus sensor into
    REGISTRY, the /metrics page, and a timer updating the consumer lag every `lag_interval_s`
    (default: env LEADPULSE_LAG_INTERVAL_S, else 5 s)."""
    global _installed
    if lag_interval_s is None:
        lag_interval_s = float(os.environ.get("LEADPULSE_LAG_INTERVAL_S") or 5.0)
    if _installed is not None:
        if _installed is app:
            return
        raise RuntimeError("streams.metrics.install: already installed on another app")
    from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
    from aiohttp.web import Response

    app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(REGISTRY, FAUST_PREFIX))
    topics = tuple(input_topics)

    @app.page("/metrics")
    async def metrics_page(self, request):  # noqa: ANN001 - Faust view handler
        return Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE})

    @app.timer(lag_interval_s)
    async def update_consumer_lag() -> None:
        await METRICS.update_lag(app, topics, committed, in_flight)

    if rules_version is not None:
        METRICS.set_rules_version(rules_version)
    if timers_pending is not None:
        METRICS.set_timers_pending(timers_pending)
    _installed = app


def observe_batch(out: Any, duration_s: float | None = None) -> None:
    METRICS.observe_batch(out, duration_s)


def observe_batch_duration(duration_s: float) -> None:
    METRICS.observe_batch_duration(duration_s)


def track_contacts(table: MutableMapping, decode_state: Callable[[bytes], Any]) -> ContactTracker:
    return METRICS.track_contacts(table, decode_state)


def set_timers_pending(n: int | Callable[[], float]) -> None:
    METRICS.set_timers_pending(n)


def set_rules_version(version: str) -> None:
    METRICS.set_rules_version(version)


def set_ready_check(check: Callable[[], bool]) -> None:
    METRICS.set_ready_check(check)
