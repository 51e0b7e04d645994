"""Identity through the batch step, without a broker: four partitions, the repartition topic played
back as Kafka would (each forwarded record into the partition it names, in order), and inputs in
any order. Links and merges end with one state, in the contact's own partition, equal to the core
scoring the union; later inputs of a merged id go to its contact; conflicts and loops are dead letters."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.pipeline import CONTACT_HEADER
from scoring.identity import alias_target
from tests.agents.cluster import MODEL, PARTITIONS, Cluster, as_events, event, link
from tests.scoring.helpers import DAY, HOUR, T0

TYPES = ["page_view", "pricing_page_view", "content_download", "webinar_signup", "demo_request", "email_click"]


@st.composite
def journeys(draw):
    """A person's events under the contact id and two anonymous ids (some anonymous-only ones with an
    empty contact id), the two links, all shuffled; each record into any partition (any partitioner)."""
    recs = []
    for i in range(draw(st.integers(1, 16))):
        who = draw(st.sampled_from(["c1", "anon:a1", "anon:a2", "empty:a2"]))
        et = draw(st.sampled_from(TYPES))
        at = T0 + draw(st.integers(0, 5 * DAY))
        props = {"url": "/pricing"} if et == "pricing_page_view" else {}
        if who == "empty:a2":
            recs.append(("ev", "BehaviourEvent", event("", f"e{i}", et, at, anon="a2", **props)))
        else:
            recs.append(("ev", "BehaviourEvent", event(who, f"e{i}", et, at, **props)))
    recs.append(("id", "IdentityLink", link("a1", "c1", T0 + draw(st.integers(0, 6 * DAY)))))
    recs.append(("id", "IdentityLink", link("a2", "c1", T0 + draw(st.integers(0, 6 * DAY)))))
    order = draw(st.permutations(recs))
    parts = [draw(st.integers(0, PARTITIONS - 1)) for _ in order]
    batch = draw(st.integers(1, 5))
    return recs, list(order), parts, batch


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(journeys())
def test_links_and_events_in_any_order_and_partition_end_in_one_state_equal_to_the_union(case):
    recs, order, parts, batch = case
    c = Cluster()
    msgs = [c.send(topic, record, rec, p) for (topic, record, rec), p in zip(order, parts)]
    for i in range(0, len(msgs), batch):
        c.run(msgs[i:i + batch])
    events = [r for t, _, r in recs if t == "ev"]
    union, _ = MODEL.apply_events(None, as_events(events, "c1"))
    got = c.state("c1")
    assert not c.dead, c.dead
    assert got is not None and got.contact_id == "c1"
    at = T0 + 7 * DAY
    assert MODEL.snapshot(got, at).score == pytest.approx(MODEL.snapshot(union, at).score, rel=1e-9, abs=1e-9)
    assert set(got.seen) == set(union.seen)
    # The contact's state is in its own partition's keys only: every other id is an alias marker.
    for anon in ("anon:a1", "anon:a2"):
        raw = c.table.get(anon.encode())
        assert raw is None or alias_target(raw) == "c1"
    if any(r["contact_id"] == "anon:a1" for r in events):
        assert c.scores.get(b"anon:a1", None) is None  # tombstoned if it ever had a snapshot


def test_anonymous_pricing_visits_then_a_form_fill_make_the_contact_hot_at_once():
    c = Cluster()
    anon_part = c.router.owner("anon:v9")
    visits = [c.send("ev", "BehaviourEvent", event("", f"v{i}", "pricing_page_view", T0 + i * HOUR, anon="v9",
                                                   url="/pricing"), anon_part) for i in range(4)]
    visits.append(c.send("ev", "BehaviourEvent", event("", "v-demo", "demo_request", T0 + 5 * HOUR, anon="v9"),
                         anon_part))
    c.run(visits)
    assert c.state("anon:v9").temperature == "hot"
    # The form fill: the contact's first event, carrying the anonymous id too (no separate link).
    form = c.send("ev", "BehaviourEvent", event("ana", "form-1", "form_submit", T0 + 6 * HOUR, anon="v9"),
                  (c.router.owner("ana") + 1) % PARTITIONS)
    c.run([form])
    ana = c.state("ana")
    assert ana.temperature == "hot"
    merge = [x for x in c.lifecycle if x["contact_id"] == "ana" and x["to_value"] == "hot"]
    assert merge and merge[0]["cause_event_id"] == "merge:event:form-1"
    assert alias_target(c.table[b"anon:v9"]) == "ana" and c.scores[b"anon:v9"] is None
    # Later anonymous activity (the same browser) counts for ana.
    c.run([c.send("ev", "BehaviourEvent", event("", "v-late", "webinar_signup", T0 + 7 * HOUR, anon="v9"), 0)])
    assert "webinar_signup" in MODEL.snapshot(c.state("ana")).explanation and c.state("anon:v9") is None


def test_a_contact_merge_leaves_one_state_and_later_loser_inputs_go_to_the_winner():
    c = Cluster()
    c.run([c.send("ev", "BehaviourEvent", event("dup", "d1", "content_download", T0), 0),
           c.send("ev", "BehaviourEvent", event("win", "w1", "webinar_signup", T0 + HOUR), 1)])
    c.run([c.send("merge", "ContactMerge", {"merge_id": "m1", "winner": "win", "loser": "dup",
                                            "merged_at": T0 + 2 * HOUR, "source": "hubspot"}, 2)])
    c.run([c.send("ev", "BehaviourEvent", event("dup", "d2", "demo_request", T0 + 3 * HOUR), 3),
           c.send("ev", "BehaviourEvent", event("dup", "d1", "content_download", T0), 3)])  # a re-delivery
    want, _ = MODEL.apply_events(None, as_events([event("", "d1", "content_download", T0),
                                                  event("", "w1", "webinar_signup", T0 + HOUR),
                                                  event("", "d2", "demo_request", T0 + 3 * HOUR)], "win"))
    assert MODEL.snapshot(c.state("win")).score == pytest.approx(MODEL.snapshot(want).score)
    assert c.state("dup") is None and c.scores[b"dup"] is None
    # Merging again (a re-delivered webhook) changes nothing; into another contact is a conflict.
    before = c.table[b"win"]
    c.run([c.send("merge", "ContactMerge", {"merge_id": "m1", "winner": "win", "loser": "dup",
                                            "merged_at": T0 + 2 * HOUR, "source": "hubspot"}, 0)])
    assert c.table[b"win"] == before and not c.dead
    c.run([c.send("merge", "ContactMerge", {"merge_id": "m2", "winner": "other", "loser": "dup",
                                            "merged_at": T0 + 4 * HOUR, "source": "hubspot"}, 0)])
    assert [(d["error_class"], d["field"]) for d in c.dead] == [("IdentityConflict", "winner")]


def test_chains_are_followed_and_loops_are_dead_lettered():
    c = Cluster()
    c.run([c.send("ev", "BehaviourEvent", event("", "a1", "page_view", T0, anon="x"), 0)])
    c.run([c.send("id", "IdentityLink", link("x", "mid", T0 + HOUR), 1)])
    c.run([c.send("merge", "ContactMerge", {"merge_id": "m", "winner": "top", "loser": "mid",
                                            "merged_at": T0 + 2 * HOUR, "source": "crm"}, 2)])
    c.run([c.send("ev", "BehaviourEvent", event("", "a2", "demo_request", T0 + 3 * HOUR, anon="x"), 3)])
    top = c.state("top")
    assert top is not None and set(MODEL.snapshot(top).explanation) >= {"page_view", "demo_request"}
    # top merged back into mid: a loop; an input of it is dead-lettered, not bounced for ever.
    c.run([c.send("merge", "ContactMerge", {"merge_id": "back", "winner": "mid", "loser": "top",
                                            "merged_at": T0 + 4 * HOUR, "source": "crm"}, 0)])
    c.run([c.send("ev", "BehaviourEvent", event("top", "t9", "page_view", T0 + 5 * HOUR), 0)])
    assert "AliasCycle" in {d["error_class"] for d in c.dead}


def test_erasing_a_merged_id_erases_the_person_and_the_link():
    c = Cluster()
    c.run([c.send("ev", "BehaviourEvent", event("", "a1", "page_view", T0, anon="z"), 0),
           c.send("id", "IdentityLink", link("z", "zoe", T0 + HOUR), 0)])
    assert c.state("zoe") is not None
    c.run([c.send("erase", "EraseRequest", {"request_id": "r1", "contact_id": "anon:z", "requested_at": T0 + DAY}, 1)])
    assert c.state("zoe") is None and b"anon:z" not in c.table and b"zoe" not in c.table
    assert [x["kind"] for x in c.lifecycle if x["contact_id"] == "zoe"][-1] == "erasure"


@pytest.mark.parametrize("record, rec, field", [
    ("IdentityLink", link("", "c", T0), "anonymous_id"),
    ("IdentityLink", link("a", "anon:b", T0), "contact_id"),
    ("ContactMerge", {"merge_id": "m", "winner": "w", "loser": "w", "merged_at": T0, "source": "s"}, "loser"),
])
def test_bad_links_and_merges_are_dead_letters_naming_the_field(record, rec, field):
    c = Cluster()
    c.run([c.send("id" if record == "IdentityLink" else "merge", record, rec, 0)])
    assert [(d["error_class"], d["field"]) for d in c.dead] == [("InvalidEvent", field)]


def test_a_forged_redirect_header_is_a_dead_letter_not_a_crash():
    c = Cluster()
    c.run([c.message("rep", 0, b"k", b"junk", [("leadpulse-kind", b"merge-states"), (CONTACT_HEADER, b"c1")])])
    assert [d["error_class"] for d in c.dead] == ["InvalidForwarded"]
