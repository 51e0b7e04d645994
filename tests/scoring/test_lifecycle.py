from __future__ import annotations

import copy
import tomllib
from importlib import resources

import pytest

from scoring import IllegalTransition, ScoringModel, parse_rules
from scoring.lifecycle import STAGES, TRANSITIONS, TRIGGER_TARGET, next_temperature, transition
from scoring.outputs import change_id

from .helpers import DAY, T0, bant, ev, profile, qual

TRIGGERS = ("score", "criteria", "accept", "reject", "disqualify", "won")
LEGAL = {
    ("lead", "score"): "mql",
    ("recycled", "score"): "mql",
    ("mql", "criteria"): "sql",
    ("mql", "accept"): "sql",
    ("mql", "reject"): "recycled",
    ("sql", "reject"): "recycled",
    ("sql", "won"): "customer",
    ("lead", "disqualify"): "disqualified",
    ("mql", "disqualify"): "disqualified",
    ("sql", "disqualify"): "disqualified",
    ("recycled", "disqualify"): "disqualified",
}


def test_transition_table_is_explicit():
    assert TRANSITIONS == LEGAL


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_every_transition(stage, trigger):
    if (stage, trigger) in LEGAL:
        assert transition(stage, trigger) == LEGAL[(stage, trigger)]
    else:
        with pytest.raises(IllegalTransition) as ei:
            transition(stage, trigger)
        assert ei.value.from_stage == stage
        assert ei.value.to_stage == TRIGGER_TARGET[trigger] and ei.value.trigger == trigger


@pytest.mark.parametrize(
    "current, score, expected",
    [
        ("cold", 29.99, "cold"), ("cold", 30, "warm"), ("cold", 60, "hot"), ("cold", -50, "cold"),
        ("warm", 25, "warm"), ("warm", 24.99, "cold"), ("warm", 59.99, "warm"), ("warm", 60, "hot"),
        ("hot", 55, "hot"), ("hot", 54.99, "warm"), ("hot", 25, "warm"), ("hot", 24.99, "cold"),
    ],
)
def test_temperature_hysteresis(rules, current, score, expected):
    assert next_temperature(current, score, rules.temperature) == expected


def kinds(changes):
    return [(c.kind, c.from_value, c.to_value) for c in changes]


def hot_lead(model, grade_b=True):
    """A lead whose score passes the MQL bar with its 'demo' event."""
    st, _ = model.apply_profile(None, profile(email="jane@acme-corp.fr" if grade_b else "jane@gmail.com"))
    st, ch = model.apply_events(st, [ev("webinar_attended", T0 + 1, eid="webinar"),
                                     ev("pricing_page_view", T0 + 2, eid="pricing"),
                                     ev("demo_request", T0 + 3, eid="demo")])
    return st, ch


def test_lead_becomes_mql_by_score_and_grade(model):
    st, ch = hot_lead(model)
    assert kinds(ch) == [("temperature", "cold", "warm"), ("temperature", "warm", "hot"), ("stage", "lead", "mql")]
    mql = ch[-1]
    assert mql.cause_event_id == "demo" and mql.at == T0 + 3 and mql.score >= 65 and mql.grade == "B"
    assert sum(mql.explanation.values()) == pytest.approx(mql.score, rel=1e-12)
    assert mql.rules_version == model.version and mql.fit == 14


def test_poor_grade_blocks_mql(model):
    st, ch = hot_lead(model, grade_b=False)  # gmail: fit -1, grade D
    st, ch = model.apply_event(st, ev("free_trial_signup", T0 + 4))
    assert st.stage == "lead" and st.temperature == "hot" and model.snapshot(st).score >= 65
    # the profile improves: grade B, score already above the bar -> MQL now, caused by the profile
    st, ch = model.apply_profile(st, profile(t=T0 + 10))
    assert kinds(ch) == [("stage", "lead", "mql")]
    assert ch[0].cause_event_id == f"profile@{T0 + 10}"


def test_stale_profile_is_ignored(model):
    st, _ = model.apply_profile(None, profile(t=T0 + 5))
    st2, ch = model.apply_profile(st, profile(t=T0, email="x@gmail.com"))
    assert st2 is st and ch == []


