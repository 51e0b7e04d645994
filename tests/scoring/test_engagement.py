from __future__ import annotations

import copy
import random
import tomllib
from importlib import resources

import pytest

from scoring import EVENT_TYPES, InvalidEvent, ScoringModel, parse_rules

from .helpers import DAY, HOUR, T0, ev, oracle

REL = 1e-9


def approx(x):
    return pytest.approx(x, rel=REL, abs=1e-9)


def engagement_after(model, events, at=None):
    st, _ = model.apply_events(None, events)
    snap = model.snapshot(st, at)
    return st, snap


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_base_points_per_event_type(model, rules, event_type):
    st, snap = engagement_after(model, [ev(event_type, T0)])
    expected = rules.points.get(event_type, 0)
    assert snap.engagement == approx(expected)
    assert snap.score == approx(expected)  # no profile: fit 0
    assert snap.explanation == ({"fit": 0.0, event_type: approx(expected)} if expected else {"fit": 0.0})


@pytest.mark.parametrize(
    "event_type, props, expected",
    [
        ("page_view", {"url": "https://x.example/pricing"}, {"pricing-page": 15}),  # replace
        ("page_view", {"url": "https://x.example/Pricing/enterprise"}, {"pricing-page": 15}),  # (?i)
        ("page_view", {"url": "https://x.example/fr/tarifs"}, {"pricing-page": 15}),
        ("page_view", {"url": "https://x.example/blog"}, {"page_view": 1}),  # no match: base
        ("page_view", {"referrer": "/pricing"}, {"page_view": 1}),  # other property: base
        ("page_view", {"url": "https://x.example/careers"}, {"careers-page": -10}),  # negative, replace
        ("page_view", {"url": "https://x.example/customers/acme"}, {"case-study-page": 5}),
        ("content_download", {"asset_type": "whitepaper"}, {"content_download": 10, "whitepaper": 5}),  # add
        ("content_download", {"asset_type": "White Paper"}, {"content_download": 10, "whitepaper": 5}),
        ("content_download", {"asset_type": "whitepaper-v2"}, {"content_download": 10}),  # anchored ^...$
        ("form_submit", {"form": "contact-sales"}, {"form_submit": 10, "contact-sales-form": 20}),
        ("email_bounce", {"bounce": "hard"}, {"hard-bounce": -50}),  # replaces the soft -5
        ("email_bounce", {"bounce": "soft"}, {"email_bounce": -5}),
        ("email_bounce", {}, {"email_bounce": -5}),
    ],
)
def test_property_rules(model, event_type, props, expected):
    st, snap = engagement_after(model, [ev(event_type, T0, **props)])
    parts = {k: v for k, v in snap.explanation.items() if k != "fit"}
    assert parts == {k: approx(v) for k, v in expected.items()}
    assert snap.engagement == approx(sum(expected.values()))


def custom_rules(**edits):
    d = tomllib.loads(resources.files("scoring").joinpath("default_rules.toml").read_text(encoding="utf-8"))
    d = copy.deepcopy(d)
    for k, v in edits.items():
        d[k] = v
    return parse_rules(d, source="test")


def test_multiple_matching_rules_all_count_and_replace_drops_base():
    rules = custom_rules(rules=[
        {"name": "a", "event_type": "page_view", "match": {"url": "/x"}, "points": 4},
        {"name": "b", "event_type": "page_view", "match": {"url": "/x/y"}, "points": 6, "replace": True},
        {"name": "bot", "event_type": "email_click", "match": {"ua": "(?i)bot"}, "points": 0, "replace": True},
        {"name": "both", "event_type": "webinar_signup", "match": {"a": "1", "b": "2"}, "points": 7},
    ])
    m = ScoringModel(rules)
    assert engagement_after(m, [ev("page_view", T0, url="/x")])[1].explanation == \
        {"fit": 0, "page_view": approx(1), "a": approx(4)}
    assert engagement_after(m, [ev("page_view", T0, url="/x/y")])[1].explanation == \
        {"fit": 0, "a": approx(4), "b": approx(6)}
    assert engagement_after(m, [ev("email_click", T0, ua="GoogleBot")])[1].engagement == 0  # neutralised
    assert engagement_after(m, [ev("webinar_signup", T0, a="1", b="2")])[1].engagement == approx(17)  # all props
    assert engagement_after(m, [ev("webinar_signup", T0, a="1")])[1].engagement == approx(10)


