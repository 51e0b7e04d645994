"""Shared benchmark plumbing: a broker, a pre-produced Avro dataset, and a stopwatch on a consumer group.

Throughput is measured from the outside, the way an SRE sees it: the time for a consumer group's
committed offsets to reach the end of the input, with the process's CPU seconds and peak RSS read
from /proc."""

from __future__ import annotations

import asyncio
import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from streams.codec import AvroCodec

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
EVENT_MIX = [  # (event type, weight, properties): a B2B mix, page views dominate
    ("page_view", 40, {"url": "/blog/lead-scoring"}), ("page_view", 5, {"url": "/pricing"}),
    ("email_open", 15, {}), ("email_click", 10, {}), ("content_download", 8, {"asset_type": "whitepaper"}),
    ("webinar_signup", 5, {}), ("webinar_attended", 3, {}), ("newsletter_signup", 3, {}),
    ("pricing_page_view", 4, {"url": "/pricing"}), ("case_study_view", 3, {}), ("form_submit", 2, {}),
    ("demo_request", 1, {}), ("free_trial_signup", 1, {}),
]


@contextmanager
def broker():
    """KAFKA_BOOTSTRAP_SERVERS if set, else the local launcher in its own state dir (stopped after)."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    import shutil

    from streams.localkafka import LocalKafka

    # One broker per benchmark process: two benchmarks must not share (and stop) each other's broker.
    state = ROOT / ".leadpulse" / f"bench-kafka-{os.getpid()}"
    k = LocalKafka(state_dir=state)
    try:
        yield k.start()
    finally:
        k.stop()
        shutil.rmtree(state, ignore_errors=True)


INPUTS = ("realistic", "late")


def events(n_events: int, n_contacts: int, seed: int = 7, span_days: float = 20.0,
           kind: str = "realistic") -> list[dict]:
    """`n_events` behaviour-event records over `n_contacts` (uniform), spread over the last `span_days`
    days of event time, in the order they are produced.

    - "realistic": a live feed replayed. Events are produced in the order they reach the platform:
      event time plus a delivery delay, 97 % within seconds (exponential, mean 2 s: tracking pixels,
      web hooks), 2.9 % up to 6 hours late (hourly syncs of e-mail and webinar platforms), 0.1 % 8 to
      30 days late (a re-sent export). Only that last 0.1 % can be older than the 7-day late tolerance
      relative to its contact's newest event, so the dead-letter share stays below 0.1 %.
    - "late": the input `make bench` used until issue 16, kept to compare with older runs and to load the
      late path: every event at a random instant of the span, produced in random order, so each contact's
      events arrive shuffled over 20 days and about 40 % are more than 7 days older than one already seen.
    """
    if kind not in INPUTS:
        raise ValueError(f"unknown input {kind!r} (expected one of {', '.join(INPUTS)})")
    rnd = random.Random(seed)
    kinds = [k for k in EVENT_MIX for _ in range(k[1])]
    now = int(time.time() * 1000)
    span = int(span_days * 86_400_000)
    out = []
    for i in range(n_events):
        cid = f"contact-{rnd.randrange(n_contacts)}"
        etype, _, props = rnd.choice(kinds)
        out.append({"event_id": f"ev-{seed}-{i}", "contact_id": cid, "anonymous_id": None, "event_type": etype,
                    "occurred_at": now - rnd.randrange(span), "source": "bench", "properties": props})
    if kind == "realistic":
        def arrival(rec: dict) -> float:
            r = rnd.random()
            if r < 0.97:
                delay = rnd.expovariate(1 / 2_000)
            elif r < 0.999:
                delay = rnd.uniform(0, 6 * 3_600_000)
            else:
                delay = rnd.uniform(8 * 86_400_000, 30 * 86_400_000)
            return rec["occurred_at"] + delay
        keyed = [(arrival(rec), rec) for rec in out]
        keyed.sort(key=lambda kv: kv[0])
        out = [rec for _, rec in keyed]
    return out


def late_events(records: list[dict], tolerance_ms: int) -> int:
    """How many of `records`, applied in this order, are older than the late tolerance relative to their
    contact's newest event so far: the rule of the scoring core (`scoring/model.py`), which dead-letters them."""
    newest: dict[str, int] = {}
    late = 0
    for rec in records:
        cid, t = rec["contact_id"], rec["occurred_at"]
        wm = newest.get(cid, 0)
        if t < max(1, wm - tolerance_ms):
            late += 1
        elif t > wm:
            newest[cid] = t
    return late


