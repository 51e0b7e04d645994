"""Identity merges in the core: an anonymous visitor's or a duplicate's state folded into the contact
scores exactly as if every event had been the contact's from the start, whatever the order of
links and events, however many anonymous ids; plus the records' validation and the alias marker."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring import EVENT_TYPES, BehaviourEvent, InvalidEvent, ScoringModel, default_rules
from scoring.identity import (
    CONTACT_MERGE, IDENTIFY, alias_target, alias_value, anonymous_contact, contact_merge, identity_link, merge_cause,
)
from scoring.state import FORMAT_VERSION

from .helpers import DAY, HOUR, T0, bant, ev, oracle, profile, qual

RULES = default_rules()
MODEL = ScoringModel(RULES)
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TYPES = [t for t in EVENT_TYPES]


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@st.composite
def identities(draw):
    """Events of one person spread over the contact and up to three anonymous ids (all within the late
    tolerance), some delivered twice; the ids' link instants."""
    n_anon = draw(st.integers(1, 3))
    owners = ["c1"] + [anonymous_contact(f"a{i}") for i in range(n_anon)]
    events = []
    for i in range(draw(st.integers(1, 30))):
        owner = draw(st.sampled_from(owners))
        et = draw(st.sampled_from(TYPES))
        url = draw(st.sampled_from(["/", "/pricing", "/blog/x"]))
        events.append(BehaviourEvent(f"e{i}", owner, et, T0 + draw(st.integers(0, 5 * DAY)),
                                     {"url": url} if et == "page_view" else {}))
    links = {o: T0 + draw(st.integers(0, 6 * DAY)) for o in owners[1:]}
    return owners, events, links


def as_contact(events, cid="c1"):
    return [replace(e, contact_id=cid) for e in events]


def by_owner(events, owner):
    return [e for e in events if e.contact_id == owner]


def assert_same_score(a, b, at):
    sa, sb = MODEL.snapshot(a, at), MODEL.snapshot(b, at)
    assert close(sa.score, sb.score) and close(sa.engagement, sb.engagement), (sa, sb)
    assert {k for k, v in sa.explanation.items() if abs(v) > 1e-12} == {k for k, v in sb.explanation.items()
                                                                         if abs(v) > 1e-12}
    assert all(close(sa.explanation.get(k, 0.0), v) for k, v in sb.explanation.items())
    assert set(a.seen) == set(b.seen)


@SETTINGS
@given(identities(), st.randoms(use_true_random=False))
def test_merging_anonymous_ids_in_any_order_equals_scoring_the_union(case, rnd):
    owners, events, links = case
    union, _ = MODEL.apply_events(None, as_contact(events))
    anon_states = {o: MODEL.apply_events(None, by_owner(events, o))[0] for o in owners[1:]}
    order = owners[1:]
    rnd.shuffle(order)
    contact = MODEL.apply_events(None, by_owner(events, "c1"))[0]
    for o in order:
        if anon_states[o] is not None:
            contact, _ = MODEL.merge(contact, anon_states[o], links[o], merge_cause(o), "c1")
    at = T0 + 8 * DAY
    assert contact is not None and contact.contact_id == "c1"
    assert_same_score(contact, union, at)
    e, _ = oracle(RULES, events, at)
    assert close(MODEL.snapshot(contact, at).engagement, e)


@SETTINGS
@given(identities(), st.integers(0, 30))
def test_a_link_before_the_events_gives_the_same_state_as_one_after(case, cut):
    """Link first: the later anonymous events are the contact's (the worker redirects them); link
    last: their state is merged. Both equal the union, and a table round trip changes nothing."""
    owners, events, links = case
    before = as_contact(events)  # every link at the start: each event arrives as the contact's
    a, _ = MODEL.apply_events(None, before)
    # Links in the middle: events up to `cut` arrive under their own ids and are merged, the rest redirected.
    early, late = events[:cut], events[cut:]
    contact = MODEL.apply_events(None, by_owner(early, "c1"))[0]
    for o in owners[1:]:
        anon = MODEL.apply_events(None, by_owner(early, o))[0]
        if anon is not None:
            contact, _ = MODEL.merge(contact, MODEL.decode_state(MODEL.encode_state(anon)), links[o], "m", "c1")
    b, _ = MODEL.apply_events(contact, as_contact(late))
    assert_same_score(a, b, T0 + 9 * DAY)


@SETTINGS
@given(identities())
def test_events_delivered_again_after_the_merge_count_once(case):
    owners, events, links = case
    anon = MODEL.apply_events(None, by_owner(events, owners[1]))[0]
    if anon is None:
        return
    merged, _ = MODEL.merge(None, anon, links[owners[1]], "m", "c1")
    again, changes = MODEL.apply_events(merged, as_contact(by_owner(events, owners[1])))
    assert again == merged and changes == []


def test_anonymous_pricing_visits_make_the_contact_hot_at_the_merge_with_cause_merge():
    anon = anonymous_contact("v1")
    visits = [ev("pricing_page_view", T0 + i * HOUR, cid=anon, url="/pricing") for i in range(3)]
    visits += [ev("demo_request", T0 + 3 * HOUR, cid=anon)]
    a, changes = MODEL.apply_events(None, visits)
    assert a.temperature == "hot" and a.stage == "lead"  # no profile: no fit grade for MQL
    c, _ = MODEL.apply_profile(None, profile("c1", T0 + 4 * HOUR, title="VP Marketing", size=500,
                                             industry="Software", country="FR"))
    assert c.temperature == "cold"
    merged, changes = MODEL.merge(c, a, T0 + 4 * HOUR, merge_cause("link-1"))
    kinds = [(ch.kind, ch.from_value, ch.to_value, ch.cause_event_id, ch.at) for ch in changes]
    assert ("temperature", "cold", "hot", "merge:link-1", T0 + 4 * HOUR) in kinds
    assert merged.contact_id == "c1" and merged.fit == c.fit
    assert MODEL.snapshot(merged).engagement == pytest.approx(MODEL.snapshot(a, T0 + 4 * HOUR).engagement)


