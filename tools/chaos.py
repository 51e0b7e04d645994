"""Fault injection on the real local broker: prove that nothing is lost and nothing counts twice.

A run starts its own KRaft broker, a TCP fault proxy (toxiproxy, ``tools/faultproxy.py``) between
the workers and the broker, and 2–3 workers; it feeds them profiles and then behaviour events at a
steady rate from two producers with different default partitioners (confluent-kafka: librdkafka's
CRC32 ``consistent_random``; aiokafka: Java's murmur2), with malformed messages mixed in. Meanwhile
it follows a fault schedule drawn from the seed: a random worker SIGKILLed every few seconds
(restarted at once), the broker restarted once, and on the workers' network path latency with
jitter for periods, connection resets now and then and one blackout (no byte either way). When
everything has drained it compares what the workers did with an offline recomputation by the
scoring core of each contact's inputs in the order they were sent:

* every contact's final state (from the table's changelog) against the core's replay: events
  lost, events counted twice or never sent, score; contacts with a state in two partitions;
* every lifecycle change the replay says must happen against the ``lead-lifecycle`` topic:
  missing, spurious, and duplicates per ``change_id`` (zero duplicates under exactly_once with a
  read_committed consumer);
* every malformed message against the dead-letter topic: each one there, with its reason, and no
  valid event in it.

Temperature (hysteresis) and stage are path-dependent, scores are not (``scoring/model.py``). A
contact whose events all went to one partition, in the order they were sent ("in order"), is
processed in that order by any worker, so its temperature, stage and every lifecycle change are
gated against the replay. A contact whose events went through two partitions (the two
partitioners disagree on its partition) reaches its partition in an order the inputs do not fix:
its lifecycle is compared too, but a difference is reported as order-dependent, not gated.

``make chaos`` runs the full profile under both guarantees (``python -m tools.chaos``);
``tests/chaos`` runs the short one inside ``make test``. The decoder fuzzer (``fuzz_decoder``)
runs in the same command.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import struct
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from agents.pipeline import EVENTS, PROFILES, to_domain
from scoring import ScoringModel, default_rules
from scoring.model import event_hash
from streams.codec import AvroCodec, DecodeError
from tools.faultproxy import FaultProxy, FaultProxyError, Link
from tools.runtime import ROOT, Worker, free_port, topic_env, wait_group_stable

HOUR = 3_600_000
DAY = 24 * HOUR
BIG = 5 * 1024 * 1024  # the oversized poison message
EVENT_MIX = [
    ("page_view", 30), ("email_open", 12), ("email_click", 10), ("content_download", 6),
    ("case_study_view", 5), ("pricing_page_view", 5), ("webinar_signup", 4), ("webinar_attended", 3),
    ("newsletter_signup", 3), ("form_submit", 3), ("social_engagement", 4), ("event_attended", 2),
    ("demo_request", 2), ("free_trial_signup", 2), ("unsubscribe", 1), ("email_bounce", 1),
]
POISON_KINDS = ("random_bytes", "truncated_avro", "wrong_magic", "unknown_schema", "future_timestamp",
                "empty_contact_id", "empty_event_id", "oversized")
#: Which client sends a contact's inputs. "mixed": a third of the contacts through aiokafka alone, a
#: third through confluent-kafka alone, a third event by event through either (so through two
#: partitions); "per-contact": halves, no contact split; "aiokafka": every input through aiokafka.
PRODUCERS = ("mixed", "per-contact", "aiokafka")


@dataclass
class Profile:
    """How hard a run pushes. `full` is what `make chaos` runs; `short` runs inside `make test`."""

    events: int
    contacts: int
    rate: float  # behaviour events/s, steady
    workers: int
    kill_every_s: float
    broker_restarts: int
    poison: int
    fuzz: int
    partitions: int = 6
    guarantee: str = "at_least_once"
    seed: int = 1
    # Faults on the workers' network path (toxiproxy). network=False: workers talk to the broker directly.
    network: bool = True
    latency_periods: int = 0
    latency_s: float = 10.0  # each period
    latency_ms: tuple[int, int] = (100, 500)  # drawn per period; jitter 10–50 % of it
    resets: int = 0  # instants at which every worker connection is reset (TCP RST)
    blackout_s: float = 0.0  # one blackout this long (0: none)
    slicer_periods: int = 0  # periods in which replies reach the workers in small pieces
    producers: str = "mixed"
    drain_timeout_s: float = 600.0  # after the last event; then whatever was not committed is reported


RUNS = {
    "full": Profile(events=200_000, contacts=10_000, rate=1_000, workers=3, kill_every_s=5.0,
                    broker_restarts=1, poison=10_000, fuzz=1_000_000,
                    latency_periods=4, latency_s=15.0, resets=6, blackout_s=30.0, slicer_periods=2),
    "short": Profile(events=12_000, contacts=1_500, rate=400, workers=2, kill_every_s=4.0,
                     broker_restarts=1, poison=400, fuzz=20_000,
                     latency_periods=1, latency_s=5.0, latency_ms=(200, 400), resets=2, blackout_s=10.0,
                     drain_timeout_s=120.0),
}


# -- the fault schedule ---------------------------------------------------------------------------

KILL, RESTART, LATENCY, RESET, BLACKOUT, SLICER = (
    "worker SIGKILL", "broker restart", "latency period", "connection reset", "blackout", "slicer period")


@dataclass(frozen=True)
class Fault:
    """One fault, `at_s` seconds after the first behaviour event is sent."""

    at_s: float
    kind: str
    duration_s: float = 0.0
    worker: int = 0  # KILL: index of the worker
    latency_ms: int = 0
    jitter_ms: int = 0

    def describe(self) -> str:
        what = {KILL: f"SIGKILL w{self.worker + 1}", LATENCY: f"latency {self.latency_ms}±{self.jitter_ms} ms"
                f" for {self.duration_s:g} s", BLACKOUT: f"blackout {self.duration_s:g} s",
                SLICER: f"slicer {self.duration_s:g} s"}.get(self.kind, self.kind)
        return f"{self.at_s:6.1f} s  {what}"


RESTART_TAKES_S = 12.0  # a broker restart, stop to answering again, on this machine (a blackout must not overlap it)


def fault_schedule(p: Profile, produce_s: float) -> list[Fault]:
    """The run's faults, a function of the profile and the seed alone (so a failing run can be
    rerun with the same faults at the same instants). Network faults never overlap one another;
    the blackout keeps away from a broker restart — 2 s before it, `RESTART_TAKES_S` after it, the
    time a restart takes — and no worker is killed during it (each of the two is seen alone); SIGKILLs every `kill_every_s`, one replaced by each broker restart."""
    rnd = random.Random(f"leadpulse-chaos-faults-{p.seed}")
    restarts = [produce_s * (k + 1) / (p.broker_restarts + 1) for k in range(p.broker_restarts)]
    if p.kill_every_s > 0:  # each on the first SIGKILL tick from its instant on, which it replaces
        restarts = [math.ceil(r / p.kill_every_s) * p.kill_every_s for r in restarts]
    busy: list[tuple[float, float]] = []
    faults: list[Fault] = []

    def place(duration: float, avoid: list[tuple[float, float]] = ()) -> float:
        lo, hi = 2.0, produce_s - duration - 2.0
        free = lambda t: all(t + duration + 0.5 <= a or t >= b + 0.5 for a, b in [*busy, *avoid])  # noqa: E731
        # random starts first; when the time is tight, the first free slot (still a function of the seed)
        drawn = (round(rnd.uniform(lo, hi), 1) for _ in range(2000 if hi >= lo else 0))  # lazily: draws stop at a fit
        for t in itertools.chain(drawn, (lo + k / 2 for k in range(int((hi - lo) * 2) + 1))):
            if free(t):
                busy.append((t, t + duration))
                return t
        raise ValueError(f"the network faults do not fit in {produce_s:.0f} s of production: send more events "
                         f"or schedule fewer or shorter faults")

    if p.network:
        if p.blackout_s > 0:
            at = place(p.blackout_s, avoid=[(r - 2.0, r + RESTART_TAKES_S) for r in restarts])
            faults.append(Fault(at, BLACKOUT, p.blackout_s))
        for _ in range(p.latency_periods):
            ms = rnd.randint(*p.latency_ms)
            faults.append(Fault(place(p.latency_s), LATENCY, p.latency_s, latency_ms=ms,
                                jitter_ms=int(ms * rnd.uniform(0.1, 0.5))))
        for _ in range(p.slicer_periods):
            faults.append(Fault(place(p.latency_s), SLICER, p.latency_s))
        for _ in range(p.resets):
            faults.append(Fault(place(0.5), RESET, 0.5))
    blackouts = [(f.at_s, f.at_s + f.duration_s + 3.0) for f in faults if f.kind == BLACKOUT]
    faults += [Fault(round(r, 1), RESTART) for r in restarts]
    ticks = [k * p.kill_every_s for k in range(1, int(produce_s / p.kill_every_s) + 1)] if p.kill_every_s > 0 else []
    for t in ticks:
        if t < produce_s and all(abs(t - r) > 1e-6 for r in restarts) and not any(a <= t <= b for a, b in blackouts):
            faults.append(Fault(round(t, 1), KILL, worker=rnd.randrange(p.workers)))
    return sorted(faults, key=lambda f: f.at_s)


def schedule_counts(schedule: list[Fault]) -> dict[str, int]:
    return dict(Counter(f.kind for f in schedule))


# -- the result -----------------------------------------------------------------------------------

@dataclass
class Summary:
    profile: str
    guarantee: str
    seed: int = 1
    producers: str = "mixed"
    events_sent: int = 0
    sent_by: dict = field(default_factory=dict)  # client → records (profiles and events)
    contacts: int = 0
    poison_sent: int = 0
    undelivered: int = 0  # records the run's confluent-kafka producer reported undelivered (not a worker's fault)
    schedule: list = field(default_factory=list)  # Fault dicts, as drawn from the seed
    faults: dict = field(default_factory=dict)  # as injected
    lost_events: int = 0
    double_counted_contacts: int = 0
    extra_events: int = 0
    contacts_score_differs: int = 0  # every contact: score or grade (order-independent)
    contacts_split_state: int = 0  # a state in more than one changelog partition
    contacts_in_order: int = 0
    contacts_mismatched: int = 0  # in-order contacts: score, grade, temperature or stage
    lifecycle_expected: int = 0
    lifecycle_published: int = 0
    lifecycle_missing: int = 0  # in-order contacts
    lifecycle_spurious: int = 0  # in-order contacts
    lifecycle_duplicates: int = 0
    lifecycle_transitions_missing: int = 0  # in-order contacts
    order_dependent_contacts: int = 0
    order_dependent_contacts_differing: int = 0
    order_dependent_state_differs: int = 0  # temperature or stage
    order_dependent_transitions_differing: int = 0  # missing + extra (contact, kind, from, to)
    order_dependent_change_ids_missing: int = 0
    order_dependent_change_ids_spurious: int = 0
    blackout_leaks: int = 0  # offsets the workers committed while no byte was to go through
    undrained_offsets: int = 0  # input offsets the group had not committed when the drain timed out
    dlq: int = 0
    dlq_poison_missing: int = 0
    dlq_valid_events: int = 0
    dlq_duplicates: int = 0  # dead letters of an input already dead-lettered
    dlq_reasons: dict = field(default_factory=dict)
    fuzz_inputs: int = 0
    fuzz_escapes: int = 0
    wall_s: float = 0.0
    drain_s: float = 0.0
    notes: list = field(default_factory=list)

    def gates(self) -> dict[str, int]:
        """Every count that must be 0 for the run to pass."""
        g = {
            "input offsets never committed (drain timed out)": self.undrained_offsets,
            "events lost": self.lost_events,
            "events counted twice": self.double_counted_contacts,
            "events counted that were never sent": self.extra_events,
            "contacts whose score differs": self.contacts_score_differs,
            "contacts with a state in two partitions": self.contacts_split_state,
            "in-order contacts whose state differs": self.contacts_mismatched,
            "lifecycle transitions missing": self.lifecycle_transitions_missing,
            "lifecycle change_ids missing": self.lifecycle_missing,
            "lifecycle change_ids spurious": self.lifecycle_spurious,
            "malformed messages not dead-lettered": self.dlq_poison_missing,
            "valid events dead-lettered": self.dlq_valid_events,
            "decoder fuzz escapes": self.fuzz_escapes,
            "offsets committed during the blackout (the proxy leaked)": self.blackout_leaks,
        }
        if self.guarantee == "exactly_once":
            g["duplicate lifecycle records"] = self.lifecycle_duplicates
            g["duplicate dead letters"] = self.dlq_duplicates
        return g

    def failed(self) -> list[str]:
        return [f"{name} {n:,}" for name, n in self.gates().items() if n]

    @property
    def ok(self) -> bool:
        return not self.failed()

    def table(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        dup = "(gate)" if self.guarantee == "exactly_once" else "(redeliveries: allowed)"
        rows = [
            ("profile / guarantee", f"{self.profile} / {self.guarantee}"),
            ("events sent (contacts)", f"{self.events_sent:,} ({self.contacts:,})"),
            ("inputs by client (producers: " + self.producers + ")",
             ", ".join(f"{k} {v:,}" for k, v in sorted(self.sent_by.items())) or "-"),
            ("malformed messages sent", f"{self.poison_sent:,}"),
            ("records the run's confluent-kafka producer failed to deliver", f"{self.undelivered:,}"),
            (f"faults injected (schedule seed {self.seed})", faults),
            ("input offsets not committed at the end", f"{self.undrained_offsets:,}"),
            ("events lost", f"{self.lost_events:,}"),
            ("events counted twice (contacts)", f"{self.double_counted_contacts:,}"),
            ("events counted that were never sent", f"{self.extra_events:,}"),
            ("contacts whose score differs", f"{self.contacts_score_differs:,}"),
            ("contacts with a state in two partitions", f"{self.contacts_split_state:,}"),
            ("in-order contacts / whose state differs", f"{self.contacts_in_order:,} / {self.contacts_mismatched:,}"),
            ("lifecycle changes expected / published", f"{self.lifecycle_expected:,} / {self.lifecycle_published:,}"),
            ("lifecycle transitions missing (in order)", f"{self.lifecycle_transitions_missing:,}"),
            ("lifecycle change_ids missing / spurious (in order)", f"{self.lifecycle_missing:,} / {self.lifecycle_spurious:,}"),
            (f"duplicate lifecycle records {dup}", f"{self.lifecycle_duplicates:,}"),
            ("order-dependent contacts / differing (not gated)",
             f"{self.order_dependent_contacts:,} / {self.order_dependent_contacts_differing:,}"),
            ("  other temperature or stage; transitions differing",
             f"{self.order_dependent_state_differs:,}; {self.order_dependent_transitions_differing:,}"),
            ("  change_ids missing / spurious",
             f"{self.order_dependent_change_ids_missing:,} / {self.order_dependent_change_ids_spurious:,}"),
            ("offsets committed during the blackout", f"{self.blackout_leaks:,}"),
            ("dead letters (malformed missing, valid ones)", f"{self.dlq:,} ({self.dlq_poison_missing}, {self.dlq_valid_events})"),
            (f"duplicate dead letters {dup}", f"{self.dlq_duplicates:,}"),
            ("dead letters by error", ", ".join(f"{k} {v}" for k, v in sorted(self.dlq_reasons.items())) or "-"),
            ("decoder fuzz inputs (escapes)", f"{self.fuzz_inputs:,} ({self.fuzz_escapes})"),
            ("wall time (drain after last event)", f"{self.wall_s:.0f} s ({self.drain_s:.0f} s)"),
            ("verdict", "PASS" if self.ok else "FAIL: " + ", ".join(self.failed())),
        ]
        w = max(len(k) for k, _ in rows)
        lines = [f"| {'':<{w}} | result |", f"|{'-' * (w + 2)}|--------|"]
        lines += [f"| {k:<{w}} | {v} |" for k, v in rows]
        return "\n".join(lines + [f"- {n}" for n in self.notes])


# -- inputs -------------------------------------------------------------------------------------------

codec = AvroCodec()


def _event(cid: str, eid: str, etype: str, at: int, **props: str) -> bytes:
    return codec.encode("BehaviourEvent", {"event_id": eid, "contact_id": cid, "anonymous_id": None,
                                           "event_type": etype, "occurred_at": at, "source": "chaos",
                                           "properties": props})


def profiles(n_contacts: int, t0: int, rnd: random.Random) -> list[tuple[bytes, bytes]]:
    """One profile per contact, varied enough that some reach fit grade A/B (and so MQL)."""
    titles = ["VP Marketing", "Head of Sales", "Marketing Manager", "Student", "CEO", "Intern", None]
    sizes = [5, 40, 250, 1200, 8000, None]
    out = []
    for i in range(n_contacts):
        cid = f"c{i}"
        domain = rnd.choice(["acme.io", "globex.com", "gmail.com", "initech.fr", "hooli.com"])
        rec = {"contact_id": cid, "email": f"{cid}@{domain}", "job_title": rnd.choice(titles),
               "company": rnd.choice(["Acme", "Globex", None, "Initech"]), "company_size": rnd.choice(sizes),
               "industry": rnd.choice(["software", "retail", "finance", None]), "country": "FR", "updated_at": t0}
        out.append((cid.encode(), codec.encode("ContactProfile", rec)))
    return out


def events(n: int, n_contacts: int, t0: int, rnd: random.Random) -> list[tuple[bytes, bytes]]:
    """Valid behaviour events; times move forward with a little jitter (some arrive late)."""
    kinds = [k for k, w in EVENT_MIX for _ in range(w)]
    out = []
    for i in range(n):
        cid = f"c{rnd.randrange(n_contacts)}"
        etype = rnd.choice(kinds)
        props = {"url": "/pricing"} if etype == "page_view" and rnd.random() < 0.1 else {}
        at = t0 + i * 10 - rnd.randrange(HOUR)
        out.append((cid.encode(), _event(cid, f"e{i}", etype, at, **props)))
    return out


def poison(n: int, n_contacts: int, now: int, rnd: random.Random) -> list[tuple[bytes | None, bytes, str]]:
    """`n` malformed messages, every kind represented, one of them 5 MiB: (key, value, kind)."""
    valid = _event("c0", "p", "page_view", now)
    out = []
    for i in range(n):
        kind = POISON_KINDS[i % (len(POISON_KINDS) - 1)] if i else "oversized"
        key = f"c{rnd.randrange(n_contacts)}".encode()
        if kind == "random_bytes":
            value = rnd.randbytes(rnd.randrange(1, 200))
        elif kind == "truncated_avro":
            value = valid[: rnd.randrange(5, len(valid) - 1)]
        elif kind == "wrong_magic":
            value = bytes([rnd.randrange(1, 256)]) + valid[1:]
        elif kind == "unknown_schema":
            value = b"\x00" + struct.pack(">I", 9000 + i) + valid[5:]
        elif kind == "future_timestamp":
            value = _event(key.decode(), f"p{i}", "page_view", now + 400 * DAY)
        elif kind == "empty_contact_id":
            value = _event("", f"p{i}", "page_view", now)
        elif kind == "empty_event_id":
            value = _event(key.decode(), "", "page_view", now)
        else:
            value = valid + rnd.randbytes(BIG)  # a valid event followed by 5 MiB of junk
        out.append((key, value, kind))
    return out


# -- fuzzing ------------------------------------------------------------------------------------------

def fuzz_decoder(n: int, seed: int = 1) -> tuple[int, list[str]]:
    """Throw `n` inputs at the decoder — random bytes and mutations of valid messages of every
    schema (bit flips, truncations, splices, length-field damage) — and return (inputs, escapes):
    anything but `DecodeError` escaping is a bug. Cheap mutations, so a million take well under
    a minute; the hypothesis property in tests/streams/test_codec.py covers the structured side."""
    rnd = random.Random(seed)
    seeds = [
        ("BehaviourEvent", _event("c1", "e1", "page_view", 1_700_000_000_000, url="/pricing")),
        ("ContactProfile", profiles(1, 1_700_000_000_000, random.Random(seed))[0][1]),
        ("QualificationUpdate", codec.encode("QualificationUpdate", {
            "update_id": "u", "contact_id": "c1", "action": "criteria", "framework": "BANT",
            "criteria": {"budget": True}, "occurred_at": 1, "reason": ""})),
        ("EraseRequest", codec.encode("EraseRequest", {"contact_id": "c1", "request_id": "r", "requested_at": 1})),
    ]
    escapes: list[str] = []
    decode = codec.decode
    for i in range(n):
        name, base = seeds[i % len(seeds)]
        op = rnd.randrange(6)
        if op == 0:
            data = rnd.randbytes(rnd.randrange(0, 64))
        elif op == 1:
            b = bytearray(base)
            for _ in range(rnd.randrange(1, 4)):
                b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
            data = bytes(b)
        elif op == 2:
            data = base[: rnd.randrange(len(base))]
        elif op == 3:
            data = base[:5] + rnd.randbytes(rnd.randrange(0, 40))
        elif op == 4:
            cut = rnd.randrange(5, len(base))
            data = base[:cut] + bytes([rnd.choice((0x7F, 0xFF, 0x80, 0x01))]) * rnd.randrange(1, 12) + base[cut:]
        else:
            other = seeds[rnd.randrange(len(seeds))][1]
            data = base[: rnd.randrange(5, len(base))] + other[rnd.randrange(5, len(other)):]
        try:
            decode(name, data)
        except DecodeError:
            pass
        except Exception as exc:  # noqa: BLE001 - this is what the fuzzer is looking for
            if len(escapes) < 20:
                escapes.append(f"{name} {data[:40].hex()}…: {type(exc).__name__}: {exc}")
            else:
                escapes.append("")
    return n, escapes


# -- who sends what ---------------------------------------------------------------------------------

def producer_plan(n_contacts: int, producers: str) -> list[str]:
    """Per contact: "aiokafka", "confluent" or "both" (each of its inputs through either)."""
    if producers not in PRODUCERS:
        raise ValueError(f"producers {producers!r}: expected one of {', '.join(PRODUCERS)}")
    cycle = {"mixed": ("aiokafka", "confluent", "both"), "per-contact": ("aiokafka", "confluent"),
             "aiokafka": ("aiokafka",)}[producers]
    return [cycle[i % len(cycle)] for i in range(n_contacts)]


def assign_clients(records: list[tuple], plan: list[str], rnd: random.Random) -> list[tuple]:
    """(key, value, kind) → (key, value, kind, client); malformed ones always go through aiokafka
    (the 5 MiB one needs its larger request size)."""
    out = []
    for key, value, kind in records:
        mode = plan[int(key[1:])] if not kind and key else "aiokafka"
        client = rnd.choice(("aiokafka", "confluent")) if mode == "both" else mode
        out.append((key, value, kind, client))
    return out


def in_send_order(placed: list[tuple[int, int, int]]) -> bool:
    """(send index, partition, offset) of one contact's events: True if they all went to one
    partition and its offsets follow the send order, so every worker reads them in that order."""
    if len({part for _, part, _ in placed}) > 1:
        return False
    offsets = [off for _, _, off in sorted(placed)]
    return all(a < b for a, b in zip(offsets, offsets[1:]))


# -- the run ------------------------------------------------------------------------------------------

class Run:
    def __init__(self, p: Profile, name: str, workdir: Path, log=print):
        self.p, self.name, self.workdir, self.log = p, name, workdir, log
        self.suffix = uuid.uuid4().hex[:10]
        # The cooling timer is off: a wall-clock tick that advances a contact between two of its
        # events makes the later one late, and a late event leaves the same state but may be seen
        # crossing a threshold at another moment than in the offline replay, so the expected
        # lifecycle changes would not be a function of the input log. Timers are tested by
        # tests/integration (cooling on time, takeover).
        self.env = {**topic_env(self.suffix), "LEADPULSE_PARTITIONS": str(p.partitions),
                    "LEADPULSE_PROCESSING_GUARANTEE": p.guarantee, "LEADPULSE_COOLING_INTERVAL_S": "86400"}
        self.topics = {k: v for k, v in self.env.items() if k.endswith("_TOPIC")}
        self.summary = Summary(profile=name, guarantee=p.guarantee, contacts=p.contacts, seed=p.seed,
                               producers=p.producers)
        self.faults: Counter = Counter()
        self.workers: list[Worker] = []
        self.broker = None
        self.proxy: FaultProxy | None = None
        self.link: Link | None = None
        self.bootstrap = ""  # direct: the run's producers and verifiers
        self.worker_bootstrap = ""  # the workers': through the fault proxy
        self.poison_at: dict[tuple[int, int], str] = {}  # (partition, offset) → kind
        self.sent_by: Counter = Counter()
        self.send_errors: list[str] = []
        self.crashes: Counter = Counter()  # why workers exited by themselves
        self.killed: set[str] = set()

    # broker, proxy and workers
    def start_broker(self) -> None:
        from streams.localkafka import HOST, LocalKafka

        if not self.p.network:
            self.broker = LocalKafka(state_dir=self.workdir / "kafka")
            self.bootstrap = self.worker_bootstrap = self.broker.start()
            return
        self.proxy = FaultProxy.start(self.workdir, seed=self.p.seed)
        listen = free_port()
        self.broker = LocalKafka(state_dir=self.workdir / "kafka", advertise_proxied=listen)
        self.bootstrap = self.broker.start()
        self.link = self.proxy.create("workers", upstream=f"{HOST}:{self.broker.proxied_port}", listen_port=listen)
        self.worker_bootstrap = self.link.address

    def restart_broker(self) -> None:
        upstream = self.broker.proxied_port
        self.broker.stop()
        time.sleep(1.0)
        self.broker.start()
        if self.link is not None and self.broker.proxied_port != upstream:  # its old port was taken meanwhile
            self.link.set_upstream(f"127.0.0.1:{self.broker.proxied_port}")
        self.faults[RESTART] += 1

    def start_workers(self) -> None:
        for i in range(self.p.workers):
            w = Worker(self.worker_bootstrap, self.suffix, self.workdir, name=f"w{i + 1}", extra_env=self.env)
            self.workers.append(w.start())
        for w in self.workers:
            w.wait_ready(120)
        wait_group_stable(self.workers, timeout=120)

    def kill_one(self, index: int) -> None:
        """SIGKILL a worker; the supervisor starts it again."""
        w = self.workers[index % len(self.workers)]
        self.killed.add(w.name)
        w.kill()
        self.faults[KILL] += 1

    async def inject(self, f: Fault) -> None:
        link = self.link
        if f.kind == KILL:
            await asyncio.to_thread(self.kill_one, f.worker)
        elif f.kind == RESTART:
            await asyncio.to_thread(self.restart_broker)
        elif f.kind in (LATENCY, SLICER):
            kind = "latency" if f.kind == LATENCY else "slicer"
            if kind == "latency":
                await asyncio.to_thread(link.latency, f.latency_ms, f.jitter_ms)
            else:
                await asyncio.to_thread(link.slicer)
            self.faults[f.kind] += 1
            await asyncio.sleep(f.duration_s)
            await asyncio.to_thread(link.remove_kind, kind)
        elif f.kind == RESET:
            await asyncio.to_thread(link.reset_peers, f.duration_s)
            self.faults[f.kind] += 1
        elif f.kind == BLACKOUT:
            await asyncio.to_thread(link.silence)
            self.log(f"blackout: no byte between the workers and the broker for {f.duration_s:g} s")
            self.faults[f"{f.kind} ({f.duration_s:g} s)"] += 1
            # The harness checks itself: a commit is a worker's request, so the group's committed
            # offsets must not move while no byte goes through (the first second lets a commit
            # already answered by the broker land).
            await asyncio.sleep(min(1.0, f.duration_s / 2))
            before = await self.committed()
            await asyncio.sleep(f.duration_s - min(1.0, f.duration_s / 2))
            self.summary.blackout_leaks += sum(max(0, n - before.get(tp, 0)) for tp, n in (await self.committed()).items())
            await asyncio.to_thread(link.restore)

    async def faults_loop(self, schedule: list[Fault], started: float) -> None:
        """Each fault at its instant; those with a duration run beside the next ones."""
        running = []
        for f in schedule:
            delay = started + f.at_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            running.append(asyncio.create_task(self.inject(f)))
        await asyncio.gather(*running)

    async def supervise(self) -> None:
        """What Kubernetes does for a pod: a worker that exits on its own is started again (counted,
        with the reason from its log, so a crash is never silent)."""
        while True:
            await asyncio.sleep(0.5)
            for w in self.workers:
                if w.proc is not None and w.proc.poll() is not None:
                    if w.name in self.killed:
                        self.killed.discard(w.name)
                        w.start()
                        continue
                    lines = w.log_text().splitlines()[-400:]
                    reason = next((line for line in reversed(lines) if any(
                        mark in line for mark in ("Crashed reason=", "leadpulse: error:", "stopping the worker"))),
                        next((line for line in reversed(lines) if re.match(r"\w+(Error|Exception|Exit)\b", line)), ""))
                    self.faults["worker exited by itself (restarted)"] += 1
                    self.crashes[f"exit {w.proc.returncode}: {reason.split('] ', 3)[-1][:240]}"] += 1
                    w.start()

    # producing
    def producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True, linger_ms=5,
                                max_request_size=BIG + 1024 * 1024, request_timeout_ms=120_000)

    def confluent_producer(self):
        """librdkafka with its defaults where it matters: the ``consistent_random`` partitioner
        (CRC32 of the key), as every confluent-kafka, Go, .NET and node producer has it."""
        from confluent_kafka import Producer

        log = logging.getLogger(f"tools.chaos.librdkafka.{self.suffix}")
        if not log.handlers:  # the broker restart makes it complain (and it retries): into a file, not the output
            log.addHandler(logging.FileHandler(self.workdir / "confluent-kafka.log"))
            log.propagate = False
            log.setLevel(logging.INFO)
        return Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5,
                         "message.timeout.ms": 300_000, "client.id": "leadpulse-chaos"},
                        logger=log, error_cb=lambda err: log.warning("error: %s", err))

    def _delivered(self, err, msg) -> None:
        if err is not None:
            self.send_errors.append(str(err))

    def _send_confluent(self, producer, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=self._delivered)
                return
            except BufferError:  # its queue is full (the broker is restarting): let it drain a bit
                producer.poll(0.05)

    async def produce_all(self, topic: str, records: list[tuple], rate: float | None = None) -> None:
        """(key, value, kind, client) records, each through its client, in list order, at `rate`
        records/s (None: at once). Malformed ones (with a kind) are remembered by partition and
        offset. A record confluent-kafka reports undelivered is counted and the run goes on: the
        replay expects what the topic holds, so such a record is neither lost nor expected (a timed
        out one may still have been written; then it is expected). aiokafka failures fail the run."""
        aio = self.producer()
        await aio.start()
        ck = self.confluent_producer()
        try:
            step = 0.05
            per_step = max(1, int(rate * step)) if rate else len(records) or 1
            started = time.monotonic()
            pending = []
            for i in range(0, len(records), per_step):
                for key, value, kind, client in records[i:i + per_step]:
                    self.sent_by[client] += 1
                    if client == "confluent":
                        self._send_confluent(ck, topic, key, value)
                        continue
                    fut = await aio.send(topic, key=key, value=value)
                    if kind:
                        fut.add_done_callback(lambda f, kind=kind: self.poison_at.__setitem__(
                            (f.result().partition, f.result().offset), kind) if not f.exception() else None)
                    pending.append(fut)
                ck.poll(0)
                if rate:
                    delay = started + (i // per_step + 1) * step - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if len(pending) > 5000:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)
            left = await asyncio.to_thread(ck.flush, 300)
            if left:
                raise RuntimeError(f"confluent-kafka still had {left} records to deliver after 300 s")
        finally:
            await aio.stop()

    async def committed(self, patience_s: float = 60.0) -> dict:
        """The group's committed offsets (direct to the broker, never through the proxy); asked
        again while the broker is down (a restart in the schedule may overlap)."""
        from aiokafka.errors import KafkaConnectionError

        deadline = time.monotonic() + patience_s
        while True:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            try:
                await admin.start()
                return {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(
                    self.env["LEADPULSE_APP_ID"])).items()}
            except KafkaConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)
            finally:
                await admin.close()

    async def wait_drained(self, timeout: float) -> dict:
        """Until the group has committed every input offset and the outputs have stopped moving;
        returns what is still not committed after `timeout` ({partition: (committed, end)})."""
        topics = [self.topics["LEADPULSE_EVENTS_TOPIC"], self.topics["LEADPULSE_PROFILES_TOPIC"]]
        group = self.env["LEADPULSE_APP_ID"]
        watched = [self.topics["LEADPULSE_SCORES_TOPIC"], self.topics["LEADPULSE_LIFECYCLE_TOPIC"],
                   self.topics["LEADPULSE_DLQ_TOPIC"]]
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await admin.start()
        await consumer.start()
        try:
            tps = [TopicPartition(t, i) for t in topics for i in range(self.p.partitions)]
            out_tps = [TopicPartition(t, i) for t in watched for i in range(self.p.partitions)]
            deadline = time.monotonic() + timeout
            last_out, still_since = None, None
            while True:
                ends = await consumer.end_offsets(tps)
                committed = await admin.list_consumer_group_offsets(group)
                at = {tp: committed[tp].offset if tp in committed else 0 for tp in tps}
                behind = {tp: (at[tp], ends[tp]) for tp in tps if at[tp] < ends[tp]}
                out = await consumer.end_offsets(out_tps)
                if not behind and out == last_out:
                    still_since = still_since or time.monotonic()
                    if time.monotonic() - still_since >= 3.0:
                        return {}
                else:
                    still_since = None
                if time.monotonic() >= deadline:
                    return behind
                last_out = out
                await asyncio.sleep(0.5)
        finally:
            await consumer.stop()
            await admin.close()

    async def read_all(self, topic: str) -> list:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="earliest",
                                    fetch_max_bytes=16 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, i) for i in range(self.p.partitions)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            got, done = [], {tp for tp in tps if ends[tp] == 0}
            while len(done) < len(tps):
                for tp, msgs in (await consumer.getmany(timeout_ms=1000)).items():
                    got.extend(msgs)
                    if msgs and msgs[-1].offset + 1 >= ends[tp]:
                        done.add(tp)
                for tp in tps:
                    if tp not in done and await consumer.position(tp) >= ends[tp]:
                        done.add(tp)
            return got
        finally:
            await consumer.stop()

    # checking
    async def verify(self) -> None:
        """Replays every contact's inputs in the order they were sent (its profile, drained before
        any event was sent, then its events by send index) and compares; see the module docstring
        for what is gated and what is only reported."""
        s = self.summary
        model = ScoringModel(default_rules())
        t = self.topics
        inputs: dict[str, list] = defaultdict(list)
        placed: dict[str, list] = defaultdict(list)  # contact → [(send index, partition, offset)]
        where: dict[bytes, str] = {}  # event-id hash → what to name in a note
        for m in await self.read_all(t["LEADPULSE_PROFILES_TOPIC"]):
            p = to_domain(PROFILES, codec.decode("ContactProfile", m.value))
            inputs[p.contact_id].append(p)
        sent = []
        for m in await self.read_all(t["LEADPULSE_EVENTS_TOPIC"]):
            if (m.partition, m.offset) in self.poison_at:
                continue
            e = to_domain(EVENTS, codec.decode("BehaviourEvent", m.value))
            sent.append((int(e.event_id[1:]), e))  # the generator's ids: e<send index>
            placed[e.contact_id].append((int(e.event_id[1:]), m.partition, m.offset))
            where[event_hash(e.event_id)] = f"{e.event_id} ({e.contact_id}, partition {m.partition} offset {m.offset})"
        for _, e in sorted(sent, key=lambda x: x[0]):
            inputs[e.contact_id].append(e)
        in_order = {cid: in_send_order(placed.get(cid, [])) for cid in inputs}
        s.contacts_in_order = sum(in_order.values())
        s.order_dependent_contacts = len(in_order) - s.contacts_in_order

        changelog = f"{self.env['LEADPULSE_APP_ID']}-contacts-changelog"
        states: dict[str, dict[int, bytes]] = defaultdict(dict)
        for m in sorted(await self.read_all(changelog), key=lambda m: (m.partition, m.offset)):
            if m.value is None:
                states[m.key.decode()].pop(m.partition, None)
            else:
                states[m.key.decode()][m.partition] = m.value
        s.contacts_split_state = sum(len(v) > 1 for v in states.values())
        s.notes += [f"state in partitions {sorted(v)}: {cid}" for cid, v in states.items() if len(v) > 1][:3]

        expected: dict[bool, set[str]] = {True: set(), False: set()}  # in order? → change ids
        moves: dict[bool, Counter] = {True: Counter(), False: Counter()}  # (contact, kind, from, to)
        differs: set[str] = set()  # order-dependent contacts that differ in any way
        owner: dict[str, str] = {}  # their expected change ids → contact
        lost_split = lost_noted = 0
        for cid, items in inputs.items():
            rejected: list = []
            state, changes = model.apply_inputs(None, items, rejected=rejected)
            mine = states.get(cid, {})
            own = (murmur2(cid.encode()) & 0x7FFFFFFF) % self.p.partitions
            got = mine.get(own, next(iter(mine.values()), None))
            worker = model.decode_state(got) if got is not None else None
            if worker is not None and worker.as_of > state.as_of:
                state, more = model.advance(state, worker.as_of)
                changes += more
            ordered = in_order[cid]
            expected[ordered].update(c.change_id for c in changes)
            if not ordered:
                owner.update((c.change_id, cid) for c in changes)
            moves[ordered].update((c.contact_id, c.kind, c.from_value, c.to_value) for c in changes)
            want_seen = set(state.seen)
            have_seen = set(worker.seen) if worker is not None else set()
            lost = want_seen - have_seen
            s.lost_events += len(lost)
            lost_split += len(lost) if len(mine) > 1 else 0
            if lost and lost_noted < 5:
                lost_noted += 1
                s.notes += [f"lost: event {where.get(h, h.hex())}" for h in sorted(lost)[:2]]
            s.extra_events += len(have_seen - want_seen)
            if worker is None:
                s.contacts_score_differs += 1
                s.contacts_mismatched += ordered
                continue
            a, b = model.snapshot(state), model.snapshot(worker)
            score_same = a.grade == b.grade and abs(a.score - b.score) <= 1e-6
            path_same = (a.temperature, a.stage) == (b.temperature, b.stage)
            if not score_same:
                s.contacts_score_differs += 1
                # the same events and the same fit, yet more points: an event counted twice (a state
                # without its profile has another fit, which may be negative: that is no double count)
                if want_seen == have_seen and worker.fit == state.fit and b.score > a.score:
                    s.double_counted_contacts += 1
            if ordered and not (score_same and path_same):
                s.contacts_mismatched += 1
                if s.contacts_mismatched <= 3:
                    s.notes.append(f"in-order contact {cid}: replay {a.temperature}/{a.stage}/{a.score:.3f}, "
                                   f"worker {b.temperature}/{b.stage}/{b.score:.3f}")
            elif not ordered and not path_same:
                s.order_dependent_state_differs += 1
                differs.add(cid)

        if lost_split:
            s.notes.append(f"{lost_split:,} of the {s.lost_events:,} lost events belong to contacts with a state in "
                           f"two partitions (the worker did not route their inputs to one partition)")
        records = [codec.decode("LifecycleChange", m.value) for m in await self.read_all(t["LEADPULSE_LIFECYCLE_TOPIC"])]
        unique = {r["change_id"]: r for r in records}
        s.lifecycle_expected, s.lifecycle_published = len(expected[True]) + len(expected[False]), len(records)
        s.lifecycle_duplicates = len(records) - len(unique)
        ids: dict[bool, set[str]] = {True: set(), False: set()}
        published_moves: dict[bool, Counter] = {True: Counter(), False: Counter()}
        for r in unique.values():
            ordered = in_order.get(r["contact_id"], True)  # a contact nobody sent anything for: gated
            ids[ordered].add(r["change_id"])
            published_moves[ordered][(r["contact_id"], r["kind"], r["from_value"], r["to_value"])] += 1
        s.lifecycle_transitions_missing = sum((moves[True] - published_moves[True]).values())
        s.lifecycle_missing = len(expected[True] - ids[True])
        s.lifecycle_spurious = len(ids[True] - expected[True])
        missing_od, spurious_od = expected[False] - ids[False], ids[False] - expected[False]
        s.order_dependent_change_ids_missing, s.order_dependent_change_ids_spurious = len(missing_od), len(spurious_od)
        moved_od = (moves[False] - published_moves[False]) + (published_moves[False] - moves[False])
        s.order_dependent_transitions_differing = sum(moved_od.values())
        differs |= {key[0] for key in moved_od}
        differs |= {unique[i]["contact_id"] for i in spurious_od}
        differs |= {owner[i] for i in missing_od}
        s.order_dependent_contacts_differing = len(differs)
        s.notes += [f"order-dependent: {cid} (not gated)" for cid in sorted(differs)[:2]]

        letters = [codec.decode("DeadLetter", m.value) for m in await self.read_all(t["LEADPULSE_DLQ_TOPIC"])]
        s.dlq = len(letters)
        where = {(d["source_partition"], d["source_offset"]) for d in letters
                 if d["source_topic"] == t["LEADPULSE_EVENTS_TOPIC"]}
        missing = set(self.poison_at) - where
        s.dlq_poison_missing = len(missing)
        s.notes += [f"not in the dead-letter topic: {self.poison_at[k]} at partition {k[0]} offset {k[1]}"
                    for k in sorted(missing)[:5]]
        s.dlq_valid_events = len(where - set(self.poison_at))
        s.dlq_duplicates = len(letters) - len({(d["source_topic"], d["source_partition"], d["source_offset"])
                                                for d in letters})
        s.dlq_reasons = dict(Counter(d["error_class"] for d in letters))

    async def run(self) -> Summary:
        p, s = self.p, self.summary
        started = time.monotonic()
        rnd = random.Random(p.seed)
        clients = random.Random(f"leadpulse-chaos-clients-{p.seed}")
        plan = producer_plan(p.contacts, p.producers)
        now = int(time.time() * 1000)
        try:
            await asyncio.to_thread(self.start_broker)
            await asyncio.to_thread(self.start_workers)
            via = f", workers through the fault proxy {self.worker_bootstrap}" if self.link else ""
            self.log(f"broker {self.bootstrap}{via}, {p.workers} workers ready; profiles for {p.contacts:,} contacts")
            profile_records = [(k, v, None) for k, v in profiles(p.contacts, now - DAY, rnd)]
            await self.produce_all(self.topics["LEADPULSE_PROFILES_TOPIC"], assign_clients(profile_records, plan, clients))
            if await self.wait_drained(120):
                raise RuntimeError("the workers did not consume the profiles within 120 s (before any fault)")
            batch = [(k, v, None) for k, v in events(p.events, p.contacts, now - p.events * 10, rnd)]
            bad = poison(p.poison, p.contacts, now, rnd)
            for item in bad:
                batch.insert(rnd.randrange(len(batch) + 1), item)
            s.events_sent, s.poison_sent = p.events, len(bad)
            produce_s = len(batch) / p.rate
            schedule = fault_schedule(p, produce_s)
            s.schedule = [asdict(f) for f in schedule]
            counts = ", ".join(f"{n} {k}" for k, n in schedule_counts(schedule).items())
            self.log(f"producing {p.events:,} events + {len(bad):,} malformed at {p.rate:,.0f}/s (~{produce_s:.0f} s) "
                     f"with producers {p.producers}; faults (seed {p.seed}): {counts}")
            for f in schedule:
                if f.kind != KILL:
                    self.log(f"  {f.describe()}")
            supervisor = asyncio.create_task(self.supervise())
            produce_started = time.monotonic()
            fault_task = asyncio.create_task(self.faults_loop(schedule, produce_started))
            try:
                await self.produce_all(self.topics["LEADPULSE_EVENTS_TOPIC"], assign_clients(batch, plan, clients),
                                       rate=p.rate)
                await fault_task
            finally:
                fault_task.cancel()
            sent_at = time.monotonic()
            self.log("all sent; waiting for the workers to drain")
            try:
                behind = await self.wait_drained(p.drain_timeout_s)
            finally:
                supervisor.cancel()
            s.drain_s = time.monotonic() - sent_at
            s.undrained_offsets = sum(end - at for at, end in behind.values())
            s.notes += [f"not drained in {p.drain_timeout_s:g} s: {tp.topic}[{tp.partition}] committed {at:,} of {end:,}"
                        for tp, (at, end) in sorted(behind.items())]
            if behind:
                self.log(f"not drained in {p.drain_timeout_s:g} s ({s.undrained_offsets:,} input offsets); "
                         f"verifying what the workers did")
            await self.verify()
        finally:
            s.notes += [f"{n}× a worker exited by itself, {why}" for why, n in self.crashes.most_common()]
            for w in self.workers:
                w.stop()
            if self.broker is not None:
                await asyncio.to_thread(self.broker.stop)
            if self.proxy is not None:
                self.proxy.stop()
        if p.fuzz:
            s.fuzz_inputs, escapes = fuzz_decoder(p.fuzz, p.seed)
            s.fuzz_escapes = len(escapes)
            s.notes += [e for e in escapes[:5] if e]
        s.faults = dict(self.faults)
        s.sent_by = dict(self.sent_by)
        s.undelivered = len(self.send_errors)
        if self.send_errors:
            s.notes.append(f"confluent-kafka could not deliver {len(self.send_errors):,} records "
                           f"({Counter(self.send_errors).most_common(1)[0][0]}); its log: "
                           f"{self.workdir / 'confluent-kafka.log'}")
        s.wall_s = time.monotonic() - started
        return s


def run(profile: str | Profile = "short", workdir: Path | None = None, log=print, **overrides) -> Summary:
    p = RUNS[profile] if isinstance(profile, str) else profile
    p = Profile(**{**asdict(p), **overrides})
    name = profile if isinstance(profile, str) else "custom"
    own_dir = workdir is None
    workdir = workdir or ROOT / ".leadpulse" / f"chaos-{os.getpid()}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    summary = asyncio.run(Run(p, name, workdir, log).run())
    if summary.ok and own_dir and not summary.undelivered:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not summary.ok:
        summary.notes.append(f"broker data and worker logs kept in {workdir}")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=sorted(RUNS), default="full")
    ap.add_argument("--guarantee", choices=("at_least_once", "exactly_once"))
    ap.add_argument("--seed", type=int, help="draws the inputs and the fault schedule (default 1)")
    ap.add_argument("--events", type=int)
    ap.add_argument("--rate", type=float)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--broker-restarts", type=int)
    ap.add_argument("--fuzz", type=int, help="decoder fuzz inputs (0: none)")
    ap.add_argument("--kill-every", type=float, help="seconds between worker SIGKILLs (0: none)")
    ap.add_argument("--producers", choices=PRODUCERS, help="which client sends whose inputs (default mixed)")
    ap.add_argument("--blackout", type=float, help="seconds of the one blackout (0: none)")
    ap.add_argument("--no-network", action="store_true", help="workers talk to the broker directly: no proxy, "
                                                               "no latency, resets or blackout")
    ap.add_argument("--json", type=Path, help="also write the summary here")
    a = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the broker, proxy and workers this run started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The broker restart and the network faults are deliberate: the clients' reconnect errors are
    # expected, not news.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    overrides = {k: v for k, v in (("guarantee", a.guarantee), ("seed", a.seed), ("events", a.events),
                                   ("rate", a.rate), ("workers", a.workers), ("broker_restarts", a.broker_restarts),
                                   ("kill_every_s", a.kill_every), ("fuzz", a.fuzz), ("producers", a.producers),
                                   ("blackout_s", a.blackout)) if v is not None}
    if a.no_network:
        overrides["network"] = False
    try:
        summary = run(a.profile, log=lambda m: print(m, flush=True), **overrides)
    except (FaultProxyError, ValueError) as exc:
        print(f"chaos: error: {exc}", file=sys.stderr)
        return 2
    print(summary.table())
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(asdict(summary), indent=2))
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
