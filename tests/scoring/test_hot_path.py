"""The agent's per-batch shortcuts give exactly what the plain API gives: the snapshot as a dict,
the event factory, the one-struct state encoding, the cheap "never cools" answer, the fast
validation path."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring import BehaviourEvent, ContactProfile, InvalidEvent, ScoringModel, default_rules, validate_event
from scoring.events import behaviour_event
from scoring.lifecycle import STAGES, TEMPERATURES
from scoring.rules import GRADES
from scoring.state import unpack

from .helpers import DAY, T0, bant, ev, profile, qual
from .test_properties import PROFILES, event_lists

MODEL = ScoringModel(default_rules())
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOTHING_KNOWN = ContactProfile("c1", None, None, None, None, None, None, T0)  # fit == 0, an int


def as_floats(snap) -> dict:
    """What the agent publishes for a snapshot: its fields, numbers as floats."""
    d = {f.name: getattr(snap, f.name) for f in dataclasses.fields(snap)}
    for k in ("score", "engagement", "fit"):
        d[k] = float(d[k])
    d["explanation"] = {k: float(v) for k, v in snap.explanation.items()}
    return d


def same(a, b) -> bool:
    """Equal values of the same types (0 == 0.0 is not enough), dicts in the same order."""
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def start(prof):
    return None if prof is None else MODEL.apply_profile(None, prof)[0]


@SETTINGS
@given(event_lists(span=20 * DAY), st.sampled_from(PROFILES + [NOTHING_KNOWN]), st.booleans())
def test_snapshot_fields_are_the_snapshot_with_float_numbers(events, prof, decoded):
    s, _ = MODEL.apply_events(start(prof), events, rejected=[])
    if decoded:
        s = MODEL.decode_state(MODEL.encode_state(s))
    assert same(MODEL.snapshot_fields(s), as_floats(MODEL.snapshot(s)))


def test_snapshot_fields_of_an_int_fit():
    s, _ = MODEL.apply_profile(None, NOTHING_KNOWN)
    s, _ = MODEL.apply_events(s, [ev("demo_request", T0 + 1)])
    assert type(s.fit) is int  # the case the float conversions are for
    fields = MODEL.snapshot_fields(s)
    assert same(fields, as_floats(MODEL.snapshot(s)))
    assert all(type(v) is float for v in fields["explanation"].values())


def test_behaviour_event_factory_builds_the_same_frozen_event():
    a = behaviour_event("e1", "c1", "page_view", T0, {"url": "/"}, "web", None)
    b = BehaviourEvent("e1", "c1", "page_view", T0, {"url": "/"}, "web", None)
    assert type(a) is BehaviourEvent and a == b and repr(a) == repr(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.event_id = "x"  # type: ignore[misc]


def reference_pack(s, tag: int) -> bytes:
    """The documented format, header and body packed apart (the encoding before it was one struct)."""
    cid = s.contact_id.encode()
    extra = bool(s.account or s.role)
    head = struct.pack("<BIqqqqddBBBBHHHIB", 2 if extra else 1, tag, s.as_of, s.wm, s.ref, s.profile_at, s.fit, s.total,
                       GRADES.index(s.grade), TEMPERATURES.index(s.temperature), STAGES.index(s.stage), int(s.armed),
                       len(cid), len(s.acc), len(s.buckets), len(s.seen), len(s.criteria))
    nb = len(s.buckets)
    body = struct.pack(f"<{len(cid)}s{len(s.acc)}I{len(s.acc)}d{nb}Q{nb}d{nb}d{'8s' * len(s.seen)}{len(s.seen)}H",
                       cid, *s.acc, *s.acc.values(), *s.buckets, *[v[0] for v in s.buckets.values()],
                       *[v[1] for v in s.buckets.values()], *s.seen, *s.seen.values())
    crit = b"".join(struct.pack(f"<B{len(n)}sH", len(n), n, m) for n, m in
                    ((name.encode(), mask) for name, mask in s.criteria.items()))
    if extra:  # version 2: the account trailer
        account, role = s.account.encode(), s.role.encode()
        crit += struct.pack(f"<HqB{len(account)}s{len(role)}s", len(account), s.account_at, len(role), account, role)
    return head + body + crit


@SETTINGS
@given(event_lists(span=40 * DAY), st.sampled_from(PROFILES), st.booleans())
def test_state_bytes_follow_the_documented_format(events, prof, qualified):
    s, _ = MODEL.apply_events(start(prof), events, rejected=[])
    if qualified:
        s, _ = MODEL.apply_qualification(s, bant(s.as_of, need=False))
    data = MODEL.encode_state(s)
    assert data == reference_pack(s, MODEL._tag)
    back, tag = unpack(data)
    assert tag == MODEL._tag and back.contact_id == s.contact_id and back.seen == s.seen
    assert MODEL.encode_state(MODEL.decode_state(data)) == data


def test_next_cooling_at_with_penalties_and_a_recycled_contact():
    # Negative engagement: the score rises back as penalties fade (the band's upper side).
    s, _ = MODEL.apply_profile(None, profile(email="cmo@globex.example", title="Chief Marketing Officer", size=300,
                                             industry="Software", country="FR"))
    s, _ = MODEL.apply_events(s, [ev("unsubscribe", T0 + 1), ev("email_bounce", T0 + 2, bounce="hard")])
    for state in (s, MODEL.decode_state(MODEL.encode_state(s))):
        t = MODEL.next_cooling_at(state)
        if t is not None:
            assert MODEL.advance(state, t - 1)[1] == [] and MODEL.advance(state, t)[1]
    # A recycled contact, not re-armed yet: falling below the MQL bar is a silent step first.
    s, _ = MODEL.apply_events(None, [ev("demo_request", T0 + i, eid=f"d{i}") for i in range(4)])
    s, _ = MODEL.apply_profile(s, profile(t=T0 + 10))
    s, _ = MODEL.apply_qualification(s, qual("reject", T0 + 20)) if s.stage == "mql" else (s, [])
    t = MODEL.next_cooling_at(s)
    assert t == MODEL.next_cooling_at(MODEL.decode_state(MODEL.encode_state(s)))
    if t is not None:
        assert MODEL.advance(s, t - 1)[1] == [] and MODEL.advance(s, t)[1]


class Id(str):
    pass


class Millis(int):
    pass


@pytest.mark.parametrize("event, field", [
    (BehaviourEvent(Id("e1"), Id("c1"), "page_view", Millis(T0)), None),  # subclasses: valid, as before
    (BehaviourEvent(Id(" "), "c1", "page_view", T0), "event_id"),
    (BehaviourEvent("e1", "c1", "page_view", True), "occurred_at"),  # type: ignore[arg-type]
    (BehaviourEvent("e1", "c1", ["page_view"], T0), "event_type"),  # type: ignore[arg-type]  # unhashable
    (BehaviourEvent("e1", "c1", "page_view", T0, {}, "", 5), "anonymous_id"),  # type: ignore[arg-type]
])
def test_validation_outside_the_common_case(event, field):
    if field is None:
        validate_event(event, T0)
        return
    with pytest.raises(InvalidEvent) as ei:
        validate_event(event, T0)
    assert ei.value.field == field
