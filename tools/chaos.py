"""Fault injection on the real local broker: prove that nothing is lost and nothing counts twice.

A run starts its own KRaft broker and 2–3 workers, feeds them profiles and then behaviour events
at a steady rate with malformed messages mixed in, SIGKILLs a random worker every few seconds
(restarting it at once), restarts the broker once, and when everything has drained compares
what the workers did with an offline recomputation by the scoring core from the input log:

* every contact's final state (from the table's changelog) against the core's replay of that
  contact's inputs: events lost, events counted twice, score mismatches;
* every lifecycle change the replay says must happen against the ``lead-lifecycle`` topic:
  missing, spurious, and duplicates per ``change_id`` (zero duplicates under exactly_once with a
  read_committed consumer);
* every malformed message against the dead-letter topic: each one there, with its reason, and no
  valid event in it.

``make chaos`` runs the full profile (``python -m tools.chaos``); ``tests/chaos`` runs the short
one inside ``make test``. The decoder fuzzer (``fuzz_decoder``) runs in the same command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
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
from tools.runtime import ROOT, Worker, topic_env, wait_group_stable

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


RUNS = {
    "full": Profile(events=200_000, contacts=10_000, rate=1_000, workers=3, kill_every_s=5.0,
                    broker_restarts=1, poison=10_000, fuzz=1_000_000),
    "short": Profile(events=12_000, contacts=1_500, rate=400, workers=2, kill_every_s=4.0,
                     broker_restarts=1, poison=400, fuzz=20_000),
}


@dataclass
class Summary:
    profile: str
    guarantee: str
    events_sent: int = 0
    contacts: int = 0
    poison_sent: int = 0
    faults: dict = field(default_factory=dict)
    lost_events: int = 0
    double_counted_contacts: int = 0
    extra_events: int = 0
    contacts_mismatched: int = 0
    lifecycle_expected: int = 0
    lifecycle_published: int = 0
    lifecycle_missing: int = 0
    lifecycle_spurious: int = 0
    lifecycle_duplicates: int = 0
    lifecycle_transitions_missing: int = 0
    dlq: int = 0
    dlq_poison_missing: int = 0
    dlq_valid_events: int = 0
    dlq_reasons: dict = field(default_factory=dict)
    fuzz_inputs: int = 0
    fuzz_escapes: int = 0
    wall_s: float = 0.0
    drain_s: float = 0.0
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        dup_ok = self.lifecycle_duplicates == 0 if self.guarantee == "exactly_once" else True
        return (self.lost_events == 0 and self.double_counted_contacts == 0 and self.extra_events == 0
                and self.contacts_mismatched == 0 and self.lifecycle_transitions_missing == 0
                and self.lifecycle_missing == 0 and self.lifecycle_spurious == 0 and dup_ok
                and self.dlq_poison_missing == 0
                and self.dlq_valid_events == 0 and self.fuzz_escapes == 0)

    def table(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        rows = [
            ("profile / guarantee", f"{self.profile} / {self.guarantee}"),
            ("events sent (contacts)", f"{self.events_sent:,} ({self.contacts:,})"),
            ("malformed messages sent", f"{self.poison_sent:,}"),
            ("faults injected", faults),
            ("events lost", f"{self.lost_events:,}"),
            ("events counted twice (contacts)", f"{self.double_counted_contacts:,}"),
            ("events counted that were never sent", f"{self.extra_events:,}"),
            ("contacts whose state differs", f"{self.contacts_mismatched:,}"),
            ("lifecycle changes expected / published", f"{self.lifecycle_expected:,} / {self.lifecycle_published:,}"),
            ("lifecycle transitions missing", f"{self.lifecycle_transitions_missing:,}"),
            ("lifecycle change_ids missing / spurious", f"{self.lifecycle_missing:,} / {self.lifecycle_spurious:,}"),
            ("duplicate lifecycle records (same change_id)", f"{self.lifecycle_duplicates:,}"),
            ("dead letters (malformed missing, valid ones)", f"{self.dlq:,} ({self.dlq_poison_missing}, {self.dlq_valid_events})"),
            ("dead letters by error", ", ".join(f"{k} {v}" for k, v in sorted(self.dlq_reasons.items())) or "-"),
            ("decoder fuzz inputs (escapes)", f"{self.fuzz_inputs:,} ({self.fuzz_escapes})"),
            ("wall time (drain after last event)", f"{self.wall_s:.0f} s ({self.drain_s:.0f} s)"),
            ("verdict", "PASS" if self.ok else "FAIL"),
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
        self.summary = Summary(profile=name, guarantee=p.guarantee, contacts=p.contacts)
        self.faults: Counter = Counter()
        self.workers: list[Worker] = []
        self.broker = None
        self.bootstrap = ""
        self.poison_at: dict[tuple[int, int], str] = {}  # (partition, offset) → kind
        self.producing = True
        self.crashes: Counter = Counter()  # why workers exited by themselves
        self.killed: set[str] = set()

    # broker and workers
    def start_broker(self) -> None:
        from streams.localkafka import LocalKafka

        self.broker = LocalKafka(state_dir=self.workdir / "kafka")
        self.bootstrap = self.broker.start()

    def restart_broker(self) -> None:
        self.broker.stop()
        time.sleep(1.0)
        self.broker.start()
        self.faults["broker restart"] += 1

    def start_workers(self) -> None:
        for i in range(self.p.workers):
            w = Worker(self.bootstrap, self.suffix, self.workdir, name=f"w{i + 1}", extra_env=self.env)
            self.workers.append(w.start())
        for w in self.workers:
            w.wait_ready(120)
        wait_group_stable(self.workers, timeout=120)

    def kill_one(self, rnd: random.Random) -> None:
        """SIGKILL a random worker; the supervisor starts it again."""
        w = rnd.choice(self.workers)
        self.killed.add(w.name)
        w.kill()
        self.faults["worker SIGKILL"] += 1

    async def faults_loop(self, rnd: random.Random, produce_s: float) -> None:
        """While events are produced: a worker SIGKILLed every `kill_every_s`, the broker restarted
        at evenly spaced instants."""
        started = time.monotonic()
        restarts_at = [produce_s * (k + 1) / (self.p.broker_restarts + 1) for k in range(self.p.broker_restarts)]
        while self.producing:
            await asyncio.sleep(self.p.kill_every_s)
            if not self.producing:
                break
            if restarts_at and time.monotonic() - started >= restarts_at[0]:
                restarts_at.pop(0)
                await asyncio.to_thread(self.restart_broker)
            else:
                await asyncio.to_thread(self.kill_one, rnd)

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
                    reason = next((line for line in reversed(w.log_text().splitlines()) if any(
                        mark in line for mark in ("Crashed reason=", "leadpulse: error:", "stopping the worker"))), "")
                    self.faults["worker exited by itself (restarted)"] += 1
                    self.crashes[f"exit {w.proc.returncode}: {reason.split('] ', 3)[-1][:240]}"] += 1
                    w.start()

    # producing
    def producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True, linger_ms=5,
                                max_request_size=BIG + 1024 * 1024, request_timeout_ms=120_000)

    async def produce_now(self, topic: str, records) -> None:
        producer = self.producer()
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send(topic, key=k, value=v) for k, v in records])
        finally:
            await producer.stop()

    async def produce_steadily(self, topic: str, records: list) -> None:
        """At `rate` records/s; malformed ones (with a kind) are remembered by partition and offset."""
        producer = self.producer()
        await producer.start()
        try:
            step = 0.05
            per_step = max(1, int(self.p.rate * step))
            started = time.monotonic()
            pending = []
            for i in range(0, len(records), per_step):
                for key, value, kind in records[i:i + per_step]:
                    fut = await producer.send(topic, key=key, value=value)
                    if kind:
                        fut.add_done_callback(lambda f, kind=kind: self.poison_at.__setitem__(
                            (f.result().partition, f.result().offset), kind) if not f.exception() else None)
                    pending.append(fut)
                delay = started + (i // per_step + 1) * step - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(pending) > 5000:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    async def wait_drained(self, timeout: float) -> None:
        """Until the group has committed every input offset and the outputs have stopped moving."""
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
            while time.monotonic() < deadline:
                ends = await consumer.end_offsets(tps)
                committed = await admin.list_consumer_group_offsets(group)
                behind = sum(max(0, ends[tp] - (committed[tp].offset if tp in committed else 0)) for tp in tps)
                out = await consumer.end_offsets(out_tps)
                if behind == 0 and out == last_out:
                    still_since = still_since or time.monotonic()
                    if time.monotonic() - still_since >= 3.0:
                        return
                else:
                    still_since = None
                last_out = out
                await asyncio.sleep(0.5)
            raise TimeoutError(f"inputs not drained in {timeout:.0f}s ({behind} offsets behind)")
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
        s = self.summary
        model = ScoringModel(default_rules())
        t = self.topics
        inputs: dict[str, list] = defaultdict(list)
        where: dict[bytes, str] = {}  # event-id hash → what to name in a note
        for m in await self.read_all(t["LEADPULSE_PROFILES_TOPIC"]):
            p = to_domain(PROFILES, codec.decode("ContactProfile", m.value))
            inputs[p.contact_id].append(p)
        for m in sorted(await self.read_all(t["LEADPULSE_EVENTS_TOPIC"]), key=lambda m: (m.partition, m.offset)):
            if (m.partition, m.offset) in self.poison_at:
                continue
            e = to_domain(EVENTS, codec.decode("BehaviourEvent", m.value))
            inputs[e.contact_id].append(e)
            where[event_hash(e.event_id)] = f"{e.event_id} ({e.contact_id}, partition {m.partition} offset {m.offset})"

        changelog = f"{self.env['LEADPULSE_APP_ID']}-contacts-changelog"
        final = {}
        for m in await self.read_all(changelog):
            final[m.key.decode()] = m.value
        expected_changes: set[str] = set()
        expected_moves: Counter = Counter()  # (contact, kind, from, to): the transitions, whatever their instant
        for cid, items in inputs.items():
            rejected: list = []
            state, changes = model.apply_inputs(None, items, rejected=rejected)
            got = final.get(cid)
            worker = model.decode_state(got) if got is not None else None
            if worker is not None and worker.as_of > state.as_of:
                state, more = model.advance(state, worker.as_of)
                changes += more
            expected_changes.update(c.change_id for c in changes)
            expected_moves.update((c.contact_id, c.kind, c.from_value, c.to_value) for c in changes)
            want_seen = set(state.seen)
            have_seen = set(worker.seen) if worker is not None else set()
            s.lost_events += len(want_seen - have_seen)
            s.notes += [f"lost: event {where.get(h, h.hex())}" for h in list(want_seen - have_seen)[:3]]
            s.extra_events += len(have_seen - want_seen)
            if worker is None:
                s.contacts_mismatched += 1
                continue
            a, b = model.snapshot(state), model.snapshot(worker)
            same = (a.temperature, a.stage, a.grade) == (b.temperature, b.stage, b.grade) and abs(a.score - b.score) <= 1e-6
            if not same:
                s.contacts_mismatched += 1
                if want_seen == have_seen and b.score > a.score:
                    s.double_counted_contacts += 1

        records = [codec.decode("LifecycleChange", m.value) for m in await self.read_all(t["LEADPULSE_LIFECYCLE_TOPIC"])]
        published = [r["change_id"] for r in records]
        ids = set(published)
        moves = Counter((r["contact_id"], r["kind"], r["from_value"], r["to_value"])
                        for r in {r["change_id"]: r for r in records}.values())
        s.lifecycle_transitions_missing = sum((expected_moves - moves).values())
        s.lifecycle_expected, s.lifecycle_published = len(expected_changes), len(published)
        s.lifecycle_missing = len(expected_changes - ids)
        s.lifecycle_spurious = len(ids - expected_changes)
        s.lifecycle_duplicates = len(published) - len(ids)

        letters = [codec.decode("DeadLetter", m.value) for m in await self.read_all(t["LEADPULSE_DLQ_TOPIC"])]
        s.dlq = len(letters)
        where = {(d["source_partition"], d["source_offset"]) for d in letters
                 if d["source_topic"] == t["LEADPULSE_EVENTS_TOPIC"]}
        missing = set(self.poison_at) - where
        s.dlq_poison_missing = len(missing)
        s.notes += [f"not in the dead-letter topic: {self.poison_at[k]} at partition {k[0]} offset {k[1]}"
                    for k in sorted(missing)[:5]]
        s.dlq_valid_events = len(where - set(self.poison_at))
        s.dlq_reasons = dict(Counter(d["error_class"] for d in letters))

    async def run(self) -> Summary:
        p, s = self.p, self.summary
        started = time.monotonic()
        rnd = random.Random(p.seed)
        now = int(time.time() * 1000)
        await asyncio.to_thread(self.start_broker)
        try:
            await asyncio.to_thread(self.start_workers)
            self.log(f"broker {self.bootstrap}, {p.workers} workers ready; profiles for {p.contacts:,} contacts")
            await self.produce_now(self.topics["LEADPULSE_PROFILES_TOPIC"], profiles(p.contacts, now - DAY, rnd))
            await self.wait_drained(120)
            batch = [(k, v, None) for k, v in events(p.events, p.contacts, now - p.events * 10, rnd)]
            bad = poison(p.poison, p.contacts, now, rnd)
            for item in bad:
                batch.insert(rnd.randrange(len(batch) + 1), item)
            s.events_sent, s.poison_sent = p.events, len(bad)
            produce_s = len(batch) / p.rate
            self.log(f"producing {p.events:,} events + {len(bad):,} malformed at {p.rate:,.0f}/s (~{produce_s:.0f} s),"
                     f" a worker SIGKILLed every {p.kill_every_s:g} s, {p.broker_restarts} broker restart(s)")
            supervisor = asyncio.create_task(self.supervise())
            fault_task = asyncio.create_task(self.faults_loop(rnd, produce_s))
            await self.produce_steadily(self.topics["LEADPULSE_EVENTS_TOPIC"], batch)
            self.producing = False
            await fault_task
            sent_at = time.monotonic()
            self.log("all sent; waiting for the workers to drain")
            await self.wait_drained(600)
            s.drain_s = time.monotonic() - sent_at
            supervisor.cancel()
            await self.verify()
        finally:
            s.notes += [f"{n}× a worker exited by itself, {why}" for why, n in self.crashes.most_common()]
            for w in self.workers:
                w.stop()
            await asyncio.to_thread(self.broker.stop)
        if p.fuzz:
            s.fuzz_inputs, escapes = fuzz_decoder(p.fuzz, p.seed)
            s.fuzz_escapes = len(escapes)
            s.notes += [e for e in escapes[:5] if e]
        s.faults = dict(self.faults)
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
    if summary.ok and own_dir:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not summary.ok:
        summary.notes.append(f"broker data and worker logs kept in {workdir}")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=sorted(RUNS), default="full")
    ap.add_argument("--guarantee", choices=("at_least_once", "exactly_once"))
    ap.add_argument("--events", type=int)
    ap.add_argument("--rate", type=float)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--broker-restarts", type=int)
    ap.add_argument("--fuzz", type=int, help="decoder fuzz inputs (0: none)")
    ap.add_argument("--kill-every", type=float, help="seconds between worker SIGKILLs")
    ap.add_argument("--json", type=Path, help="also write the summary here")
    a = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the broker and workers this run started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The broker restart is deliberate: the clients' reconnect errors are expected, not news.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    overrides = {k: v for k, v in (("guarantee", a.guarantee), ("events", a.events), ("rate", a.rate),
                                   ("workers", a.workers), ("broker_restarts", a.broker_restarts),
                                   ("kill_every_s", a.kill_every), ("fuzz", a.fuzz)) if v is not None}
    summary = run(a.profile, log=lambda m: print(m, flush=True), **overrides)
    print(summary.table())
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(asdict(summary), indent=2))
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
