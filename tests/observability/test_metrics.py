"""streams.metrics on the real batch pipeline (real codec, real scoring model, a dict as the table):
the incrementally maintained contact gauges always equal a recount of the table."""

from __future__ import annotations

import random

import pytest

from scoring import _compiled
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agents.pipeline import ERASURES, EVENTS, PROFILES, QUALIFICATIONS, Pipeline, RawMessage
from scoring.events import EVENT_TYPES
from scoring.model import ScoringModel
from streams.codec import AvroCodec
from streams.metrics import FRESHNESS_BUCKETS, ContactCensus, WorkerMetrics, _Bounded, _FastHistogram

HOUR = 3_600_000
T0 = 1_760_000_000_000
TOPICS = {"ev": EVENTS, "pr": PROFILES, "q": QUALIFICATIONS, "er": ERASURES}


def samples(registry: CollectorRegistry) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class World:
    """A pipeline over a dict table, with the metrics tracking it, and a message factory."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.codec = AvroCodec()
        self.model = ScoringModel()
        self.table: dict[bytes, bytes] = {}
        self.metrics = WorkerMetrics(CollectorRegistry())
        self.now = T0
        self.pipeline = Pipeline(
            self.codec, self.model, self.metrics.track_contacts(self.table, self.model.decode_state),
            kinds=TOPICS, clock=lambda: self.now,
        )
        self.offset = 0
        self.n = 0

    def msg(self, topic: str, key: str, value: bytes | None) -> RawMessage:
        self.offset += 1
        return RawMessage(topic, 0, self.offset, key.encode(), value)

    def event(self, cid: str, etype: str, at: int) -> RawMessage:
        self.n += 1
        value = self.codec.encode("BehaviourEvent", {
            "event_id": f"e{self.n}", "contact_id": cid, "anonymous_id": None, "event_type": etype,
            "occurred_at": at, "source": "test", "properties": {"url": "/pricing", "asset_type": "whitepaper"},
        })
        return self.msg("ev", cid, value)

    def profile(self, cid: str) -> RawMessage:
        value = self.codec.encode("ContactProfile", {
            "contact_id": cid, "email": None, "job_title": self.rng.choice(["VP Marketing", "Student", None]),
            "company": "Acme", "company_size": self.rng.choice([5, 800, None]),
            "industry": "software", "country": "FR", "updated_at": self.now - 1,
        })
        return self.msg("pr", cid, value)

    def qualification(self, cid: str) -> RawMessage:
        self.n += 1
        action = self.rng.choice(["accept", "reject", "disqualify", "won", "criteria"])
        value = self.codec.encode("QualificationUpdate", {
            "update_id": f"q{self.n}", "contact_id": cid, "action": action,
            "framework": "BANT" if action == "criteria" else None,
            "criteria": {"budget": True, "authority": True, "need": True, "timeline": True} if action == "criteria" else {},
            "occurred_at": self.now - 1, "reason": "",
        })
        return self.msg("q", cid, value)

    def erasure(self, cid: str) -> RawMessage:
        self.n += 1
        value = self.codec.encode("EraseRequest", {"request_id": f"r{self.n}", "contact_id": cid, "requested_at": self.now})
        return self.msg("er", cid, value)

    def batch(self) -> list[RawMessage]:
        rng = self.rng
        out = []
        for _ in range(rng.randint(1, 30)):
            cid = f"c{rng.randint(0, 12)}"
            r = rng.random()
            if r < 0.70:
                out.append(self.event(cid, rng.choice(EVENT_TYPES), self.now - rng.randint(0, 48) * HOUR))
            elif r < 0.78:
                out.append(self.profile(cid))
            elif r < 0.88:
                out.append(self.qualification(cid))
            elif r < 0.95:
                out.append(self.erasure(cid))
            else:
                out.append(self.msg("ev", cid, b"\x00garbage"))
        return out

    def step(self, recount_between: float = 0.0) -> None:
        self.now += self.rng.randint(1, 6) * HOUR
        out = self.pipeline.process(self.batch())
        if self.rng.random() < 0.3:  # a cooling tick for some contacts, in the same batch
            due = [k.decode() for k in self.table if self.rng.random() < 0.5]
            self.pipeline.cool(0, due, self.now, out)
        if self.rng.random() < recount_between:
            # The rebalance recount (a timer) runs while the agent awaits its publish: after this
            # batch's table writes, before its observe_batch.
            self.recount().publish()
        self.metrics.observe_batch(out, 0.005)

    def recount(self) -> ContactCensus:
        census = ContactCensus(self.metrics)
        for raw in self.table.values():
            census.add(self.model.decode_state(raw))
        return census


def nonzero(d: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in d.items() if v}


@pytest.mark.parametrize("seed,recount_between", [(s, 0.0) for s in range(4)] + [(s, 0.3) for s in range(4, 8)])
def test_contact_gauges_follow_the_table_exactly(seed, recount_between):
    w = World(seed)
    for _ in range(60):
        w.step(recount_between)
        census = w.recount()
        g = w.metrics.contacts
        assert g.total == census.total == len(w.table)
        assert nonzero(g.temperature) == nonzero(census.temperature)
        assert nonzero(g.stage) == nonzero(census.stage)
        assert min(g.temperature.values()) >= 0 and min(g.stage.values()) >= 0
    s = samples(w.metrics.registry)
    erased = s.get(("leadpulse_lifecycle_transitions_total", (("from", "none"), ("kind", "erasure"), ("to", "erased"))), 0)
    created = sum(v for (name, labels), v in s.items() if name == "leadpulse_events_consumed_total")
    assert created > 0 and erased > 0, "the random walk should create and erase contacts"
    assert len({k for k, _ in s if k == "leadpulse_contacts_by_stage"}) == 1


def test_census_replaces_the_gauges():
    w = World(99)
    for _ in range(10):
        w.step()
    w.metrics.contacts.replace(12345, {"hot": 7}, {"sql": 3})  # drifted, e.g. partitions revoked
    w.recount().publish()
    s = samples(w.metrics.registry)
    assert s[("leadpulse_contacts", ())] == len(w.table)
    assert sum(v for (n, _), v in s.items() if n == "leadpulse_contacts_by_temperature") == len(w.table)
    assert sum(v for (n, _), v in s.items() if n == "leadpulse_contacts_by_stage") == len(w.table)


def test_counters_of_a_batch():
    w = World(1)
    w.now = T0
    msgs = [w.event(f"c{i}", "page_view", T0 - 2000) for i in range(5)] + [w.msg("ev", "bad", b"nope")]
    out = w.pipeline.process(msgs)
    w.metrics.observe_batch(out, 0.02)
    s = samples(w.metrics.registry)
    assert s[("leadpulse_events_consumed_total", (("event_type", "page_view"),))] == 5
    assert s[("leadpulse_events_consumed_total", (("event_type", "demo_request"),))] == 0  # pre-created
    assert sum(v for (n, _), v in s.items() if n == "leadpulse_events_rejected_total") == 1
    assert s[("leadpulse_records_published_total", (("output", "dlq"),))] == 1
    assert s[("leadpulse_records_published_total", (("output", "scores"),))] == 5
    assert s[("leadpulse_event_freshness_seconds_count", ())] == 5
    assert s[("leadpulse_event_freshness_seconds_sum", ())] == pytest.approx(10.0)
    assert s[("leadpulse_event_freshness_seconds_bucket", (("le", "2.5"),))] == 5
    assert s[("leadpulse_event_freshness_seconds_bucket", (("le", "1.0"),))] == 0
    assert s[("leadpulse_batch_duration_seconds_count", ())] == 1
    assert s[("leadpulse_contacts", ())] == 5
    assert s[("leadpulse_contacts_by_temperature", (("temperature", "cold"),))] == 5
    assert s[("leadpulse_ready", ())] == 0


def test_fast_histogram_exposes_what_prometheus_client_would():
    values = [0.0, 0.01, 0.0100001, 0.3, 1.0, 2.5, 59.0, 3600.0, 86400.0, 90000.0, 1e9]
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    h = Histogram("x_seconds", "x", buckets=FRESHNESS_BUCKETS, registry=theirs)
    for v in values:
        h.observe(v)
    fast = _FastHistogram("x_seconds", "x", FRESHNESS_BUCKETS)
    ours.register(fast)
    fast.observe_many(values)
    strip = lambda s: {k: v for k, v in s.items() if not k[0].endswith("_created")}  # noqa: E731
    assert strip(samples(ours)) == strip(samples(theirs))


def test_label_values_stay_bounded():
    label = _Bounded(cap=3)
    assert [label(v) for v in ("a", "b", None, "c", "a", "d")] == ["a", "b", "none", "other", "a", "other"]


def test_rules_info_and_callables():
    m = WorkerMetrics(CollectorRegistry())
    m.set_rules_version("2024.11-x")
    pending = [1, 2, 3]
    m.set_timers_pending(lambda: len(pending))
    m.set_ready_check(lambda: True)
    s = samples(m.registry)
    assert s[("leadpulse_rules_info", (("version", "2024.11-x"),))] == 1
    assert s[("leadpulse_scoring_build_info", (("build", "pure" if _compiled.pure_requested() else "compiled"),))] == 1
    assert s[("leadpulse_cooling_timers_pending", ())] == 3
    assert s[("leadpulse_ready", ())] == 1
    m.set_ready_check(lambda: 1 / 0)  # a failing check reads as not ready, never breaks the scrape
    assert samples(m.registry)[("leadpulse_ready", ())] == 0


class _TP(tuple):
    """faust.types.TP's shape: (topic, partition)."""

    def __new__(cls, topic, partition):
        return super().__new__(cls, (topic, partition))

    topic = property(lambda self: self[0])
    partition = property(lambda self: self[1])


