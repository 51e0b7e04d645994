"""The Kafka Streams peer of `make bench`, run as the benchmark runs it (the jar, a real broker), must say
what leadpulse's scoring core says on the base-points-only model: the same final temperature for every
contact, and the same events dead-lettered as late. Otherwise comparing their speed means nothing."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench import jvm_peer
from bench.harness import committed_total, create_topics, encode, events, produce_all, read_latest, read_topic
from streams.codec import AvroCodec

pytestmark = pytest.mark.kafka
PARTITIONS = 4


def peer_input() -> list[dict]:
    """Both inputs of the benchmark on their own contacts: in order with a few late ones, and shuffled
    over 20 days (about 40 % late, every cooling path of the hysteresis taken)."""
    realistic = events(3_000, 300, seed=3, kind="realistic")
    late = events(3_000, 300, seed=4, kind="late")
    for rec in late:
        rec["contact_id"] = "late-" + rec["contact_id"]
        rec["event_id"] = "late-" + rec["event_id"]
    return realistic + late


async def wait_committed(bootstrap: str, group: str, topic: str, total: int, proc, timeout: float) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = await committed_total(admin, group, topic)
            except KafkaError:  # the group's coordinator while the peer joins
                done = 0
            if done >= total:
                break
            await asyncio.sleep(0.2)
        return done
    finally:
        await admin.close()


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once_v2"])
def test_peer_temperatures_equal_the_scoring_core(kafka_bootstrap, unique, tmp_path, guarantee):
    jar = jvm_peer.build()
    records = peer_input()
    want, want_late = jvm_peer.expected(records)
    assert set(want.values()) == {"cold", "warm", "hot"} and want_late > 0  # the comparison is not trivial

    app_id = f"ks-test-{unique}"
    topic, changes, dlq = f"{app_id}-in", f"{app_id}-changes", f"{app_id}-dlq"
    asyncio.run(create_topics(kafka_bootstrap, [topic, changes, dlq], PARTITIONS))
    asyncio.run(produce_all(kafka_bootstrap, topic, encode(records)))
    log = tmp_path / "peer.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(jvm_peer.command(jar, kafka_bootstrap, topic, changes, dlq, app_id, tmp_path / "state",
                                                 guarantee=guarantee),
                                cwd=jvm_peer.ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        done = asyncio.run(wait_committed(kafka_bootstrap, app_id, topic, len(records), proc, timeout=45))
    finally:
        proc.terminate()
        proc.wait(30)
    assert done == len(records), log.read_text()[-3000:]

    latest = asyncio.run(read_latest(kafka_bootstrap, changes, PARTITIONS, timeout=30))
    dead_letters: list = []
    asyncio.run(read_topic(kafka_bootstrap, dlq, PARTITIONS, dead_letters.append, timeout=30))
    codec = AvroCodec()
    result = jvm_peer.check(want, want_late, latest, len(dead_letters), lambda v: codec.decode("LifecycleChange", v))
    assert result["ok"], result
    assert "Stopped: scored" in log.read_text()