def test_mql_does_not_revert_when_cooling(model):
    st, _ = hot_lead(model)
    st, ch = model.advance(st, T0 + 400 * DAY)
    assert kinds(ch) == [("temperature", "hot", "warm"), ("temperature", "warm", "cold")]
    assert all(c.cause_event_id is None for c in ch)
    assert st.stage == "mql"


@pytest.mark.parametrize("framework, criteria, becomes_sql", [
    ("BANT", dict(budget=True, authority=True, need=True, timeline=True), True),
    ("BANT", dict(budget=True, authority=True, need=True), False),
    ("BANT", dict(budget=True, authority=True, need=True, timeline=False), False),
    ("MEDDICC", dict(metrics=True, economic_buyer=True, decision_criteria=True, decision_process=True,
                     identify_pain=True, champion=True, competition=True), True),
    ("MEDDICC", dict(metrics=True, economic_buyer=True, decision_criteria=True, decision_process=True,
                     identify_pain=True, champion=True), False),
])
def test_mql_to_sql_by_framework(model, framework, criteria, becomes_sql):
    st, _ = hot_lead(model)
    st, ch = model.apply_qualification(st, qual("criteria", T0 + DAY, framework, uid="q1", **criteria))
    assert st.stage == ("sql" if becomes_sql else "mql")
    assert kinds(ch) == ([("stage", "mql", "sql")] if becomes_sql else [])
    if becomes_sql:
        assert ch[0].cause_event_id == "q1"


def test_criteria_accumulate_across_updates(model):
    st, _ = hot_lead(model)
    st, ch = model.apply_qualification(st, qual("criteria", T0 + DAY, "BANT", budget=True, authority=True))
    assert ch == []
    st, ch = model.apply_qualification(st, qual("criteria", T0 + DAY, "BANT", need=True, timeline=True))
    assert kinds(ch) == [("stage", "mql", "sql")]


def test_explicit_accept_requires_mql(model):
    st, _ = model.apply_event(None, ev("page_view", T0))
    with pytest.raises(IllegalTransition) as ei:
        model.apply_qualification(st, qual("accept", T0 + 1))
    assert (ei.value.from_stage, ei.value.to_stage) == ("lead", "sql")
    assert st.stage == "lead"  # untouched
    st, _ = hot_lead(model)
    st, ch = model.apply_qualification(st, qual("accept", T0 + 1))
    assert kinds(ch) == [("stage", "mql", "sql")]


@pytest.mark.parametrize("action, to", [("won", "customer"), ("reject", "recycled")])
def test_illegal_sales_actions_on_a_lead(model, action, to):
    st, _ = model.apply_event(None, ev("page_view", T0))
    with pytest.raises(IllegalTransition) as ei:
        model.apply_qualification(st, qual(action, T0 + 1))
    assert (ei.value.from_stage, ei.value.to_stage) == ("lead", to)


def test_won_only_from_sql(model):
    st, _ = hot_lead(model)
    with pytest.raises(IllegalTransition):
        model.apply_qualification(st, qual("won", T0 + 1))
    st, _ = model.apply_qualification(st, bant(T0 + 1))
    st, ch = model.apply_qualification(st, qual("won", T0 + 2))
    assert kinds(ch) == [("stage", "sql", "customer")]
    for action in ("won", "reject", "accept", "disqualify"):
        with pytest.raises(IllegalTransition):
            model.apply_qualification(st, qual(action, T0 + 3))


@pytest.mark.parametrize("path", [[], ["mql"], ["mql", "sql"], ["mql", "recycled"]])
def test_disqualify_from_any_open_stage_is_terminal(model, path):
    st, _ = model.apply_event(None, ev("page_view", T0))
    if path:
        st, _ = hot_lead(model)
    if "sql" in path:
        st, _ = model.apply_qualification(st, bant(T0 + 5))
    if "recycled" in path:
        st, _ = model.apply_qualification(st, qual("reject", T0 + 5))
    before = st.stage
    st, ch = model.apply_qualification(st, qual("disqualify", T0 + 6))
    assert kinds(ch) == [("stage", before, "disqualified")]
    for action in ("accept", "reject", "won", "disqualify"):
        with pytest.raises(IllegalTransition):
            model.apply_qualification(st, qual(action, T0 + 7))
    # behaviour is still scored, but never moves the stage
    st, ch = model.apply_events(st, [ev("demo_request", T0 + 8 + i) for i in range(5)])
    assert st.stage == "disqualified" and all(c.kind == "temperature" for c in ch)


