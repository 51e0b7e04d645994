"""The short fault run inside `make test` (the full one is `make chaos`), and the chaos tool's own
parts: every kind of malformed input is dead-lettered, and the fuzzer does report what escapes."""

from __future__ import annotations

import random

import pytest

from agents.pipeline import EVENTS, Pipeline, RawMessage
from scoring import ScoringModel, default_rules
from streams.codec import AvroCodec, DecodeError
from tools import chaos


class GatesFailed(Exception):
    """The run's verdict: a gate is not 0 (the table says which). Only this is expected to fail
    below; a harness assertion (a fault not injected, a client not used) fails for real."""


def _gates(summary: chaos.Summary) -> None:
    if not summary.ok:
        raise GatesFailed(summary.table())


def _short_run(tmp_path, guarantee: str) -> chaos.Summary:
    """The short profile: kills, a broker restart and, between the workers and the broker, latency,
    connection resets and a 10 s blackout; producers with both partitioners, a third of the
    contacts through both. Its table is printed (pytest shows it on failure, -s always)."""
    summary = chaos.run("short", workdir=tmp_path, guarantee=guarantee, log=print)
    print(summary.table())
    injected = summary.faults
    assert injected.get("worker SIGKILL", 0) >= 2 and injected.get("broker restart") == 1, summary.table()
    assert injected.get("blackout (10 s)") == 1 and injected.get("connection reset") == 2, summary.table()
    assert injected.get("latency period") == 1, summary.table()
    assert summary.sent_by.get("confluent", 0) > 4_000 and summary.sent_by.get("aiokafka", 0) > 4_000
    assert summary.lifecycle_expected > 100 and summary.contacts_in_order > 500, summary.table()
    return summary


@pytest.mark.kafka
@pytest.mark.slow
def test_faults_lose_nothing_and_count_nothing_twice_under_at_least_once(tmp_path):
    """Every gate of `make chaos` (Summary.gates: nothing lost, nothing counted twice or never sent,
    every score equal to the replay's, one state per contact, the lifecycle of every in-order
    contact exactly the replay's, every malformed message dead-lettered and no valid one, the
    blackout really silent, the decoder fuzz clean). Redelivered lifecycle records are allowed
    (same change_id), and order-dependent differences are only reported (README, Faults)."""
    _gates(_short_run(tmp_path, "at_least_once"))


@pytest.mark.kafka
@pytest.mark.slow
def test_faults_lose_nothing_and_duplicate_nothing_under_exactly_once(tmp_path):
    """The same, under exactly_once: also no lifecycle record and no dead letter twice for a
    read_committed consumer."""
    _gates(_short_run(tmp_path, "exactly_once"))


def test_every_kind_of_malformed_message_is_dead_lettered_with_its_reason():
    now = 1_800_000_000_000
    bad = chaos.poison(len(chaos.POISON_KINDS) * 3, 10, now, random.Random(3))
    assert {k for _, _, k in bad} == set(chaos.POISON_KINDS)
    assert max(len(v) for _, v, _ in bad) > chaos.BIG
    p = Pipeline(AvroCodec(), ScoringModel(default_rules()), {}, kinds={"ev": EVENTS}, clock=lambda: now)
    out = p.process([RawMessage("ev", 0, i, k, v) for i, (k, v, _) in enumerate(bad)])
    assert len(out.dead_letters) == len(bad) and not out.lifecycle and not out.scores
    codec = AvroCodec()
    reasons = {kind: codec.decode("DeadLetter", rec.value) for rec, (_, _, kind) in zip(out.dead_letters, bad)}
    assert reasons["future_timestamp"]["field"] == "occurred_at"
    assert reasons["empty_contact_id"]["field"] == "contact_id"
    assert reasons["empty_event_id"]["field"] == "event_id"
    assert reasons["unknown_schema"]["error_class"] == "UnknownSchemaError"
    assert reasons["wrong_magic"]["error_class"] == "WireFormatError"
    assert "trailing bytes" in reasons["oversized"]["reason"]


def test_the_fuzzer_finds_nothing_in_the_decoder_and_reports_what_escapes(monkeypatch):
    n, escapes = chaos.fuzz_decoder(20_000, seed=5)
    assert (n, escapes) == (20_000, [])

    real = chaos.codec.decode

    def leaky(name, data):  # a decoder with a bug: an IndexError on short bodies
        if len(data) < 8:
            raise IndexError("short")
        return real(name, data)

    monkeypatch.setattr(chaos.codec, "decode", leaky)
    _, escapes = chaos.fuzz_decoder(2_000, seed=5)
    assert escapes and "IndexError" in escapes[0]
    with pytest.raises(DecodeError):
        real("BehaviourEvent", b"\x00")
