from __future__ import annotations

import pytest

from scoring import ContactState, ScoringError, ScoringModel
from scoring.state import WITH_ACCOUNT

from .helpers import DAY, HOUR, T0, bant, ev, profile


def month_of_activity(model):
    st, _ = model.apply_profile(None, profile())
    evs = []
    for day in range(0, 30, 2):
        evs += [ev("page_view", T0 + day * DAY + i * 60_000, url=u) for i, u in enumerate(["/", "/pricing", "/blog"])]
        evs += [ev("email_open", T0 + day * DAY + HOUR), ev("email_click", T0 + day * DAY + HOUR + 5)]
    evs += [ev("demo_request", T0 + 29 * DAY)]
    st, _ = model.apply_events(st, evs)
    st, _ = model.apply_qualification(st, bant(T0 + 29 * DAY + 1))
    return st, evs


def test_round_trip_is_exact_and_behaves_the_same(model):
    st, _ = month_of_activity(model)
    data = model.encode_state(st)
    assert data[0] == WITH_ACCOUNT  # the profile's company domain is its account (version 2 has it)
    back = model.decode_state(data)
    assert back == st and model.encode_state(back) == data
    more = [ev("pricing_page_view", T0 + 31 * DAY, eid="x1"), ev("unsubscribe", T0 + 32 * DAY, eid="x2")]
    a, ca = model.apply_events(st, more)
    b, cb = model.apply_events(back, more)
    assert a == b and ca == cb
    assert model.snapshot(a, T0 + 90 * DAY) == model.snapshot(b, T0 + 90 * DAY)
    assert model.next_cooling_at(a) == model.next_cooling_at(b)


def test_typical_state_fits_in_one_kib(model):
    st, evs = month_of_activity(model)
    assert len(model.encode_state(st)) <= 1024
    assert len(model.encode_state(model.apply_event(None, ev("page_view", T0))[0])) < 120


@pytest.mark.parametrize("mangle", [
    lambda b: b"\x09" + b[1:],  # unknown version
    lambda b: b[:-3],  # truncated
    lambda b: b + b"\0",  # trailing garbage
    lambda b: b"",
])
def test_corrupt_state_is_a_scoring_error(model, mangle):
    st, _ = month_of_activity(model)
    with pytest.raises(ScoringError, match="corrupt contact state"):
        model.decode_state(mangle(model.encode_state(st)))


def test_apply_does_not_mutate_its_input(model):
    st, _ = month_of_activity(model)
    before = model.encode_state(st)
    new, _ = model.apply_events(st, [ev("demo_request", T0 + 30 * DAY)])
    model.apply_event(st, ev("demo_request", T0 + 30 * DAY))
    model.advance(st, T0 + 300 * DAY)
    model.snapshot(st, T0 + 300 * DAY)
    model.next_cooling_at(st)
    model.apply_qualification(st, bant(T0 + 30 * DAY))
    model.apply_profile(st, profile(t=T0 + 30 * DAY, email="x@gmail.com"))
    assert model.encode_state(st) == before and new is not st


def test_inplace_mutates_and_returns_the_same_object(model):
    st, _ = month_of_activity(model)
    copy = st.copy()
    new, _ = model.apply_events(st, [ev("demo_request", T0 + 30 * DAY)], inplace=True)
    assert new is st and st != copy


def test_batch_equals_fold_of_single_events(model):
    st0, evs = month_of_activity(model)
    more = [ev(t, T0 + 30 * DAY + i * HOUR) for i, t in enumerate(
        ["page_view", "demo_request", "email_open", "unsubscribe", "webinar_signup"])] + [evs[-1]]
    batch, cb = model.apply_events(st0, more)
    st, cs = st0, []
    for e in more:
        st, c = model.apply_event(st, e)
        cs += c
    assert batch == st and cb == cs
    gen, cg = model.apply_events(st0, (e for e in more))  # any iterable
    assert gen == batch and cg == cb


def test_failed_batch_leaves_state_untouched(model):
    st, _ = month_of_activity(model)
    before = model.encode_state(st)
    with pytest.raises(ScoringError):
        model.apply_events(st, [ev("demo_request", T0 + 30 * DAY), ev("nope", T0 + 30 * DAY)])
    assert model.encode_state(st) == before


def test_advance_and_snapshot_edges(model):
    st, _ = month_of_activity(model)
    same, ch = model.advance(st, st.as_of)
    assert same is st and ch == []
    with pytest.raises(ValueError):
        model.snapshot(st, st.as_of - 1)
    later = model.snapshot(st, st.as_of + 365 * DAY)
    assert later.temperature == "cold" and later.stage == "sql" and st.temperature != "cold"
    moved, _ = model.advance(st, st.as_of + 5)
    assert moved.as_of == st.as_of + 5
    assert model.apply_events(None, []) == (None, [])


def test_new_state_needs_a_contact_id(model):
    with pytest.raises(ScoringError):
        model.apply_event(None, ev("page_view", T0, cid=""))


def test_state_is_slotted_and_repr(model):
    st, _ = month_of_activity(model)
    assert not hasattr(st, "__dict__") and isinstance(st, ContactState)
    assert "stage=sql" in repr(st)


def test_model_defaults_to_default_rules():
    assert ScoringModel().version == ScoringModel(None).rules.version