def encode(records: list[dict]) -> list[tuple[bytes, bytes]]:
    """(key, Confluent-framed Avro value) pairs, keyed by contact."""
    codec = AvroCodec()
    return [(rec["contact_id"].encode(), codec.encode("BehaviourEvent", rec)) for rec in records]


def dataset(n_events: int, n_contacts: int, seed: int = 7, span_days: float = 20.0,
            kind: str = "realistic") -> list[tuple[bytes, bytes]]:
    """`events(...)` encoded: Avro behaviour events (Confluent framing) over `n_contacts`, keyed by contact."""
    return encode(events(n_events, n_contacts, seed, span_days, kind))


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def produce_all(bootstrap: str, topic: str, records, partitions: int | None = None) -> float:
    """Produce (key, value) pairs, keyed; with `partitions`, each to the partition Faust and the
    Java client pick for its key (murmur2), stated explicitly."""
    from aiokafka.partitioner import murmur2

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024,
                                acks=1)
    await producer.start()
    t = time.perf_counter()
    try:
        pending = []
        for k, v in records:
            p = None if partitions is None else (murmur2(k) & 0x7FFFFFFF) % partitions
            pending.append(await producer.send(topic, value=v, key=k, partition=p))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - t


async def read_topic(bootstrap: str, topic: str, partitions: int, on_record, timeout: float = 300.0) -> None:
    """Every committed record of `topic`, from the start to the end offsets taken first, to `on_record`.
    A partition is done when the consumer's position reaches its end offset, so a transaction marker in
    last place (exactly-once writers) ends it too."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         isolation_level="read_committed", max_partition_fetch_bytes=4 * 1024 * 1024)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + timeout
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end offsets in {timeout:.0f} s")
            batch = await c.getmany(timeout_ms=500, max_records=20_000)
            for msgs in batch.values():
                for m in msgs:
                    on_record(m)
            for tp in list(remaining):
                if await c.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await c.stop()


async def read_latest(bootstrap: str, topic: str, partitions: int, timeout: float = 300.0) -> dict[bytes, bytes]:
    """The latest committed value per key of `topic` (a tombstone removes the key)."""
    latest: dict[bytes, bytes] = {}

    def keep(m) -> None:
        if m.value is None:
            latest.pop(m.key, None)
        else:
            latest[m.key] = m.value
    await read_topic(bootstrap, topic, partitions, keep, timeout)
    return latest


@dataclass
class ProcStats:
    cpu_s: float
    peak_rss_mb: float


def proc_stats(pid: int) -> ProcStats:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    rss = 0.0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) / 1024
    return ProcStats(cpu, rss)


async def committed_total(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


async def wait_group_done(bootstrap: str, group: str, topic: str, total: int, timeout: float,
                          pid: int | None = None, poll: float = 0.1) -> dict:
    """Poll the group's committed offsets on `topic` until they sum to `total`. Returns the instant the
    first and the last offset were committed (perf_counter) and the process stats at the end."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        first = None
        deadline = time.perf_counter() + timeout
        before = proc_stats(pid) if pid else None
        done = 0
        while time.perf_counter() < deadline:
            done = await committed_total(admin, group, topic)
            now = time.perf_counter()
            if done > 0 and first is None:
                first = now
            if done >= total:
                after = proc_stats(pid) if pid else None
                return {"first_commit": first, "done": now, "consumed": done,
                        "cpu_s": (after.cpu_s - before.cpu_s) if pid else None,
                        "peak_rss_mb": after.peak_rss_mb if pid else None}
            await asyncio.sleep(poll)
        raise TimeoutError(f"group {group} committed {done} of {total} offsets in {timeout}s")
    finally:
        await admin.close()


def end_offsets_sync(bootstrap: str, topic: str, partitions: int) -> int:
    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await c.start()
        try:
            ends = await c.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
            return sum(ends.values())
        finally:
            await c.stop()
    return asyncio.run(run())