def test_cap_per_window_same_instant(model):
    st, snap = engagement_after(model, [ev("page_view", T0, url="/p") for _ in range(30)])
    assert snap.engagement == approx(20)  # page views: at most 20 per day
    st, snap = engagement_after(model, [ev("email_open", T0) for _ in range(12)])
    assert snap.engagement == approx(5)


def test_negative_rule_cap_limits_the_penalty(model):
    st, snap = engagement_after(model, [ev("page_view", T0, url="/careers") for _ in range(5)])
    assert snap.explanation["careers-page"] == approx(-20)


def test_cap_windows_are_utc_days(model):
    day_start = T0 - T0 % DAY
    evs = [ev("page_view", day_start + DAY - 1 - i) for i in range(25)] + \
          [ev("page_view", day_start + DAY + i) for i in range(25)]
    st, snap = engagement_after(model, evs, at=day_start + 2 * DAY)
    e, parts = oracle(model.rules, evs, day_start + 2 * DAY)
    assert snap.engagement == approx(e)
    assert e < 40 and e > 35  # two windows of at most 20 each, slightly decayed


def test_cap_is_proportional_and_order_independent(model):
    evs = [ev("page_view", T0 + i * HOUR) for i in range(24 - 9)] * 1 + [ev("page_view", T0 + 30 * 60_000) for _ in range(10)]
    at = T0 + 2 * DAY
    e, _ = oracle(model.rules, evs, at)
    for seed in range(5):
        shuffled = evs[:]
        random.Random(seed).shuffle(shuffled)
        assert engagement_after(model, shuffled, at)[1].engagement == approx(e)


def test_total_cap_and_explanation_sums(model):
    st, snap = engagement_after(model, [ev("demo_request", T0) for _ in range(8)] + [ev("unsubscribe", T0)])
    assert snap.engagement == approx(150)
    assert sum(snap.explanation.values()) == approx(snap.score)
    assert snap.explanation["unsubscribe"] == approx(-25)  # negatives keep their value in the explanation
    assert snap.explanation["demo_request"] == approx(175)


@pytest.mark.parametrize("days, factor", [(0, 1), (30, 0.5), (60, 0.25), (15, 2 ** -0.5), (365, 2 ** (-365 / 30))])
def test_exact_exponential_decay(model, days, factor):
    st, _ = model.apply_event(None, ev("demo_request", T0))
    assert model.snapshot(st, T0 + days * DAY).engagement == approx(30 * factor)


def test_late_event_applied_exactly_within_tolerance(model):
    evs = [ev("webinar_attended", T0), ev("demo_request", T0 + 3 * DAY), ev("pricing_page_view", T0 + DAY)]
    st, _ = model.apply_events(None, evs)
    assert st.as_of == T0 + 3 * DAY  # the late event did not move the clock back
    assert model.snapshot(st).engagement == approx(oracle(model.rules, evs, T0 + 3 * DAY)[0])


def test_event_older_than_late_tolerance_is_rejected(model):
    st, _ = model.apply_event(None, ev("demo_request", T0 + 10 * DAY))
    limit = T0 + 10 * DAY - 7 * DAY
    model.apply_event(st, ev("page_view", limit))  # exactly at the limit: accepted
    with pytest.raises(InvalidEvent) as ei:
        model.apply_event(st, ev("page_view", limit - 1))
    assert (ei.value.field, ei.value.reason) == ("occurred_at", "older than late tolerance")


