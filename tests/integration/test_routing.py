"""Producers partition as they like; every contact still has one state, one owner, one lookup.

librdkafka (confluent-kafka, and the Go/.NET/node clients built on it) hashes keys with CRC32 by
default, the Java client, Kafka's tools and aiokafka with murmur2, and a keyless producer spreads a
contact over every partition. Here profiles come from aiokafka, events from confluent-kafka with its
default partitioner (some keyless), against two real workers; the expectations come from the pure
scoring core offline."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import confluent_kafka
import pytest
from aiokafka import AIOKafkaConsumer

from scoring import BehaviourEvent, ContactProfile, ScoringModel, default_rules, load_rules
from streams.routing import murmur2_partition
from tests.support import Worker, codec, consume, decoder, event, produce, start_workers, topic_env

pytestmark = pytest.mark.kafka
HOUR = 3_600_000
PARTITIONS = 4


def now_ms() -> int:
    return int(time.time() * 1000)


def profile(cid: str, at: int) -> tuple[bytes, bytes]:
    return cid.encode(), codec.encode("ContactProfile", dict(
        contact_id=cid, email=f"{cid}@acme-robotics.com", job_title="VP Marketing", company="Acme",
        company_size=800, industry="software", country="FR", updated_at=at))


def produce_with_librdkafka(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> list[int]:
    """confluent-kafka as users run it: default partitioner (consistent_random: CRC32 of the key,
    random for a null key), idempotent. Returns the partition each record landed in."""
    landed: list[int] = []
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                         "linger.ms": 5})

    def delivered(err, msg):
        assert err is None, err
        landed.append(msg.partition())

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
    assert producer.flush(30) == 0
    return landed


async def latest_by_key(bootstrap: str, topic: str) -> dict[bytes, list[tuple[int, bytes | None]]]:
    """Every (partition, value) a topic holds per key, read to its end."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, isolation_level="read_committed")
    await consumer.start()
    seen: dict[bytes, dict[int, bytes | None]] = {}
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()) or
                                          [tp for tp in await _tps(consumer, topic)])
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            for msgs in batch.values():
                for m in msgs:
                    seen.setdefault(m.key, {})[m.partition] = m.value
            positions = {tp: await consumer.position(tp) for tp in ends}
            if all(positions[tp] >= end for tp, end in ends.items()):
                break
    finally:
        await consumer.stop()
    return {k: sorted(v.items()) for k, v in seen.items()}


async def _tps(consumer, topic):
    from aiokafka.structs import TopicPartition

    parts = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in parts]


def as_event(value: bytes) -> BehaviourEvent:
    return BehaviourEvent(**codec.decode("BehaviourEvent", value))


def expected(model: ScoringModel, prof: tuple[bytes, bytes], events: list[tuple[bytes | None, bytes]]):
    state, _ = model.apply_profile(None, ContactProfile(**codec.decode("ContactProfile", prof[1])))
    state, _ = model.apply_events(state, [as_event(v) for _, v in events])
    return state


async def test_mixed_partitioners_give_one_state_per_contact_and_lookups_that_find_it(kafka_bootstrap, unique, tmp_path):
    names = topic_env(unique)
    env = {"LEADPULSE_PARTITIONS": str(PARTITIONS)}
    w1, w2 = start_workers(kafka_bootstrap, unique, tmp_path, ("r1", "r2"), env)
    try:
        model = ScoringModel(default_rules())
        t0 = now_ms() - 20 * HOUR
        contacts = [f"mix-{i}" for i in range(24)]
        profiles = {cid: profile(cid, t0) for cid in contacts}
        events = {cid: [event(cid, f"{cid}-e{j}", kind, t0 + j * HOUR, url="/pricing")
                        for j, kind in enumerate(["content_download", "webinar_signup", "pricing_page_view"])]
                  for cid in contacts}
        # The profiles through aiokafka (murmur2), the events through librdkafka (CRC32); every third
        # contact's last event keyless (a random partition).
        await produce(kafka_bootstrap, names["LEADPULSE_PROFILES_TOPIC"], list(profiles.values()))
        records = []
        for i, cid in enumerate(contacts):
            for j, (key, value) in enumerate(events[cid]):
                records.append((None if i % 3 == 0 and j == 2 else key, value))
        landed = await asyncio.to_thread(produce_with_librdkafka, kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"],
                                         records)
        keyed = [(k, p) for (k, _), p in zip(records, landed) if k is not None]
        assert any(p != murmur2_partition(k, PARTITIONS) for k, p in keyed), "CRC32 should misplace some"

        want = {cid: expected(model, profiles[cid], events[cid]) for cid in contacts}
        deadline = time.monotonic() + 60
        pending = set(contacts)
        while pending and time.monotonic() < deadline:
            for cid in sorted(pending):
                status, body = (w1 if hash(cid) % 2 else w2).get_json(f"/contacts/{cid}")
                snap = model.snapshot(want[cid])
                if status == 200 and abs(body["score"] - snap.score) < 1e-6 and body["fit"] == pytest.approx(snap.fit):
                    pending.discard(cid)
            await asyncio.sleep(0.5)
        assert not pending, f"not scored with fit and every event: {sorted(pending)}\n{w1.log_text()[-2000:]}"

        # One state per contact: one key in exactly one partition of the changelog and of the scores
        # topic — the owner partition murmur2 gives — with the fit of the profile and every event.
        # (A lookup reads the newest state before its snapshot is on the topic: wait for the topics.)
        def settled(changelog, scores) -> list[str]:
            wrong = []
            for cid in contacts:
                key, snap = cid.encode(), model.snapshot(want[cid])
                owner = murmur2_partition(key, PARTITIONS)
                if [p for p, _ in changelog.get(key, [])] != [owner] or [p for p, _ in scores.get(key, [])] != [owner]:
                    wrong.append(f"{cid}: changelog {changelog.get(key)} scores {[p for p, _ in scores.get(key, [])]}")
                    continue
                got = codec.decode("ScoreSnapshot", scores[key][0][1])
                if abs(got["score"] - snap.score) > 1e-6 or abs(got["fit"] - snap.fit) > 1e-6:
                    wrong.append(f"{cid}: snapshot score {got['score']} fit {got['fit']}, want {snap.score} {snap.fit}")
            return wrong

        deadline = time.monotonic() + 30
        while True:
            wrong = settled(await latest_by_key(kafka_bootstrap, f"{names['LEADPULSE_APP_ID']}-contacts-changelog"),
                            await latest_by_key(kafka_bootstrap, names["LEADPULSE_SCORES_TOPIC"]))
            if not wrong or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        assert not wrong, wrong
        _, metrics = w1.get_json("/health/ready")
        assert metrics["active_partitions"] + w2.get_json("/health/ready")[1]["active_partitions"] == PARTITIONS
    finally:
        w1.stop()
        w2.stop()


