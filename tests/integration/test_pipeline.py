"""The full pipeline on a real broker with real worker processes: the journey, dead letters, erasure,
cooling without events, failover between workers, and recovery after SIGKILL without double counting.

Expected values always come from the pure scoring core applied offline to the same inputs."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from scoring import BehaviourEvent, ContactProfile, QualificationUpdate, ScoringModel, default_rules, load_rules
from tests.support import Worker, codec, consume, decoder, event, produce, topic_env, wait_group_stable

pytestmark = pytest.mark.kafka
HOUR = 3_600_000
model = ScoringModel(default_rules())


def now_ms() -> int:
    return int(time.time() * 1000)


def profile(contact_id: str, at: int, **fields) -> tuple[bytes, bytes]:
    rec = dict(contact_id=contact_id, email="ana@acme-robotics.com", job_title="VP Marketing", company="Acme",
               company_size=800, industry="software", country="FR", updated_at=at)
    rec.update(fields)
    return contact_id.encode(), codec.encode("ContactProfile", rec)


def bant(contact_id: str, at: int) -> tuple[bytes, bytes]:
    return contact_id.encode(), codec.encode("QualificationUpdate", dict(
        update_id=f"bant-{contact_id}", contact_id=contact_id, action="criteria", framework="BANT",
        criteria={"budget": True, "authority": True, "need": True, "timeline": True}, occurred_at=at, reason=""))


def as_domain(name: str, value: bytes):
    rec = codec.decode(name, value)
    if name == "BehaviourEvent":
        return BehaviourEvent(**rec)
    if name == "ContactProfile":
        return ContactProfile(**rec)
    return QualificationUpdate(**rec)


def expected_changes(inputs: list[tuple[str, bytes]], m: ScoringModel = model):
    """(kind, from, to) of every change the core makes on these inputs, in order."""
    state, out = None, []
    for name, value in inputs:
        obj = as_domain(name, value)
        if name == "BehaviourEvent":
            state, changes = m.apply_event(state, obj)
        elif name == "ContactProfile":
            state, changes = m.apply_profile(state, obj)
        else:
            state, changes = m.apply_qualification(state, obj)
        out += [(c.kind, c.from_value, c.to_value) for c in changes]
    return state, out


def expected_score(events: list[tuple[bytes, bytes]]) -> float:
    state, _ = model.apply_events(None, [as_domain("BehaviourEvent", v) for _, v in events])
    return model.snapshot(state).score


async def wait_for(predicate, timeout: float = 30.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        await asyncio.sleep(every)
    return predicate()


def dedup(changes: list[dict]) -> list[dict]:
    seen, out = set(), []
    for c in changes:
        if c["change_id"] not in seen:
            seen.add(c["change_id"])
            out.append(c)
    return out


@pytest.fixture
def names(unique):
    return topic_env(unique)


@pytest.fixture
def worker(kafka_bootstrap, unique, tmp_path):
    w = Worker(kafka_bootstrap, unique, tmp_path).start()
    w.wait_ready()
    yield w
    w.stop()


async def test_the_brief_journey_end_to_end(kafka_bootstrap, names, worker):
    t0 = now_ms() - 40 * HOUR
    cid = "journey-1"
    prof = profile(cid, t0, job_title="Marketing manager", company_size=150)
    journey = [
        event(cid, "j-1", "content_download", t0 + 1 * HOUR, asset_type="whitepaper"),
        event(cid, "j-2", "webinar_signup", t0 + 2 * HOUR),
        event(cid, "j-3", "webinar_attended", t0 + 3 * HOUR),
        event(cid, "j-4", "pricing_page_view", t0 + 20 * HOUR, url="/pricing"),
        event(cid, "j-5", "pricing_page_view", t0 + 21 * HOUR, url="/pricing"),
        event(cid, "j-6", "demo_request", t0 + 22 * HOUR),
    ]
    qual = bant(cid, t0 + 30 * HOUR)
    await produce(kafka_bootstrap, names["LEADPULSE_PROFILES_TOPIC"], [prof])
    await asyncio.sleep(1.0)  # the profile first, as a CRM sync would do
    await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"], journey)

    def staged(stage):
        return lambda got: any(c["kind"] == "stage" and c["to_value"] == stage for c in got)

    got = await consume(kafka_bootstrap, names["LEADPULSE_LIFECYCLE_TOPIC"], staged("mql"),
                        timeout=40, decode=decoder("LifecycleChange"))
    assert staged("mql")(got), f"no MQL in {got}\n{worker.log_text()[-3000:]}"
    await produce(kafka_bootstrap, names["LEADPULSE_QUALIFICATIONS_TOPIC"], [qual])
    got = await consume(kafka_bootstrap, names["LEADPULSE_LIFECYCLE_TOPIC"], staged("sql"),
                        timeout=40, decode=decoder("LifecycleChange"))
    published = [(c["kind"], c["from_value"], c["to_value"]) for c in dedup(got)]

    inputs = [("ContactProfile", prof[1])] + [("BehaviourEvent", v) for _, v in journey] + [("QualificationUpdate", qual[1])]
    state, expected = expected_changes(inputs)
    assert published == expected
    assert ("temperature", "warm", "hot") in published and ("stage", "mql", "sql") in published
    for c in got:
        assert abs(sum(c["explanation"].values()) - c["score"]) < 1e-6
        assert c["rules_version"] == model.rules.version

    status, body = worker.get_json(f"/contacts/{cid}")
    assert status == 200
    snap = model.snapshot(state)
    assert body["stage"] == "sql" and body["temperature"] == snap.temperature
    assert body["score"] == pytest.approx(snap.score, abs=1e-6)
    assert body["grade"] == snap.grade
    assert set(body["explanation"]) == set(snap.explanation)
    assert worker.get_json("/contacts/nobody-at-all")[0] == 404


async def test_bad_input_goes_to_the_dead_letter_topic(kafka_bootstrap, names, worker):
    now = now_ms()
    good = event("dlq-ok", "ok-1", "webinar_signup", now)
    bad = [
        (b"dlq-1", b"\x13\x37 not avro at all"),
        (b"dlq-2", b"\x00\x00\x00\x03\xe7" + good[1][5:]),  # unknown schema id 999
        event("dlq-3", "e-3", "unknown", now),  # an event type this reader resolves to `unknown`
        event("", "e-4", "page_view", now),
        event("dlq-5", "e-5", "page_view", now + 2 * 24 * HOUR),
    ]
    await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"], bad + [good])
    letters = await consume(kafka_bootstrap, names["LEADPULSE_DLQ_TOPIC"], lambda got: len(got) >= 5,
                            timeout=30, decode=decoder("DeadLetter"))
    assert len(letters) == 5, letters
    by_key = {d["original_key"]: d for d in letters}
    assert by_key[b"dlq-1"]["error_class"] == "WireFormatError"
    assert by_key[b"dlq-2"]["error_class"] == "UnknownSchemaError"
    assert (by_key[b"dlq-3"]["error_class"], by_key[b"dlq-3"]["field"]) == ("InvalidEvent", "event_type")
    assert (by_key[b""]["error_class"], by_key[b""]["field"]) == ("InvalidEvent", "contact_id")
    assert (by_key[b"dlq-5"]["error_class"], by_key[b"dlq-5"]["field"]) == ("InvalidEvent", "occurred_at")
    originals = {k: v for k, v in bad}
    for d in letters:
        assert d["original_value"] == originals[d["original_key"]]  # nothing lost, byte for byte
        assert d["source_topic"] == names["LEADPULSE_EVENTS_TOPIC"] and d["source_offset"] >= 0
        assert d["reason"]
    status, body = await wait_for(lambda: (r := worker.get_json("/contacts/dlq-ok"))[0] == 200 and r)
    assert body["score"] == pytest.approx(expected_score([good]))


async def test_erasure_forgets_the_contact(kafka_bootstrap, names, worker):
    now = now_ms()
    cid = "erase-me"
    await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"],
                  [event(cid, "er-1", "demo_request", now - 1000), event(cid, "er-2", "free_trial_signup", now - 900)])
    assert await wait_for(lambda: worker.get_json(f"/contacts/{cid}")[0] == 200)
    erase = codec.encode("EraseRequest", {"request_id": "gdpr-1", "contact_id": cid, "requested_at": now})
    await produce(kafka_bootstrap, names["LEADPULSE_ERASURES_TOPIC"], [(cid.encode(), erase)])

    def tombstoned(got):
        return any(m.key == cid.encode() and m.value is None for m in got)
    scores = await consume(kafka_bootstrap, names["LEADPULSE_SCORES_TOPIC"], tombstoned, timeout=30)
    assert tombstoned(scores)
    changes = await consume(kafka_bootstrap, names["LEADPULSE_LIFECYCLE_TOPIC"],
                            lambda got: any(c["kind"] == "erasure" for c in got), decode=decoder("LifecycleChange"))
    erasure = next(c for c in changes if c["kind"] == "erasure")
    assert erasure["contact_id"] == cid and erasure["to_value"] == "erased"
    assert worker.get_json(f"/contacts/{cid}")[0] == 404
    # Later events start from nothing: the erased demo request and trial count for nothing.
    later = event(cid, "er-3", "page_view", now + 1000, url="/blog")
    await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"], [later])
    status, body = await wait_for(lambda: (r := worker.get_json(f"/contacts/{cid}"))[0] == 200 and r)
    assert body["score"] == pytest.approx(expected_score([later]))


async def test_a_silent_hot_lead_cools_with_no_new_event(kafka_bootstrap, unique, tmp_path):
    names = topic_env(unique)
    rules_text = (Path(__file__).resolve().parents[2] / "scoring" / "default_rules.toml").read_text()
    rules_text = rules_text.replace("half_life_days = 30", "half_life_days = 0.01", 1)  # ~14 minutes
    rules_text = rules_text.replace("late_tolerance_days = 7", "late_tolerance_days = 0.01", 1)
    assert "half_life_days = 0.01" in rules_text and "late_tolerance_days = 0.01" in rules_text
    rules_path = tmp_path / "fast-decay.toml"
    rules_path.write_text(rules_text)
    fast = ScoringModel(load_rules(rules_path))
    w = Worker(kafka_bootstrap, unique, tmp_path, extra_env={
        "LEADPULSE_RULES": str(rules_path), "LEADPULSE_COOLING_INTERVAL_S": "0.2"}).start()
    try:
        w.wait_ready()
        # Place the events in the past so that the decayed score falls out of "hot" a few seconds
        # from now: the worker must announce it with no event arriving.
        cid, kinds = "cools-down", ["demo_request", "free_trial_signup", "pricing_page_view"]
        probe, _ = fast.apply_events(None, [as_domain("BehaviourEvent", event(cid, f"c-{i}", t, 10**12)[1])
                                            for i, t in enumerate(kinds)])
        hot_for = fast.next_cooling_at(probe) - 10**12
        at = now_ms() + 6000 - hot_for
        events = [event(cid, f"c-{i}", t, at) for i, t in enumerate(kinds)]
        state, changes = fast.apply_events(None, [as_domain("BehaviourEvent", v) for _, v in events])
        assert changes[-1].to_value == "hot"
        due = fast.next_cooling_at(state)
        await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"], events)

        def cooled(got):
            return any(c["kind"] == "temperature" and c["from_value"] == "hot" for c in got)
        got = await consume(kafka_bootstrap, names["LEADPULSE_LIFECYCLE_TOPIC"], cooled, timeout=40,
                            decode=decoder("LifecycleChange"))
        assert cooled(got), f"{got}\n{w.log_text()[-3000:]}"
        change = next(c for c in got if c["from_value"] == "hot")
        assert change["to_value"] == "warm" and change["cause_event_id"] is None
        # Announced at the instant the core predicted: the change carries that instant as its time,
        # and it arrived within the timer's resolution (plus publishing) of it.
        assert change["at"] == due
        assert now_ms() - due < 10_000
    finally:
        w.stop()


def journeys(n_contacts: int, per_contact: int, seed: int, t0: int, prefix: str = "") -> list[tuple[bytes, bytes]]:
    rnd = random.Random(seed)
    types = ["page_view", "email_click", "content_download", "webinar_signup", "pricing_page_view", "email_open"]
    out = []
    for c in range(n_contacts):
        for i in range(per_contact):
            out.append(event(f"{prefix}c{c}", f"{prefix}c{c}-{seed}-{i}", rnd.choice(types),
                             t0 + rnd.randrange(0, 10 * HOUR), url="/docs"))
    rnd.shuffle(out)  # out of order on purpose: the scores must not care
    return out


def by_contact(events: list[tuple[bytes, bytes]]) -> dict[str, list[tuple[bytes, bytes]]]:
    out: dict[str, list] = {}
    for k, v in events:
        out.setdefault(k.decode(), []).append((k, v))
    return out


async def all_scored(w: Worker, expected: dict[str, float], timeout: float = 45.0) -> dict[str, float]:
    """Poll the lookup API until every contact shows its expected score; return what differs."""
    deadline = time.monotonic() + timeout
    pending = dict(expected)
    while pending and time.monotonic() < deadline:
        for cid, score in list(pending.items()):
            status, body = w.get_json(f"/contacts/{cid}")
            if status == 200 and abs(body["score"] - score) < 1e-6:
                del pending[cid]
        if pending:
            await asyncio.sleep(0.5)
    return {cid: (w.get_json(f"/contacts/{cid}")[1].get("score"), want) for cid, want in pending.items()}


def ready_within(w: Worker, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if w.ready():
            return True
        time.sleep(0.5)
    return False


async def test_the_other_worker_takes_over_with_state_intact(kafka_bootstrap, unique, tmp_path):
    names = topic_env(unique)
    w1 = Worker(kafka_bootstrap, unique, tmp_path, name="w1").start()
    w2 = Worker(kafka_bootstrap, unique, tmp_path, name="w2").start()
    try:
        w1.wait_ready()
        w2.wait_ready()
        wait_group_stable([w1, w2])
        t0 = now_ms() - 12 * HOUR
        first = journeys(40, 5, seed=1, t0=t0)
        await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"], first)
        want = {cid: expected_score(evs) for cid, evs in by_contact(first).items()}
        assert await all_scored(w1, want) == {}  # lookups are routed to whichever worker owns the contact
        w2.stop()
        second = journeys(40, 3, seed=2, t0=t0)
        await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"], second)
        want = {cid: expected_score(evs) for cid, evs in by_contact(first + second).items()}
        time.sleep(3)  # w2 has left the group; w1 is rebalancing and restoring its partitions
        # The partitions taken over are restored by the worker itself before Faust's recovery looks
        # (streams.compat, patch 4), so that recovery has nothing left to wait for: no stall.
        assert ready_within(w1, 45), w1.log_text()[-3000:]
        assert await all_scored(w1, want, timeout=60) == {}, w1.log_text()[-3000:]
    finally:
        w1.stop()
        w2.stop()


async def test_sigkill_then_restart_recovers_from_the_changelog_without_double_counting(kafka_bootstrap, unique, tmp_path):
    names = topic_env(unique)
    w = Worker(kafka_bootstrap, unique, tmp_path, name="k1").start()
    try:
        w.wait_ready()
        t0 = now_ms() - 12 * HOUR
        first = journeys(30, 6, seed=3, t0=t0)
        await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"], first)
        want = {cid: expected_score(evs) for cid, evs in by_contact(first).items()}
        assert await all_scored(w, want) == {}
        w.kill()
        # A new data directory: the state can only come back from the changelog topic.
        w = Worker(kafka_bootstrap, unique, tmp_path, name="k2").start()
        w.wait_ready()
        second = journeys(30, 2, seed=4, t0=t0)
        # The producer retries: every first-round event is delivered again along with the new ones.
        await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"], first + second)
        want = {cid: expected_score(evs) for cid, evs in by_contact(first + second).items()}
        assert await all_scored(w, want, timeout=60) == {}, w.log_text()[-3000:]
    finally:
        w.stop()
