"""The chaos tool's pure parts: the fault schedule drawn from the seed, who sends what, the
in-order test behind the lifecycle gates, and which counts are gates."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from tools import chaos

NETWORK = (chaos.LATENCY, chaos.RESET, chaos.BLACKOUT, chaos.SLICER)


def _windows(schedule):
    return sorted((f.at_s, f.at_s + f.duration_s) for f in schedule if f.kind in NETWORK)


@pytest.mark.parametrize("name, produce_s", [("short", 12_400 / 400), ("full", 210_000 / 1_000)])
def test_the_schedule_is_a_function_of_the_seed_and_has_every_fault_asked_for(name, produce_s):
    p = chaos.RUNS[name]
    a, b = chaos.fault_schedule(p, produce_s), chaos.fault_schedule(p, produce_s)
    assert a == b
    assert chaos.fault_schedule(replace(p, seed=2), produce_s) != a
    counts = chaos.schedule_counts(a)
    assert counts[chaos.BLACKOUT] == 1 and counts[chaos.RESET] == p.resets
    assert counts[chaos.LATENCY] == p.latency_periods and counts.get(chaos.SLICER, 0) == p.slicer_periods
    assert counts[chaos.RESTART] == p.broker_restarts and counts[chaos.KILL] >= 2
    assert all(0 < f.at_s and f.at_s + f.duration_s < produce_s for f in a)
    lo, hi = p.latency_ms
    assert all(lo <= f.latency_ms <= hi and 0 < f.jitter_ms <= f.latency_ms / 2 for f in a if f.kind == chaos.LATENCY)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10_000), produce_s=st.floats(210, 400))
def test_network_faults_never_overlap_and_the_blackout_is_seen_alone(seed, produce_s):
    p = replace(chaos.RUNS["full"], seed=seed)
    schedule = chaos.fault_schedule(p, produce_s)
    windows = _windows(schedule)
    assert all(end <= start for (_, end), (start, _) in zip(windows, windows[1:]))
    (blackout,) = [f for f in schedule if f.kind == chaos.BLACKOUT]
    start, end = blackout.at_s, blackout.at_s + blackout.duration_s
    assert not [f for f in schedule if f.kind == chaos.KILL and start <= f.at_s <= end + 3.0]
    assert all(f.at_s >= end + 2.0 or f.at_s + chaos.RESTART_TAKES_S <= start
               for f in schedule if f.kind == chaos.RESTART)


def test_no_network_means_no_network_fault_and_too_little_time_is_a_clear_error():
    p = chaos.RUNS["short"]
    quiet = chaos.fault_schedule(replace(p, network=False), 31.0)
    assert {f.kind for f in quiet} == {chaos.KILL, chaos.RESTART}
    with pytest.raises(ValueError, match="do not fit"):
        chaos.fault_schedule(replace(p, blackout_s=40.0), 31.0)


def test_mixed_producers_split_a_third_of_the_contacts_over_both_clients():
    plan = chaos.producer_plan(3_000, "mixed")
    assert [plan.count(m) for m in ("aiokafka", "confluent", "both")] == [1_000] * 3
    records = [(f"c{i % 3_000}".encode(), b"v", None) for i in range(120_000)] + [(b"c0", b"bad", "random_bytes")]
    sent = chaos.assign_clients(records, plan, random.Random(1))
    by_contact: dict[bytes, set] = {}
    for key, _, kind, client in sent:
        if not kind:
            by_contact.setdefault(key, set()).add(client)
    assert sent[-1][3] == "aiokafka"  # malformed ones: always aiokafka
    assert {k for k, v in by_contact.items() if len(v) == 2} == {f"c{i}".encode() for i in range(3_000) if i % 3 == 2}
    assert set(chaos.producer_plan(10, "aiokafka")) == {"aiokafka"}
    assert set(chaos.producer_plan(10, "per-contact")) == {"aiokafka", "confluent"}
    with pytest.raises(ValueError, match="producers"):
        chaos.producer_plan(10, "kafka-python")


@pytest.mark.parametrize("placed, expected", [
    ([], True),
    ([(3, 2, 10), (1, 2, 4), (7, 2, 11)], True),  # one partition, offsets in send order
    ([(1, 2, 4), (3, 2, 3)], False),  # one partition, sent 1 then 3 but 3 landed first
    ([(1, 2, 4), (3, 5, 9)], False),  # two partitions: the order the worker meets them is open
])
def test_a_contact_is_in_order_when_one_partition_holds_its_events_in_send_order(placed, expected):
    assert chaos.in_send_order(placed) is expected


def test_order_dependent_differences_are_reported_not_gated_and_duplicates_gate_exactly_once_only():
    s = chaos.Summary(profile="short", guarantee="at_least_once", order_dependent_contacts=40,
                      order_dependent_contacts_differing=9, order_dependent_state_differs=3,
                      order_dependent_transitions_differing=12, order_dependent_change_ids_missing=7,
                      order_dependent_change_ids_spurious=5, lifecycle_duplicates=4, dlq_duplicates=3)
    assert s.ok and "PASS" in s.table()
    assert replace(s, guarantee="exactly_once").failed() == ["duplicate lifecycle records 4", "duplicate dead letters 3"]
    for gate in ("lost_events", "contacts_score_differs", "contacts_split_state", "contacts_mismatched",
                 "lifecycle_missing", "lifecycle_spurious", "lifecycle_transitions_missing", "blackout_leaks",
                 "dlq_poison_missing", "dlq_valid_events", "fuzz_escapes", "extra_events"):
        failed = replace(s, **{gate: 1})
        assert not failed.ok and "FAIL" in failed.table(), gate


@pytest.mark.parametrize("name, produce_s", [("short", 12_400 / 400), ("full", 210_000 / 1_000)])
def test_every_seed_gets_a_schedule_for_the_shipped_profiles(name, produce_s):
    for seed in range(300):
        assert chaos.fault_schedule(replace(chaos.RUNS[name], seed=seed), produce_s)