async def test_contacts_placed_by_librdkafka_still_cool_on_time_after_a_restart(kafka_bootstrap, unique, tmp_path):
    """After a restart the cooling schedule is rebuilt from each partition's own store, so a contact
    written wherever its producer put it cools at the instant the core predicts."""
    names = topic_env(unique)
    rules_text = (Path(__file__).resolve().parents[2] / "scoring" / "default_rules.toml").read_text()
    rules_text = rules_text.replace("half_life_days = 30", "half_life_days = 0.01", 1)
    rules_text = rules_text.replace("late_tolerance_days = 7", "late_tolerance_days = 0.01", 1)
    rules_path = tmp_path / "fast-decay.toml"
    rules_path.write_text(rules_text)
    fast = ScoringModel(load_rules(rules_path))
    env = {"LEADPULSE_RULES": str(rules_path), "LEADPULSE_COOLING_INTERVAL_S": "0.2",
           "LEADPULSE_PARTITIONS": str(PARTITIONS)}
    w = Worker(kafka_bootstrap, unique, tmp_path, name="c1", extra_env=env).start()
    try:
        w.wait_ready()
        kinds = ["demo_request", "free_trial_signup", "pricing_page_view"]
        probe, _ = fast.apply_events(None, [as_event(event("p", f"p-{i}", k, 10**12)[1]) for i, k in enumerate(kinds)])
        hot_for = fast.next_cooling_at(probe) - 10**12
        at = now_ms() + 25_000 - hot_for  # hot now, cooling ~25 s from now: after the restart below
        contacts = [f"cool-{i}" for i in range(8)]
        records = [event(cid, f"{cid}-{i}", k, at) for cid in contacts for i, k in enumerate(kinds)]
        landed = await asyncio.to_thread(produce_with_librdkafka, kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"],
                                         records)
        assert any(p != murmur2_partition(k, PARTITIONS) for (k, _), p in zip(records, landed))
        due = {}
        for cid in contacts:
            state, changes = fast.apply_events(None, [as_event(v) for k, v in records if k == cid.encode()])
            assert changes[-1].to_value == "hot"
            due[cid] = fast.next_cooling_at(state)

        def hot(got):
            return {c["contact_id"] for c in got if c["to_value"] == "hot"} >= set(contacts)

        got = await consume(kafka_bootstrap, names["LEADPULSE_LIFECYCLE_TOPIC"], hot, timeout=40,
                            decode=decoder("LifecycleChange"))
        assert hot(got), w.log_text()[-3000:]
        w.stop()  # a clean stop, then a start on the same data directory: the schedule is rebuilt
        assert min(due.values()) > now_ms(), "the contacts must still be hot at the restart"
        w.start()
        w.wait_ready()

        def cooled(got):
            return {c["contact_id"] for c in got if c["from_value"] == "hot"} >= set(contacts)

        got = await consume(kafka_bootstrap, names["LEADPULSE_LIFECYCLE_TOPIC"], cooled, timeout=60,
                            decode=decoder("LifecycleChange"))
        assert cooled(got), w.log_text()[-3000:]
        for c in got:
            if c["from_value"] == "hot":
                assert c["at"] == due[c["contact_id"]] and c["cause_event_id"] is None
    finally:
        w.stop()
