"""Account scoring in the core: the account's engagement is the sum of its contacts' at any instant,
whatever order their shares arrive in; buying-group roles, MQA, moves and removals; the rules'
[accounts] section; the contact state's account trailer."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring import BehaviourEvent, InvalidEvent, RulesError, ScoringModel, default_rules, parse_rules
from scoring.accounts import (
    MQA, UNQUALIFIED, AccountModel, Membership, account_key, membership, pack_share, removal, share_of, unpack_share,
)
from scoring.errors import ScoringError
from scoring.fit import buying_role
from scoring.state import FORMAT_VERSION, WITH_ACCOUNT, pack, unpack

from .helpers import DAY, HOUR, T0, ev, profile

RULES = default_rules()
MODEL = ScoringModel(RULES)
ACCOUNTS = AccountModel(RULES)
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TITLES = ["CFO", "VP Sales", "Solutions Architect", "Marketing Manager", "Data Analyst", "Intern", None]
TYPES = ["page_view", "pricing_page_view", "content_download", "webinar_attended", "demo_request", "unsubscribe"]


def contact(cid: str, title: str | None, events: list[tuple[str, int]]):
    st_, _ = MODEL.apply_profile(None, profile(cid, T0, email=f"{cid}@acme-corp.fr", title=title))
    st_, _ = MODEL.apply_events(st_, [BehaviourEvent(f"{cid}-{i}", cid, et, T0 + off) for i, (et, off) in
                                      enumerate(sorted(events, key=lambda e: e[1]))])
    return st_


@st.composite
def companies(draw):
    n = draw(st.integers(1, 6))
    out = []
    for i in range(n):
        evs = draw(st.lists(st.tuples(st.sampled_from(TYPES), st.integers(0, 20 * DAY)), max_size=12))
        out.append(contact(f"p{i}", draw(st.sampled_from(TITLES)), evs))
    return out


@SETTINGS
@given(companies(), st.randoms(use_true_random=False), st.integers(0, 90 * DAY))
def test_account_engagement_is_the_sum_over_its_contacts_at_any_instant(states, rnd, later):
    assert all(s.account == "domain:acme-corp.fr" for s in states)
    # Every intermediate share too (a contact's share is sent at each change), shuffled: stale ones lose.
    shares = []
    for s in states:
        shares.append(share_of(s)._replace(at=s.as_of - 1, total=s.total * 3))  # an older, different share
        shares.append(share_of(s))
    rnd.shuffle(shares)
    acc, _ = ACCOUNTS.apply(None, "domain:acme-corp.fr", shares)
    T = max(s.as_of for s in states) + later
    e, engaged, roles, fit = ACCOUNTS.summary(acc, T)
    want = [MODEL.snapshot(s, T).engagement for s in states]
    assert math.isclose(e, sum(want), rel_tol=1e-9, abs_tol=1e-9)
    assert engaged == sum(1 for w in want if w >= RULES.accounts.engaged_min)
    assert fit == max(s.fit for s in states)
    assert set(roles) == {s.role for s, w in zip(states, want) if w >= RULES.accounts.engaged_min and s.role}
    snap = ACCOUNTS.snapshot(acc, T)
    assert sorted(m["contact_id"] for m in snap["contacts"]) == sorted(s.contact_id for s in states)
    assert math.isclose(sum(m["engagement"] for m in snap["contacts"]), e, rel_tol=1e-9, abs_tol=1e-9)
    assert ACCOUNTS.decode(ACCOUNTS.encode(acc), acc.account) == acc


def test_an_account_becomes_an_mqa_when_a_third_role_engages():
    busy = [("demo_request", 0), ("webinar_attended", HOUR), ("pricing_page_view", 2 * HOUR)]
    a = contact("cfo", "CFO", busy)
    b = contact("arch", "Solutions Architect", busy)
    c = contact("mgr", "Marketing Manager", busy)
    acc, changes = ACCOUNTS.apply(None, a.account, [share_of(a), share_of(b)])
    assert acc.stage == UNQUALIFIED and acc.roles == ("technical-evaluator", "economic-buyer")
    assert ("temperature", "cold", "warm") in [(x.kind, x.from_value, x.to_value) for x in changes]
    acc, changes = ACCOUNTS.apply(acc, a.account, [share_of(c)])
    kinds = {(x.kind, x.from_value, x.to_value, x.cause_contact_id) for x in changes}
    assert ("stage", UNQUALIFIED, MQA, "mgr") in kinds
    assert ("buying_group", "technical-evaluator,economic-buyer", "technical-evaluator,economic-buyer,champion",
            "mgr") in kinds
    assert ACCOUNTS.snapshot(acc)["temperature"] == acc.temperature == "hot"
    assert ACCOUNTS.snapshot(acc, acc.as_of + 400 * DAY)["temperature"] == "cold"  # a lookup a year later
    mqa = next(x for x in changes if x.kind == "stage")
    assert mqa.engaged_contacts == 3 and mqa.contacts == 3 and mqa.engagement >= 100
    # Deterministic ids: the same shares again give the same changes.
    again, changes2 = ACCOUNTS.apply(ACCOUNTS.apply(None, a.account, [share_of(a), share_of(b)])[0], a.account,
                                     [share_of(c)])
    assert [x.change_id for x in changes2] == [x.change_id for x in changes]


def test_moving_or_erasing_a_contact_removes_its_share_and_an_empty_account_is_gone():
    a = contact("p1", "CFO", [("demo_request", 0)])
    b = contact("p2", "VP Sales", [("webinar_attended", 0)])
    acc, _ = ACCOUNTS.apply(None, a.account, [share_of(a), share_of(b)])
    acc, _ = ACCOUNTS.apply(acc, a.account, [removal(a.account, "p1", a.as_of)])
    assert list(acc.contacts) == ["p2"]
    assert ACCOUNTS.summary(acc, b.as_of)[0] == pytest.approx(MODEL.snapshot(b).engagement)
    gone, _ = ACCOUNTS.apply(acc, a.account, [removal(a.account, "p2", b.as_of)])
    assert gone is None


def test_memberships_set_the_account_newest_first_and_a_profile_domain_is_the_fallback():
    s, _ = MODEL.apply_profile(None, profile("c1", T0, email="jo@globex.example"))
    assert s.account == "domain:globex.example" and s.account_at == 0
    gm, _ = MODEL.apply_profile(None, profile("c2", T0, email="jo@gmail.com"))
    assert gm.account == ""  # free mail: no company
    m = membership({"membership_id": "m1", "contact_id": "c1", "account_id": "hubspot-company:7",
                    "account_domain": None, "active": True, "updated_at": T0 + HOUR}, T0 + DAY, DAY)
    s, _ = MODEL.apply_membership(s, m)
    assert s.account == "hubspot-company:7" and s.account_at == T0 + HOUR
    older = Membership("m0", "c1", "domain:old.example", True, T0)
    assert MODEL.apply_membership(s, older)[0].account == "hubspot-company:7"
    left = Membership("m2", "c1", "hubspot-company:7", False, T0 + 2 * HOUR)
    assert MODEL.apply_membership(s, left)[0].account == ""
    dom = membership({"membership_id": "m3", "contact_id": "c1", "account_id": "seg-1", "account_domain": "Acme.io",
                      "active": True, "updated_at": T0}, T0 + DAY, DAY)
    assert dom.account == "domain:acme.io"
    # A later profile keeps the membership's account (it is not a domain guess).
    s, _ = MODEL.apply_profile(s, profile("c1", T0 + 3 * HOUR, email="jo@other.example"))
    assert s.account == "hubspot-company:7"


@pytest.mark.parametrize("rec, field", [
    ({"membership_id": "", "contact_id": "c", "account_id": "a", "updated_at": T0}, "membership_id"),
    ({"membership_id": "m", "contact_id": "c", "account_id": None, "updated_at": T0}, "account_id"),
    ({"membership_id": "m", "contact_id": "c", "account_id": "a", "updated_at": -1}, "updated_at"),
])
def test_bad_memberships_name_the_field(rec, field):
    with pytest.raises(InvalidEvent) as err:
        membership(rec, T0, DAY)
    assert err.value.field == field


@pytest.mark.parametrize("title, role", [
    ("CFO", "economic-buyer"), ("VP Marketing", "economic-buyer"), ("CTO", "technical-evaluator"),
    ("Head of IT", "technical-evaluator"), ("Marketing Manager", "champion"), ("Data Analyst", "technical-evaluator"),
    ("Marketing Specialist", "user"), ("", ""), (None, ""),
])
def test_roles_come_from_job_titles(title, role):
    assert buying_role(profile(title=title), RULES) == role


def test_shares_round_trip_and_corrupt_ones_are_typed_errors():
    s = contact("p1", "CFO", [("demo_request", 0)])
    sh = share_of(s)
    assert unpack_share(pack_share(sh)) == sh
    assert pack_share(s) == pack_share(sh)  # the worker packs the state itself, without the value object
    assert unpack_share(pack_share(removal("a", "p1", 5))).removed
    with pytest.raises(ScoringError):
        unpack_share(pack_share(sh)[:-1])
    with pytest.raises(ScoringError):
        ACCOUNTS.decode(b"\x01 not a state", "a")
    with pytest.raises(ScoringError):
        ACCOUNTS.decode(ACCOUNTS.encode(ACCOUNTS.apply(None, sh.account, [sh])[0]) + b"x", "a")


def test_states_without_account_keep_the_old_format_and_with_one_round_trip():
    plain, _ = MODEL.apply_events(None, [ev("page_view", T0, cid="x")])
    assert pack(plain)[0] == FORMAT_VERSION
    s = contact("p1", "CFO", [("demo_request", 0)])
    data = MODEL.encode_state(s)
    assert data[0] == WITH_ACCOUNT and MODEL.decode_state(data) == s
    got, _ = unpack(data)
    assert (got.account, got.role) == ("domain:acme-corp.fr", "economic-buyer")
    with pytest.raises(ScoringError):
        unpack(data[:-1])
    assert account_key("x") == "\0acct:x"


def test_a_rules_file_without_the_accounts_section_takes_the_built_in_values():
    import tomllib
    from importlib import resources
    base = tomllib.loads(resources.files("scoring").joinpath("default_rules.toml").read_text())
    del base["accounts"]
    assert parse_rules(base).accounts == RULES.accounts
    base["accounts"] = {"mqa": {"min_roles": 4}}
    r = parse_rules(base).accounts
    assert r.mqa_min_roles == 4 and r.mqa_min_engaged_contacts == 3 and r.roles == RULES.accounts.roles


def test_the_accounts_section_is_validated_with_key_paths():
    import tomllib
    from importlib import resources
    base = tomllib.loads(resources.files("scoring").joinpath("default_rules.toml").read_text())
    r = parse_rules({**base, "accounts": {"mqa": {"min_roles": 2}, "roles": [{"label": "buyer", "keywords": ["ceo"]}]}})
    assert r.accounts.mqa_min_roles == 2 and [b.label for b in r.accounts.roles] == ["buyer"]
    for bad, path in [({"mqa": {"min_role": 2}}, "rules.accounts.mqa.min_role"),
                      ({"temperature": {"warm": 50, "hot": 10}}, "rules.accounts.temperature.hot"),
                      ({"roles": [{"keywords": ["ceo"]}]}, "rules.accounts.roles[0].label")]:
        with pytest.raises(RulesError) as err:
            parse_rules({**base, "accounts": bad})
        assert err.value.key_path == path


def test_contact_ids_starting_with_nul_are_refused():
    from scoring import validate_event
    with pytest.raises(InvalidEvent) as err:
        validate_event(BehaviourEvent("e", "\0acct:x", "page_view", T0), T0)
    assert err.value.field == "contact_id"


@SETTINGS
@given(companies(), st.integers(1, 400 * DAY))
def test_decay_alone_cools_an_account_at_the_first_millisecond_a_change_holds(states, later):
    """The timer's instant is never after a change (a lower bound, exact for the buying group); `cool`
    finds the exact first millisecond; the account then matches applying its shares again there."""
    acc, _ = ACCOUNTS.apply(None, states[0].account, [share_of(s) for s in states])
    until = acc.as_of + later
    at = ACCOUNTS.next_check_at(acc)
    moves = ACCOUNTS._moves_at
    if at is None:
        assert not moves(acc, until)
        return
    assert not moves(acc, at - 1)  # nothing changes before the instant the timer asks at
    before = ACCOUNTS.decode(ACCOUNTS.encode(acc), acc.account)
    cooled, changes = ACCOUNTS.cool(acc, until)
    for c in changes:
        assert c.cause_contact_id is None and c.kind in ("temperature", "buying_group")
        probe = ACCOUNTS.decode(ACCOUNTS.encode(before), before.account)
        ACCOUNTS.cool(probe, c.at - 1)  # the changes before this one
        assert not moves(probe, c.at - 1) and moves(probe, c.at)  # this one holds from c.at on, not before
    assert not moves(cooled, until)
    if changes:
        assert cooled.as_of == changes[-1].at <= until


def test_a_silent_hot_account_cools_on_the_timer():
    busy = [("demo_request", 0), ("webinar_attended", HOUR), ("pricing_page_view", 2 * HOUR)]
    people = [contact("cfo", "CFO", busy), contact("arch", "Solutions Architect", busy),
              contact("mgr", "Marketing Manager", busy)]
    acc, _ = ACCOUNTS.apply(None, people[0].account, [share_of(s) for s in people])
    assert acc.temperature == "hot"
    first = ACCOUNTS.next_check_at(acc)
    acc, changes = ACCOUNTS.cool(acc, acc.as_of + 365 * DAY)
    got = [(c.kind, c.from_value, c.to_value) for c in changes]
    assert got[0] == ("temperature", "hot", "warm") and ("temperature", "warm", "cold") in got
    assert changes[0].at >= first and acc.roles == () and acc.stage == "mqa"  # MQA stays
    assert ACCOUNTS.next_check_at(acc) is None  # cold, nobody engaged: decay changes nothing more
