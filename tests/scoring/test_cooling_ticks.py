"""Cooling ticks announce what the inputs predict, in event time: they never move a contact's clock
past the change they announce, so transitions are a function of the inputs.

Guarantee under test (README › Cooling on time): with ticks at any wall-clock instants, the
published transitions and change ids equal those of a replay of the inputs alone (plus a final
advance to the last tick) whenever no input older than an announced change arrives after the
announcement. Scores never depend on ticks at all."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring import BehaviourEvent, ScoringModel, default_rules

from .helpers import DAY, HOUR, T0, profile

MODEL = ScoringModel(default_rules())
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOT_TYPES = ["demo_request", "free_trial_signup", "pricing_page_view", "webinar_attended", "content_download",
             "page_view", "email_click"]


@st.composite
def timelines(draw, allow_late: bool):
    """A contact's inputs in arrival order, interleaved with ticks (None, instant). Without
    `allow_late`, no event is older than a tick before it (so no announced change is overtaken)."""
    n = draw(st.integers(1, 25))
    steps, t, last_tick = [], T0, 0
    for i in range(n):
        t += draw(st.one_of(st.integers(0, 6 * HOUR), st.integers(0, 20 * DAY)))
        at = t - draw(st.integers(0, 3 * DAY)) if allow_late else max(t, last_tick)
        steps.append((BehaviourEvent(f"e{i}", "c1", draw(st.sampled_from(HOT_TYPES)), at, {"url": "/pricing"}), None))
        if draw(st.booleans()):
            last_tick = max(last_tick, at + draw(st.integers(0, 60 * DAY)))
            steps.append((None, last_tick))
    return steps


def live(state, steps):
    """The worker: events applied as they arrive, ticks cool the contact (ScoringModel.cool)."""
    changes = []
    for e, tick in steps:
        if e is not None:
            state, more = MODEL.apply_events(state, [e])
        else:
            if state is None:
                continue
            state, more = MODEL.cool(state, tick)
        changes += more
    return state, changes


def replay(state, steps):
    """An offline replay of the inputs alone, then advanced to the last tick."""
    changes = []
    for e, _ in steps:
        if e is not None:
            state, more = MODEL.apply_events(state, [e])
            changes += more
    ticks = [tick for e, tick in steps if e is None]
    if state is not None and ticks:
        state, more = MODEL.advance(state, max(ticks))
        changes += more
    return state, changes


def ids(changes):
    return [(c.change_id, c.kind, c.from_value, c.to_value, c.at) for c in changes]


@SETTINGS
@given(timelines(allow_late=False), st.sampled_from([None, profile()]))
def test_ticks_announce_exactly_what_a_replay_of_the_inputs_says(steps, prof):
    start = MODEL.apply_profile(None, prof)[0] if prof else None
    live_state, live_changes = live(start, steps)
    replay_state, replay_changes = replay(start, steps)
    assert ids(live_changes) == ids(replay_changes)
    assert live_state.temperature == replay_state.temperature and live_state.stage == replay_state.stage


@SETTINGS
@given(timelines(allow_late=True))
def test_ticks_never_change_a_score_and_never_move_the_clock_past_a_change(steps):
    live_state, live_changes = live(None, steps)
    replay_state, _ = replay(None, steps)
    event_times = [e.occurred_at for e, _ in steps if e is not None]
    announced = [c.at for c in live_changes if c.cause_event_id is None]
    # The clock is an input's time or an announced change's instant: never a tick's own instant.
    assert live_state.as_of in set(event_times) | set(announced)
    later = max(live_state.as_of, replay_state.as_of) + 7 * DAY
    assert math.isclose(MODEL.score_at(live_state, later), MODEL.score_at(replay_state, later),
                        rel_tol=1e-9, abs_tol=1e-9)


def test_a_tick_before_the_predicted_instant_changes_nothing():
    state, _ = MODEL.apply_events(None, [BehaviourEvent("e1", "c1", "demo_request", T0, {}),
                                         BehaviourEvent("e2", "c1", "free_trial_signup", T0, {})])
    due = MODEL.next_cooling_at(state)
    assert due is not None
    same, changes = MODEL.cool(state, due - 1)
    assert same is state and changes == []
    cooled, changes = MODEL.cool(state, due + 30 * DAY)
    assert changes and changes[0].at == due and cooled.as_of == changes[-1].at < due + 30 * DAY


def test_an_event_older_than_an_announced_change_is_applied_at_that_instant():
    """The one case where a replay of the inputs alone differs: documented, and deterministic."""
    hot = [BehaviourEvent("e1", "c1", "demo_request", T0, {}), BehaviourEvent("e2", "c1", "free_trial_signup", T0, {})]
    state, _ = MODEL.apply_events(None, hot)
    due = MODEL.next_cooling_at(state)
    cooled, announced = MODEL.cool(state, due + HOUR)
    late = BehaviourEvent("e3", "c1", "pricing_page_view", due - HOUR, {"url": "/pricing"})
    after, changes = MODEL.apply_events(cooled, [late])
    assert after.as_of == cooled.as_of == announced[-1].at  # applied at the announced instant
    again, changes_again = MODEL.apply_events(MODEL.cool(state, due + HOUR)[0], [late])
    assert [c.change_id for c in changes_again] == [c.change_id for c in changes]  # deterministic
