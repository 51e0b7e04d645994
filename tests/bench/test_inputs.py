"""The benchmark's inputs: how many events arrive later than the late tolerance, said by the generator
and by the scoring core itself; and the Kafka Streams peer's check, on made-up outputs."""

from __future__ import annotations

import pytest

from bench import jvm_peer
from bench.harness import encode, events, late_events
from scoring import ScoringModel, default_rules
from scoring.events import BehaviourEvent
from streams.codec import AvroCodec


def core_rejections(records: list[dict]) -> int:
    """Events the scoring core (default rules) refuses when they are applied in produced order."""
    model = ScoringModel(default_rules())
    states: dict = {}
    rejected: list = []
    for rec in records:
        ev = BehaviourEvent(rec["event_id"], rec["contact_id"], rec["event_type"], rec["occurred_at"],
                            rec["properties"], rec["source"], rec["anonymous_id"])
        states[rec["contact_id"]], _ = model.apply_events(states.get(rec["contact_id"]), (ev,), rejected=rejected)
    return len(rejected)


@pytest.mark.parametrize("seed", [7, 11])
@pytest.mark.parametrize("kind, low, high", [("realistic", 0.0, 0.001), ("late", 0.3, 0.5)])
def test_late_share_is_what_the_core_dead_letters(kind, low, high, seed):
    records = events(20_000, 2_000, seed=seed, kind=kind)
    late = late_events(records, default_rules().late_tolerance_ms)
    assert late == core_rejections(records)
    assert low <= late / len(records) <= high


def test_realistic_input_still_has_some_late_events():
    """The 0.1 % re-sent export keeps the dead-letter path loaded in the default run."""
    records = events(50_000, 5_000, kind="realistic")
    assert 0 < late_events(records, default_rules().late_tolerance_ms) < 50


def test_late_input_is_the_one_before_issue_16():
    """Same seed, same draws, same order: runs with --input late compare with the older results."""
    records = events(1_000, 100, seed=7, kind="late")
    times = [r["occurred_at"] for r in records]
    assert times != sorted(times)
    assert [r["event_id"] for r in records] == [f"ev-7-{i}" for i in range(1_000)]


def test_encoded_events_decode_to_the_records():
    records = events(200, 20, kind="realistic")
    codec = AvroCodec()
    for rec, (key, value) in zip(records, encode(records)):
        assert key == rec["contact_id"].encode()
        assert codec.decode("BehaviourEvent", value) == rec


def test_unknown_input_is_refused():
    with pytest.raises(ValueError, match="unknown input"):
        events(10, 2, kind="sorted")


def test_base_points_rules_keep_only_what_the_peer_implements():
    full, base = default_rules(), jvm_peer.base_points_rules()
    assert not base.caps and not base.rules
    assert (base.points, base.half_life_days, base.late_tolerance_days, base.total_cap, base.temperature) == \
        (full.points, full.half_life_days, full.late_tolerance_days, full.total_cap, full.temperature)


def test_check_finds_a_wrong_temperature_and_a_missing_dead_letter():
    codec = AvroCodec()

    def change(cid: str, to: str) -> bytes:
        return codec.encode("LifecycleChange", {
            "change_id": "x", "contact_id": cid, "kind": "temperature", "from_value": "cold", "to_value": to,
            "at": 1, "cause_event_id": None, "score": 1.0, "engagement": 1.0, "fit": 0.0, "grade": "C",
            "explanation": {}, "rules_version": "v"})

    def decode(v):
        return codec.decode("LifecycleChange", v)
    want = {"a": "warm", "b": "cold", "c": "hot"}
    ok = jvm_peer.check(want, 2, {b"a": change("a", "warm"), b"c": change("c", "hot")}, 2, decode)
    assert ok["ok"] and ok["mismatched"] == 0
    wrong = jvm_peer.check(want, 2, {b"a": change("a", "hot"), b"c": change("c", "hot")}, 2, decode)
    assert not wrong["ok"] and wrong["mismatched_examples"] == ["a"]
    short = jvm_peer.check(want, 2, {b"a": change("a", "warm"), b"c": change("c", "hot")}, 1, decode)
    assert not short["ok"]
    stranger = jvm_peer.check(want, 2, {b"a": change("a", "warm"), b"c": change("c", "hot"),
                                        b"z": change("z", "warm")}, 2, decode)
    assert stranger["mismatched_examples"] == ["z"]
