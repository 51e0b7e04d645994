from hypothesis import given, strategies as st

from agents.cooling import CoolingSchedule


def test_due_contacts_come_out_in_time_order_and_only_once():
    s = CoolingSchedule()
    s.schedule(0, "a", 300)
    s.schedule(0, "b", 100)
    s.schedule(1, "c", 50)
    assert s.next_due(0) == 100
    assert s.pop_due(0, 99) == []
    assert s.pop_due(0, 300) == ["b", "a"]
    assert s.pop_due(0, 300) == []
    assert s.pop_due(1, 1000) == ["c"]
    assert len(s) == 0


def test_rescheduling_replaces_the_old_instant():
    s = CoolingSchedule()
    s.schedule(0, "a", 100)
    s.schedule(0, "a", 500)
    assert s.next_due(0) == 500
    assert s.pop_due(0, 200) == []
    assert s.pop_due(0, 500) == ["a"]


def test_clearing_and_dropping_partitions():
    s = CoolingSchedule()
    s.schedule(0, "a", 100)
    s.schedule(0, "a", None)
    assert s.pop_due(0, 1000) == []
    s.schedule(2, "z", 10)
    s.drop_partitions({0})
    assert s.pop_due(2, 1000) == [] and len(s) == 0


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 1000)), max_size=50), st.integers(0, 1000))
def test_pop_due_returns_exactly_the_latest_instants_at_or_before_now(ops, now):
    s = CoolingSchedule()
    latest = {}
    for contact, at in ops:
        s.schedule(0, contact, at)
        latest[contact] = at
    assert sorted(s.pop_due(0, now)) == sorted(c for c, at in latest.items() if at <= now)
    assert s.pop_due(0, now) == []
