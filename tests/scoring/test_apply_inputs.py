"""`apply_inputs`: the one path for a contact's mixed inputs, shared by the agents and the backtest."""

import pytest

from scoring import BehaviourEvent, ContactProfile, IllegalTransition, QualificationUpdate, ScoringModel, default_rules

H = 3_600_000
T0 = 1_790_000_000_000
model = ScoringModel(default_rules())
PROFILE = ContactProfile("c", "ana@acme-robotics.com", "VP Marketing", "Acme", 800, "software", "FR", T0)
EVENTS = [BehaviourEvent(f"e{i}", "c", t, T0 + i * H, {}) for i, t in enumerate(
    ["content_download", "webinar_signup", "webinar_attended", "pricing_page_view", "demo_request"])]
BANT = QualificationUpdate("q1", "c", "criteria", "BANT",
                           {"budget": True, "authority": True, "need": True, "timeline": True}, T0 + 9 * H)


def one_by_one(inputs):
    state, changes = None, []
    for item in inputs:
        if isinstance(item, BehaviourEvent):
            state, more = model.apply_event(state, item)
        elif isinstance(item, ContactProfile):
            state, more = model.apply_profile(state, item)
        else:
            state, more = model.apply_qualification(state, item)
        changes += more
    return state, changes


@pytest.mark.parametrize("inputs", [
    [PROFILE, *EVENTS, BANT],
    [*EVENTS[:2], PROFILE, *EVENTS[2:], BANT],
    [*EVENTS, PROFILE, BANT],
    [BANT, PROFILE, *EVENTS],
])
def test_same_result_as_applying_each_input_in_turn(inputs):
    state, changes = model.apply_inputs(None, inputs)
    expected_state, expected_changes = one_by_one(inputs)
    assert changes == expected_changes
    assert model.snapshot(state) == model.snapshot(expected_state)


def test_refused_inputs_are_collected_and_the_rest_applied():
    won_too_early = QualificationUpdate("q0", "c", "won", None, {}, T0)
    rejected: list = []
    state, changes = model.apply_inputs(None, [won_too_early, *EVENTS], rejected=rejected)
    assert [(item, type(exc)) for item, exc in rejected] == [(won_too_early, IllegalTransition)]
    assert model.snapshot(state) == model.snapshot(one_by_one(EVENTS)[0])
    with pytest.raises(IllegalTransition):
        model.apply_inputs(None, [won_too_early, *EVENTS])


def test_an_event_worth_exactly_the_threshold_reaches_it_whatever_its_timestamp():
    """Float rounding in the decay sums must not leave a 30-point demo request at 29.999… (cold)."""
    for i in range(500):
        state, changes = model.apply_events(None, [BehaviourEvent(f"d{i}", "c", "demo_request", T0 + i * 7919, {})])
        assert model.snapshot(state).temperature == "warm", i
        assert [(c.from_value, c.to_value) for c in changes] == [("cold", "warm")]
