"""Hypothesis properties of the core: order independence, idempotence, decay, hysteresis,
explanations, persistence, batching."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring import EVENT_TYPES, BehaviourEvent, ScoringModel, default_rules
from scoring.lifecycle import TEMPERATURES, next_temperature, temperature_band

from .helpers import DAY, HOUR, T0, oracle, profile

RULES = default_rules()
MODEL = ScoringModel(RULES)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PROPS = {
    "page_view": [{}, {"url": "/"}, {"url": "/pricing"}, {"url": "/careers"}, {"url": "/customers/x"},
                  {"url": "/compare/rival"}],
    "content_download": [{}, {"asset_type": "whitepaper"}, {"asset_type": "ebook"}],
    "email_bounce": [{}, {"bounce": "hard"}, {"bounce": "soft"}],
    "form_submit": [{}, {"form": "contact-sales"}, {"form": "newsletter"}],
}
PROFILES = [None, profile(), profile(email="x@gmail.com"), profile(email="cmo@globex.example",
                                                                  title="Chief Marketing Officer", size=300,
                                                                  industry="Software", country="FR")]


@st.composite
def event_lists(draw, max_size=40, span=6 * DAY):
    """Events of one contact, all within the late tolerance of each other (so any order is accepted)."""
    n = draw(st.integers(1, max_size))
    out = []
    for i in range(n):
        et = draw(st.sampled_from(EVENT_TYPES))
        props = draw(st.sampled_from(PROPS.get(et, [{}])))
        off = draw(st.one_of(st.integers(0, span), st.integers(0, HOUR)))
        out.append(BehaviourEvent(f"e{i}", "c1", et, T0 + off, props))
    return out


def start(prof):
    if prof is None:
        return None
    return MODEL.apply_profile(None, prof)[0]


def apply_all(state, events):
    return MODEL.apply_events(state, events)


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@SETTINGS
@given(event_lists(), st.randoms(use_true_random=False), st.sampled_from(PROFILES))
def test_order_independence(events, rnd, prof):
    shuffled = events[:]
    rnd.shuffle(shuffled)
    a, _ = apply_all(start(prof), events)
    b, _ = apply_all(start(prof), shuffled)
    at = T0 + 7 * DAY
    sa, sb = MODEL.snapshot(a, at), MODEL.snapshot(b, at)
    assert close(sa.score, sb.score) and close(sa.engagement, sb.engagement)
    assert sa.explanation.keys() == sb.explanation.keys()
    assert all(close(sa.explanation[k], sb.explanation[k]) for k in sa.explanation)
    assert set(a.seen) == set(b.seen) and a.wm == b.wm
    e, _ = oracle(RULES, events, at)
    assert close(sa.engagement, e)


@SETTINGS
@given(event_lists(), st.lists(st.integers(0, 10_000), max_size=20))
def test_duplicates_count_once(events, picks):
    once, _ = apply_all(None, events)
    with_dups = list(events)
    for p in picks:  # redeliveries, anywhere after the original
        e = events[p % len(events)]
        first = with_dups.index(e)
        with_dups.insert(first + 1 + p % (len(with_dups) - first), e)
    twice, _ = apply_all(None, with_dups)
    assert twice == once
    again, changes = apply_all(once, events)
    assert again == once and changes == []


@SETTINGS
@given(event_lists(), st.integers(0, 400 * DAY), st.integers(1, 400 * DAY), st.sampled_from(PROFILES))
def test_monotone_decay_between_events(events, d1, step, prof):
    s, _ = apply_all(start(prof), events)
    t1 = s.as_of + d1
    t2 = t1 + step
    e1, e2 = MODEL.score_at(s, t1) - s.fit, MODEL.score_at(s, t2) - s.fit
    if e1 > 0:
        assert 0 <= e2 <= e1
    elif e1 < 0:
        assert e1 <= e2 <= 0
    assert abs(e2) <= abs(e1) + 1e-12


@SETTINGS
@given(st.sampled_from(TEMPERATURES), st.lists(st.floats(-200, 200), min_size=1, max_size=50))
def test_no_flapping_inside_the_hysteresis_band(temp, scores):
    lo, hi = temperature_band(temp, RULES.temperature)
    inside = [min(max(x, lo), math.nextafter(hi, -math.inf)) for x in scores]
    cur = temp
    for x in inside:
        cur = next_temperature(cur, x, RULES.temperature)
    assert cur == temp  # wandering inside the band never changes the temperature


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(EVENT_TYPES), st.integers(0, 3 * DAY)), min_size=1, max_size=60),
       st.sampled_from(PROFILES))
def test_temperature_changes_respect_the_thresholds(steps, prof):
    s = start(prof)
    t = T0
    h = RULES.temperature.hysteresis
    changes = []
    for i, (et, gap) in enumerate(steps):
        t += gap
        s, ch = MODEL.apply_event(s, BehaviourEvent(f"e{i}", "c1", et, t))
        changes += [c for c in ch if c.kind == "temperature"]
    s, ch = MODEL.advance(s, t + 500 * DAY)
    changes += ch
    order = {"cold": 0, "warm": 1, "hot": 2}
    for c in changes:
        if order[c.to_value] > order[c.from_value]:  # heating: at or above the threshold reached
            assert c.score >= (RULES.temperature.hot if c.to_value == "hot" else RULES.temperature.warm) - 1e-9
        else:  # cooling: strictly below the threshold minus the hysteresis
            assert c.score < (RULES.temperature.hot if c.from_value == "hot" else RULES.temperature.warm) - h + 1e-9
    for a, b in zip(changes, changes[1:]):  # consecutive changes chain
        assert a.to_value == b.from_value and a.at <= b.at


@SETTINGS
@given(event_lists(max_size=60), st.integers(0, 200 * DAY), st.sampled_from(PROFILES))
def test_contributions_sum_to_the_score(events, later, prof):
    s, changes = apply_all(start(prof), events)
    snap = MODEL.snapshot(s, s.as_of + later)
    assert math.isclose(sum(snap.explanation.values()), snap.score, rel_tol=1e-9, abs_tol=1e-9)
    assert snap.engagement <= RULES.total_cap
    for c in changes:
        assert math.isclose(sum(c.explanation.values()), c.score, rel_tol=1e-9, abs_tol=1e-9)


@SETTINGS
@given(event_lists(span=40 * DAY), st.sampled_from(PROFILES))
def test_encode_decode_round_trip(events, prof):
    rejected = []
    s, _ = MODEL.apply_events(start(prof), events, rejected=rejected)
    if s is None:
        return
    data = MODEL.encode_state(s)
    back = MODEL.decode_state(data)
    assert back == s and MODEL.encode_state(back) == data
    assert MODEL.snapshot(back) == MODEL.snapshot(s)


@SETTINGS
@given(event_lists(span=20 * DAY), st.sampled_from(PROFILES))
def test_batch_is_a_fold_of_single_events(events, prof):
    rejected = []
    batch, cb = MODEL.apply_events(start(prof), events, rejected=rejected)
    s, cs = start(prof), []
    for e in events:
        try:
            s, c = MODEL.apply_event(s, e)
        except ValueError:
            continue
        cs += c
    assert s == batch and cs == cb


@SETTINGS
@given(event_lists(), st.sampled_from(PROFILES))
def test_next_cooling_at_is_the_first_changing_millisecond(events, prof):
    s, _ = apply_all(start(prof), events)
    t = MODEL.next_cooling_at(s)
    if t is None:
        assert MODEL.advance(s, s.as_of + 3650 * DAY)[1] == []
        return
    assert t > s.as_of
    assert MODEL.advance(s, t - 1)[1] == []
    ch = MODEL.advance(s, t)[1]
    assert ch and all(c.at == t and c.cause_event_id is None for c in ch)


@pytest.mark.parametrize("seed", range(3))
def test_late_events_anywhere_in_the_window_match_the_oracle(seed):
    import random
    rnd = random.Random(seed)
    evs = [BehaviourEvent(f"e{i}", "c1", rnd.choice(EVENT_TYPES), T0 + rnd.randrange(30 * DAY),
                          rnd.choice(PROPS.get("page_view"))) for i in range(300)]
    evs.sort(key=lambda e: e.occurred_at + rnd.randrange(6 * DAY))  # arrival up to 6 days late
    s, _ = MODEL.apply_events(None, evs)
    assert math.isclose(MODEL.snapshot(s).engagement, oracle(RULES, evs, s.as_of)[0], rel_tol=1e-9, abs_tol=1e-9)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(EVENT_TYPES), st.integers(0, 20 * DAY), st.integers(0, 100)),
                min_size=1, max_size=30), st.sampled_from(PROFILES))
def test_timers_that_do_not_overtake_events_change_nothing(steps, prof):
    """advance() (a wall-clock timer) emits exactly the changes the next event would have
    emitted for the decay since the last input: same ids, same instants, same final state."""
    t = T0
    events = []
    for i, (et, gap, _) in enumerate(steps):
        t += gap
        events.append(BehaviourEvent(f"e{i}", "c1", et, t))
    plain, plain_changes = MODEL.apply_events(start(prof), events)
    s, changes = start(prof), []
    for e, (_, _, timer) in zip(events, steps):
        if s is not None and timer % 3 == 0:  # a timer fires somewhere before the event
            s, ch = MODEL.advance(s, s.as_of + (e.occurred_at - s.as_of) * timer // 100)
            changes += ch
        s, ch = MODEL.apply_event(s, e)
        changes += ch
    assert [c.change_id for c in changes] == [c.change_id for c in plain_changes]
    assert MODEL.snapshot(s) == MODEL.snapshot(plain)
