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

from aiokafka import AIOKafkaProducer
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


def dataset(n_events: int, n_contacts: int, seed: int = 7, span_days: float = 20.0) -> list[tuple[bytes, bytes]]:
    """`n_events` Avro behaviour events (Confluent framing) over `n_contacts`, keyed by contact."""
    rnd = random.Random(seed)
    codec = AvroCodec()
    kinds = [k for k in EVENT_MIX for _ in range(k[1])]
    now = int(time.time() * 1000)
    span = int(span_days * 86_400_000)
    out = []
    for i in range(n_events):
        cid = f"contact-{rnd.randrange(n_contacts)}"
        etype, _, props = rnd.choice(kinds)
        rec = {"event_id": f"ev-{seed}-{i}", "contact_id": cid, "anonymous_id": None, "event_type": etype,
               "occurred_at": now - rnd.randrange(span), "source": "bench", "properties": props}
        out.append((cid.encode(), codec.encode("BehaviourEvent", rec)))
    return out


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
    from aiokafka import AIOKafkaConsumer

    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await c.start()
        try:
            ends = await c.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
            return sum(ends.values())
        finally:
            await c.stop()
    return asyncio.run(run())