def test_reject_recycles_and_requalification_needs_a_new_climb(model):
    st, _ = hot_lead(model)
    st, _ = model.apply_qualification(st, bant(T0 + 10))
    st, ch = model.apply_qualification(st, qual("reject", T0 + 20))
    assert kinds(ch) == [("stage", "sql", "recycled")] and st.criteria == {}
    # still above the bar: more engagement does not bounce it straight back to sales
    st, ch = model.apply_event(st, ev("pricing_page_view", T0 + 30))
    assert st.stage == "recycled" and ch == []
    # it cools below the MQL bar (silently re-armed), then climbs back: MQL again
    st, _ = model.advance(st, T0 + 60 * DAY)
    assert st.stage == "recycled" and model.snapshot(st).score < 65
    st, ch = model.apply_events(st, [ev("demo_request", T0 + 60 * DAY + 1), ev("free_trial_signup", T0 + 60 * DAY + 2)])
    assert ("stage", "recycled", "mql") in kinds(ch)
    # the rejection voided the BANT answers: no automatic SQL
    assert st.stage == "mql"


def test_criteria_recorded_on_a_lead_chain_to_sql_when_it_becomes_mql(model):
    st, _ = model.apply_profile(None, profile())
    st, ch = model.apply_qualification(st, bant(T0 + 1))
    assert st.stage == "lead" and ch == []
    st, ch = model.apply_events(st, [ev("webinar_attended", T0 + 2), ev("pricing_page_view", T0 + 3),
                                     ev("demo_request", T0 + 4)])
    assert kinds(ch)[-2:] == [("stage", "lead", "mql"), ("stage", "mql", "sql")]


def test_duplicate_qualification_update_is_ignored(model):
    st, _ = hot_lead(model)
    u = qual("accept", T0 + 1, uid="same")
    st, ch = model.apply_qualification(st, u)
    st2, ch2 = model.apply_qualification(st, u)
    assert st2 is st and ch2 == [] and len(ch) == 1


def test_change_ids_are_deterministic(model):
    a = hot_lead(model)[1]
    b = hot_lead(model)[1]
    assert [c.change_id for c in a] == [c.change_id for c in b]
    c = a[-1]
    assert c.change_id == change_id(c.contact_id, c.kind, c.from_value, c.to_value, c.cause_event_id, c.at)
    assert len({x.change_id for x in a}) == len(a)


def test_erasure_change(model):
    c = model.erase("c1", T0)
    assert (c.kind, c.to_value, c.at, c.contact_id, c.rules_version) == ("erasure", "erased", T0, "c1", model.version)
    assert c.change_id == model.erase("c1", T0).change_id


def rules_with(**temperature):
    d = copy.deepcopy(tomllib.loads(resources.files("scoring").joinpath("default_rules.toml").read_text("utf-8")))
    d["temperature"].update(temperature)
    return parse_rules(d)


def test_fading_penalty_rewarms_at_the_predicted_instant():
    m = ScoringModel(rules_with(warm=25))
    cmo = profile(email="cmo@globex.example", title="Chief Marketing Officer", size=300, industry="Software",
                  country="FR")
    st, ch = m.apply_profile(None, cmo)  # fit 30: warm on profile alone
    assert kinds(ch) == [("temperature", "cold", "warm")]
    st, ch = m.apply_event(st, ev("email_bounce", T0 + 1, bounce="hard"))  # -50: score -20
    assert kinds(ch) == [("temperature", "warm", "cold")]
    t = m.next_cooling_at(st)
    assert t is not None
    assert m.advance(st, t - 1)[1] == []
    st2, ch = m.advance(st, t)
    assert kinds(ch) == [("temperature", "cold", "warm")] and ch[0].at == t and ch[0].cause_event_id is None
    assert (t - (T0 + 1)) / DAY == pytest.approx(30 * 3.3219280948873626, rel=1e-6)  # -50 -> -5: log2(10) half-lives