@pytest.mark.parametrize(
    "bad, field",
    [
        (ev("page_visit", T0), "event_type"),
        (ev("page_view", T0, cid="other"), "contact_id"),
        (ev("page_view", T0, eid=""), "event_id"),
        (ev("page_view", 0), "occurred_at"),
    ],
)
def test_apply_rejects_structurally_invalid_events(model, bad, field):
    st, _ = model.apply_event(None, ev("page_view", T0))
    with pytest.raises(InvalidEvent) as ei:
        model.apply_event(st, bad)
    assert ei.value.field == field


def test_rejected_list_skips_and_reports(model):
    st0, _ = model.apply_event(None, ev("page_view", T0))
    good = [ev("demo_request", T0 + 1), ev("email_click", T0 + 2)]
    bad = ev("page_visit", T0 + 1)
    with pytest.raises(InvalidEvent):
        model.apply_events(st0, [good[0], bad, good[1]])
    rejected = []
    st, _ = model.apply_events(st0, [good[0], bad, good[1]], rejected=rejected)
    assert [(e, r.field) for e, r in rejected] == [(bad, "event_type")]
    assert st == model.apply_events(st0, good)[0]


def test_duplicate_event_counts_once(model):
    e = ev("demo_request", T0)
    st, _ = model.apply_event(None, e)
    st2, changes = model.apply_event(st, e)
    assert st2 is st and changes == []
    st3, _ = model.apply_events(None, [e, e, e])
    assert model.snapshot(st3).engagement == approx(30)


def test_dedup_memory_is_bounded_by_late_tolerance(model):
    st = None
    for day in range(40):
        st, _ = model.apply_events(st, [ev("email_open", T0 + day * DAY + i) for i in range(5)])
        assert len(st.seen) <= 5 * 9  # at most ~tolerance + 1 day of ids
        assert all(((b >> 32) + 1) * DAY > st.wm - 8 * DAY for b in st.buckets)  # old windows folded
    evs_days = 40
    assert len(st.seen) < 5 * evs_days


def test_folding_rebasing_keeps_exact_scores():
    rules = custom_rules(half_life_days=1)  # 1-day half-life: rebases often
    m = ScoringModel(rules)
    evs = []
    for day in range(0, 400, 3):
        evs += [ev("page_view", T0 + day * DAY + i * HOUR) for i in range(30)]
        evs.append(ev("demo_request", T0 + day * DAY + 5 * HOUR))
    st, _ = m.apply_events(None, evs)
    at = st.as_of
    snap = m.snapshot(st)
    e, parts = oracle(rules, evs, at)
    assert snap.engagement == pytest.approx(e, rel=1e-9)
    assert st.ref > T0 + 300 * DAY  # reference instant moved along
    assert snap.engagement > 0


def test_retired_rule_keeps_its_points_under_a_generic_name():
    m_old = ScoringModel(custom_rules(rules=[{"name": "old-rule", "event_type": "page_view", "match": {"url": "/x"},
                                              "points": 7}]))
    st, _ = m_old.apply_event(None, ev("page_view", T0, url="/x"))
    m_new = ScoringModel(custom_rules(rules=[]))
    st2 = m_new.decode_state(m_old.encode_state(st))
    snap = m_new.snapshot(st2)
    assert snap.engagement == approx(8)
    retired = [k for k in snap.explanation if k.startswith("retired:")]
    assert len(retired) == 1 and snap.explanation[retired[0]] == approx(7)


def test_years_of_silence_do_not_overflow():
    m = ScoringModel(custom_rules(half_life_days=0.5))  # 2 half-lives a day: 2**7300 in 10 years
    evs = [ev("demo_request", T0), ev("demo_request", T0 + 3650 * DAY), ev("page_view", T0 + 3650 * DAY - 3 * DAY)]
    st, _ = m.apply_events(None, evs)
    assert m.snapshot(st).engagement == approx(oracle(m.rules, evs, st.as_of)[0])
    assert m.snapshot(st, st.as_of + 3650 * DAY).engagement == 0.0
    assert m.next_cooling_at(st) is None or m.next_cooling_at(st) > st.as_of