def test_contact_merge_takes_the_newer_profile_unites_answers_and_the_further_stage():
    w, _ = MODEL.apply_profile(None, profile("w", T0, email="x@gmail.com"))
    lo, _ = MODEL.apply_profile(None, profile("lo", T0 + DAY, title="VP Marketing", size=500,
                                              industry="Software", country="FR"))
    lo, _ = MODEL.apply_events(lo, [ev("demo_request", T0 + DAY, cid="lo"), ev("free_trial_signup", T0 + DAY, cid="lo"),
                                    ev("pricing_page_view", T0 + DAY, cid="lo", url="/pricing")])
    assert lo.stage == "mql"
    lo, _ = MODEL.apply_qualification(lo, replace(bant(T0 + DAY, timeline=False), contact_id="lo"))
    w, _ = MODEL.apply_qualification(w, replace(qual("criteria", T0, "BANT", timeline=True), contact_id="w"))
    merged, changes = MODEL.merge(w, lo, T0 + 2 * DAY, "merge:m1")
    assert merged.contact_id == "w" and merged.profile_at == lo.profile_at and merged.grade == lo.grade
    assert ("stage", "lead", "mql") in [(c.kind, c.from_value, c.to_value) for c in changes]
    # BANT complete only together (the loser lacked timeline, the winner had it): the merged MQL is an SQL.
    assert merged.criteria["BANT"] == 0b1111 and merged.stage == "sql"
    assert all(c.cause_event_id == "merge:m1" for c in changes if c.kind == "stage")


def test_merge_refuses_a_bad_instant():
    a, _ = MODEL.apply_events(None, [ev("page_view", T0, cid="anon:x")])
    with pytest.raises(InvalidEvent) as err:
        MODEL.merge(None, a, 0, "m", "c1")
    assert err.value.field == "at"


NOW = T0 + DAY


@pytest.mark.parametrize("rec, field", [
    ({"link_id": "", "anonymous_id": "a", "contact_id": "c", "linked_at": T0}, "link_id"),
    ({"link_id": "l", "anonymous_id": " ", "contact_id": "c", "linked_at": T0}, "anonymous_id"),
    ({"link_id": "l", "anonymous_id": "a", "contact_id": None, "linked_at": T0}, "contact_id"),
    ({"link_id": "l", "anonymous_id": "a", "contact_id": "anon:b", "linked_at": T0}, "contact_id"),
    ({"link_id": "l", "anonymous_id": "a", "contact_id": "c", "linked_at": 0}, "linked_at"),
    ({"link_id": "l", "anonymous_id": "a", "contact_id": "c", "linked_at": NOW + 2 * DAY}, "linked_at"),
])
def test_identity_link_errors_name_the_field(rec, field):
    with pytest.raises(InvalidEvent) as err:
        identity_link(rec, NOW, DAY)
    assert err.value.field == field


@pytest.mark.parametrize("rec, field", [
    ({"merge_id": "m", "winner": "w", "loser": "w", "merged_at": T0}, "loser"),
    ({"merge_id": "m", "winner": "", "loser": "l", "merged_at": T0}, "winner"),
    ({"merge_id": "m", "winner": "w", "loser": "l", "merged_at": True}, "merged_at"),
])
def test_contact_merge_errors_name_the_field(rec, field):
    with pytest.raises(InvalidEvent) as err:
        contact_merge(rec, NOW, DAY)
    assert err.value.field == field


def test_valid_records_become_aliases():
    a = identity_link({"link_id": "l", "anonymous_id": "a", "contact_id": "c", "linked_at": T0}, NOW, DAY)
    assert (a.alias_id, a.source, a.target, a.at, a.how) == ("l", "anon:a", "c", T0, IDENTIFY)
    m = contact_merge({"merge_id": "m", "winner": "w", "loser": "l", "merged_at": T0}, NOW, DAY)
    assert (m.source, m.target, m.how) == ("l", "w", CONTACT_MERGE)


@given(st.text(min_size=1))
def test_alias_marker_round_trips_and_is_never_a_state(target):
    raw = alias_value(target)
    assert alias_target(raw) == target and raw[0] != FORMAT_VERSION
    state = MODEL.encode_state(MODEL.apply_events(None, [ev("page_view", T0)])[0])
    assert alias_target(state) is None and alias_target(None) is None


@pytest.mark.parametrize("cid, anon, want", [
    ("c1", "a1", ("event:e1", "anon:a1", "c1")), ("c1", None, None), ("anon:a1", "a1", None), ("c1", "", None)])
def test_an_event_carrying_both_ids_links_them(cid, anon, want):
    from scoring.identity import implied_link
    link = implied_link(BehaviourEvent("e1", cid, "form_submit", T0, {}, "web", anon))
    assert (None if link is None else (link.alias_id, link.source, link.target)) == want
    assert link is None or (link.at, link.how) == (T0, IDENTIFY)
