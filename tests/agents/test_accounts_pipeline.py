"""Accounts through the batch step, without a broker: contacts' shares re-keyed into their account's
partition, the account state and its AccountChange records, moves, merges and erasure."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.agents.cluster import MODEL, PARTITIONS, Cluster, event, link
from tests.scoring.helpers import DAY, HOUR, T0


def prof(cid: str, title: str, at: int = T0, email: str | None = None) -> dict:
    return {"contact_id": cid, "email": email or f"{cid}@acme-corp.fr", "job_title": title, "company": "Acme",
            "company_size": 500, "industry": "Software", "country": "FR", "updated_at": at}


def member(cid: str, account: str, at: int, active: bool = True, domain: str | None = None) -> dict:
    return {"membership_id": f"m-{cid}-{at}", "contact_id": cid, "account_id": account, "account_domain": domain,
            "account_name": None, "account_industry": None, "account_size": None, "account_country": None,
            "active": active, "updated_at": at, "source": "test"}


BUSY = ["demo_request", "webinar_attended", "pricing_page_view"]


def engage(c: Cluster, cid: str, at: int, part: int = 0):
    return [c.send("ev", "BehaviourEvent", event(cid, f"{cid}-{k}-{at}", k, at + i, url="/pricing"), part)
            for i, k in enumerate(BUSY)]


def test_an_account_crosses_mqa_when_a_third_role_engages():
    c = Cluster()
    people = {"cfo": "CFO", "arch": "Solutions Architect", "mgr": "Marketing Manager"}
    c.run([c.send("prof", "ContactProfile", prof(cid, title), i % PARTITIONS) for i, (cid, title) in
           enumerate(people.items())])
    c.run(engage(c, "cfo", T0 + HOUR, 1) + engage(c, "arch", T0 + 2 * HOUR, 2))
    acc = c.account("domain:acme-corp.fr")
    assert acc.stage == "unqualified" and set(acc.roles) == {"economic-buyer", "technical-evaluator"}
    assert not [a for a in c.accounts if a["kind"] == "stage"]
    c.run(engage(c, "mgr", T0 + 3 * HOUR, 3))
    mqa = [a for a in c.accounts if a["kind"] == "stage"]
    assert [(a["from_value"], a["to_value"], a["cause_contact_id"]) for a in mqa] == [("unqualified", "mqa", "mgr")]
    assert mqa[0]["account_id"] == "domain:acme-corp.fr" and mqa[0]["engaged_contacts"] == 3
    assert mqa[0]["roles"] == ["technical-evaluator", "economic-buyer", "champion"]
    # Exact: the account's engagement is the sum of its contacts' own at the account's clock.
    acc = c.account("domain:acme-corp.fr")
    snap = c.pipeline.accounts.snapshot(acc)
    want = sum(MODEL.snapshot(c.state(cid), acc.as_of).engagement for cid in people)
    assert snap["engagement"] == pytest.approx(want, rel=1e-12)
    assert not c.dead
    # Silent from now on: the cooling timer cools the account at the instants the core computes.
    _, expected = c.pipeline.accounts.cool(c.pipeline.accounts.decode(
        c.pipeline.accounts.encode(acc), acc.account), acc.as_of + 200 * DAY)
    seen = len(c.accounts)
    for day in range(1, 201):
        c.tick(acc.as_of + day * DAY)
    cooled = [(a["kind"], a["to_value"], a["at"], a["cause_contact_id"]) for a in c.accounts[seen:]
              if a["account_id"] == "domain:acme-corp.fr"]
    assert [x[:3] for x in cooled if x[0] == "temperature"] == [
        ("temperature", e.to_value, e.at) for e in expected if e.kind == "temperature"]
    assert ("temperature", "cold") in [x[:2] for x in cooled] and all(x[3] is None for x in cooled)


def test_a_contact_moving_account_leaves_the_old_one_and_erasure_removes_its_share():
    c = Cluster()
    c.run([c.send("prof", "ContactProfile", prof("ana", "VP Sales"), 0),
           c.send("prof", "ContactProfile", prof("bob", "CTO"), 1)])
    c.run(engage(c, "ana", T0 + HOUR) + engage(c, "bob", T0 + HOUR, 2))
    assert set(c.account("domain:acme-corp.fr").contacts) == {"ana", "bob"}
    c.run([c.send("memb", "AccountMembership", member("ana", "hubspot-company:9", T0 + 2 * HOUR), 3)])
    assert set(c.account("domain:acme-corp.fr").contacts) == {"bob"}
    assert set(c.account("hubspot-company:9").contacts) == {"ana"}
    c.run([c.send("erase", "EraseRequest", {"request_id": "r", "contact_id": "bob", "requested_at": T0 + DAY}, 0)])
    assert c.account("domain:acme-corp.fr") is None  # its last contact is gone: so is the account
    # Leaving an account (membership inactive): the contact is nobody's.
    c.run([c.send("memb", "AccountMembership", member("ana", "hubspot-company:9", T0 + 3 * HOUR, active=False), 1)])
    assert c.account("hubspot-company:9") is None and c.state("ana").account == ""


def test_an_identified_visitor_brings_its_activity_to_the_account():
    c = Cluster()
    c.run([c.send("ev", "BehaviourEvent", event("", "v1", "pricing_page_view", T0, anon="b1", url="/pricing"), 0)])
    c.run([c.send("prof", "ContactProfile", prof("eve", "Head of Data"), 1),
           c.send("id", "IdentityLink", link("b1", "eve", T0 + HOUR), 2)])
    acc = c.account("domain:acme-corp.fr")
    assert list(acc.contacts) == ["eve"]
    assert c.pipeline.accounts.snapshot(acc)["engagement"] == pytest.approx(
        MODEL.snapshot(c.state("eve"), acc.as_of).engagement)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["p0", "p1", "p2", "p3"]), st.sampled_from(BUSY + ["page_view"]),
                          st.integers(0, 5 * DAY), st.integers(0, PARTITIONS - 1)), min_size=1, max_size=25),
       st.integers(1, 6))
def test_account_engagement_equals_the_sum_over_its_contacts_through_the_pipeline(evs, batch):
    c = Cluster()
    titles = {"p0": "CFO", "p1": "Data Engineer", "p2": "Marketing Manager", "p3": "Analyst"}
    c.run([c.send("prof", "ContactProfile", prof(cid, t), 0) for cid, t in titles.items()])
    msgs = [c.send("ev", "BehaviourEvent", event(cid, f"e{i}", et, T0 + off), part)
            for i, (cid, et, off, part) in enumerate(sorted(evs, key=lambda e: e[2]))]
    for i in range(0, len(msgs), batch):
        c.run(msgs[i:i + batch])
    acc = c.account("domain:acme-corp.fr")
    T = acc.as_of + 3 * DAY
    got = c.pipeline.accounts.summary(acc, T)[0]
    want = sum(MODEL.snapshot(c.state(cid), T).engagement for cid in titles)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_after_a_rebalance_the_schedule_is_rebuilt_with_accounts_and_without_aliases():
    from agents.cooling import CoolingSchedule, rebuild
    from scoring.accounts import account_key

    c = Cluster()
    c.run([c.send("prof", "ContactProfile", prof("ana", "VP Sales"), 0)])
    c.run(engage(c, "ana", T0 + HOUR))
    c.run([c.send("ev", "BehaviourEvent", event("", "v1", "page_view", T0, anon="b2"), 1),
           c.send("id", "IdentityLink", link("b2", "ana", T0 + 2 * HOUR), 1)])
    accounts = c.pipeline.accounts
    schedule = CoolingSchedule()
    n = rebuild(schedule, set(range(PARTITIONS)), lambda p: list(c.table.items()), MODEL.next_cooling_at,
                MODEL.decode_state, owner=c.router.owner,
                account_check_at=lambda account, raw: accounts.next_check_at(accounts.decode(raw, account)))
    assert n == 1  # ana; anon:b2 is an alias marker, the account is not a contact
    key = account_key("domain:acme-corp.fr")
    at = accounts.next_check_at(c.account("domain:acme-corp.fr"))
    assert at is not None
    part = c.router.owner("domain:acme-corp.fr")
    assert schedule.pop_due(part, at - 1) == [] and key in schedule.pop_due(part, at)
