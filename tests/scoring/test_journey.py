"""The brief's journey: white paper -> cold; webinar -> warm; pricing x2 + demo -> hot and MQL;
BANT complete -> SQL (a prospect); 60 days of silence -> it cools, at the predicted instant."""

from __future__ import annotations

import math

import pytest

from .helpers import DAY, HOUR, T0, bant, ev, oracle, profile


def temps(changes):
    return [(c.kind, c.from_value, c.to_value) for c in changes]


def test_lead_to_prospect_and_cooling(model, rules):
    events = []

    def apply(st, *evs):
        events.extend(evs)
        return model.apply_events(st, list(evs))

    st, ch = model.apply_profile(None, profile(t=T0))
    assert (st.fit, st.grade, st.stage, st.temperature) == (14, "B", "lead", "cold")

    # 1. a white paper: interest, but still a cold lead
    st, ch = apply(st, ev("content_download", T0 + HOUR, asset_type="whitepaper"))
    snap = model.snapshot(st)
    assert snap.temperature == "cold" and ch == []
    assert snap.explanation == {"fit": 14, "content_download": pytest.approx(10), "whitepaper": pytest.approx(5)}

    # 2. webinar sign-up, then attendance: warm
    st, ch1 = apply(st, ev("webinar_signup", T0 + 2 * DAY))
    st, ch2 = apply(st, ev("webinar_attended", T0 + 9 * DAY))
    assert temps(ch1 + ch2) == [("temperature", "cold", "warm")]
    assert st.temperature == "warm" and st.stage == "lead"

    # 3. pricing page twice and a demo request: hot, and a Marketing Qualified Lead
    st, ch = apply(st, ev("pricing_page_view", T0 + 12 * DAY),
                   ev("page_view", T0 + 12 * DAY + 60_000, url="https://www.leadpulse.example/pricing"),
                   ev("demo_request", T0 + 12 * DAY + 120_000, eid="demo-1"))
    assert ("temperature", "warm", "hot") in temps(ch) and ("stage", "lead", "mql") in temps(ch)
    assert (st.temperature, st.stage) == ("hot", "mql")
    snap = model.snapshot(st)
    assert snap.score >= 65 and sum(snap.explanation.values()) == pytest.approx(snap.score, rel=1e-12)

    # 4. sales completes BANT: a prospect (SQL)
    st, ch = model.apply_qualification(st, bant(T0 + 14 * DAY))
    assert temps(ch) == [("stage", "mql", "sql")] and st.stage == "sql"

    # 5. sixty days of silence: the timer cools it, at exactly the predicted instant
    t_cool = model.next_cooling_at(st)
    assert t_cool is not None and st.as_of < t_cool < T0 + 74 * DAY
    st_before, ch = model.advance(st, t_cool - 1)
    assert ch == [] and st_before.temperature == "hot"
    st60, ch = model.advance(st, T0 + 74 * DAY)
    assert temps(ch) == [("temperature", "hot", "warm")]
    cooling = ch[0]
    assert cooling.at == t_cool and cooling.cause_event_id is None
    assert st60.stage == "sql"  # cooling never undoes a qualification
    threshold = rules.temperature.hot - rules.temperature.hysteresis  # 55

    # Checked against the brute-force definition (sum over every event, no accumulators):
    H = rules.half_life_days * DAY

    def score(t: float) -> float:
        return st.fit + oracle(rules, events, t)[0]

    assert score(t_cool) < threshold <= score(t_cool - 1)  # first millisecond below
    # the exact real crossing lies inside that last millisecond, and the score there IS the threshold
    e_prev = oracle(rules, events, t_cool - 1)[0]
    t_exact = (t_cool - 1) + H * math.log2(e_prev / (threshold - st.fit))
    assert t_cool - 1 <= t_exact < t_cool
    assert score(t_exact) == pytest.approx(threshold, abs=1e-9)
    assert model.score_at(st, t_exact) == pytest.approx(threshold, abs=1e-9)
    assert cooling.score == pytest.approx(threshold, abs=1e-6) and cooling.score < threshold

    # 6. and later, warm -> cold below 25, again exactly when predicted
    t_cold = model.next_cooling_at(st60)
    st_cold, ch = model.advance(st60, t_cold)
    assert temps(ch) == [("temperature", "warm", "cold")] and ch[0].at == t_cold
    assert score(t_cold) < 25 <= score(t_cold - 1)
    assert model.next_cooling_at(st_cold) is None  # nothing left to cool through

    # the clock-driven path and a replay that only sees the next event agree on the change
    st_next, ch_next = model.apply_event(st, ev("email_open", T0 + 74 * DAY))
    assert ch_next[0].change_id == cooling.change_id and ch_next[0].at == t_cool