class _Consumer:
    """Only the arithmetic of update_lag is under test here (the live test runs it on Faust's
    real consumer): what Faust's consumer would answer for each partition."""

    def __init__(self, parts):  # tp -> (highwater, committed, position)
        self.parts = parts
        self._committed_offset = {tp: c for tp, (_, c, _) in parts.items() if c is not None}

    def assignment(self):
        return set(self.parts)

    def highwater(self, tp):
        return self.parts[tp][0]

    async def position(self, tp):
        return self.parts[tp][2]


async def test_lag_arithmetic():
    m = WorkerMetrics(CollectorRegistry())
    a0, a1, a2, a3, other = _TP("in", 0), _TP("in", 1), _TP("in", 2), _TP("in", 3), _TP("changelog", 0)
    consumer = _Consumer({
        a0: (100, 40, 60),    # 60 behind the high watermark
        a1: (10, 9, 10),      # everything fetched, nothing in flight: the 1 left is a commit marker
        a2: (10, 9, 10),      # same, but a message is still being processed
        a3: (50, None, 20),   # nothing committed yet: measured from the position
        other: (5, 0, 0),     # not an input topic
    })

    class App:
        pass

    app = App()
    app.consumer = consumer
    in_flight = lambda: {2}  # noqa: E731 - a batch of partition 2 is not durable yet
    await m.update_lag(app, ["in"], in_flight=in_flight)
    got = {k[1]: v for k, v in samples(m.registry).items() if k[0] == "leadpulse_consumer_lag_messages"}
    key = lambda p: (("partition", str(p)), ("topic", "in"))  # noqa: E731
    assert got == {key(0): 60, key(1): 0, key(2): 1, key(3): 30}
    # What this worker's checkpoint committed since the assignment counts, not the group's old offset.
    await m.update_lag(app, ["in"], committed=lambda tp: 95 if tp == a0 else None, in_flight=in_flight)
    got = {k[1]: v for k, v in samples(m.registry).items() if k[0] == "leadpulse_consumer_lag_messages"}
    assert got[key(0)] == 5
    del consumer.parts[a0], consumer.parts[a3]  # revoked by a rebalance: the series go away
    await m.update_lag(app, ["in"], in_flight=in_flight)
    got = {k[1] for k in samples(m.registry) if k[0] == "leadpulse_consumer_lag_messages"}
    assert got == {key(1), key(2)}
