"""WriteBehind: later batches read what earlier ones wrote, the table only ever holds delivered
batches' states, and a crash before delivery leaves the table as it was (so a replay re-publishes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.pipeline import EVENTS, Pipeline, RawMessage
from agents.writebehind import WriteBehind
from scoring import ScoringModel, default_rules
from tests.support import codec, event


def durable(wb: WriteBehind, table: dict, batch: int) -> dict:
    """What the checkpoint does once a batch is on Kafka: its writes into the table, then released."""
    writes = wb.writes(batch)
    for items in writes.values():
        for key, value in items:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    wb.release(batch)
    return writes


def test_reads_see_held_writes_and_the_table_sees_only_durable_ones():
    table = {b"a": b"1"}
    wb = WriteBehind(table)
    first = wb.begin()
    wb[b"a"] = b"2"
    wb[b"b"] = b"3"
    assert (wb.get(b"a"), wb[b"b"], table) == (b"2", b"3", {b"a": b"1"})
    second = wb.begin()
    wb.pop(b"a")
    assert wb.get(b"a") is None and b"a" not in wb and sorted(wb) == [b"b"]
    assert durable(wb, table, first) == {0: [(b"a", b"2"), (b"b", b"3")]}  # its own states, though the second replaced one
    assert table == {b"a": b"2", b"b": b"3"} and wb.get(b"a") is None  # reads still see the second
    durable(wb, table, second)
    assert table == {b"b": b"3"} and wb.pending == {}


def test_held_writes_stay_readable_until_released():
    """Under exactly_once the states go to Kafka inside the transaction and to the store only after
    the commit: until then, a later batch and a lookup must still read them here."""
    table: dict = {}
    wb = WriteBehind(table)
    one = wb.begin()
    wb[b"k"] = b"v1"
    assert wb.writes(one) == {0: [(b"k", b"v1")]}
    assert wb.get(b"k") == b"v1" and table == {}  # taken for the transaction, not released: still read here
    wb.release(one)
    assert wb.get(b"k") is None  # released without a table write: the caller owns that order


def test_each_batch_persists_the_states_it_wrote_so_its_inputs_can_be_acknowledged():
    """Batch one's inputs are committed once batch one is durable; had it left a contact to a
    later batch, a crash before that batch was durable would lose them (the fault suite did)."""
    table: dict = {}
    wb = WriteBehind(table)
    one = wb.begin()
    wb[b"k"] = b"old"
    two = wb.begin()
    wb[b"k"] = b"new"
    assert durable(wb, table, one) == {0: [(b"k", b"old")]} and wb[b"k"] == b"new"
    assert durable(wb, table, two) == {0: [(b"k", b"new")]} and wb.pending == {}


def test_writes_are_grouped_by_the_partition_focused_when_made():
    wb = WriteBehind({})
    n = wb.begin()
    wb.focus(3)
    wb[b"a"] = b"1"
    wb.focus(1)
    wb[b"b"] = b"2"
    wb.pop(b"b")
    assert wb.writes(n) == {3: [(b"a", b"1")], 1: [(b"b", None)]}


def test_missing_keys_raise_like_a_dict():
    wb = WriteBehind({})
    wb.begin()
    with pytest.raises(KeyError):
        wb[b"x"]
    with pytest.raises(KeyError):
        del wb[b"x"]
    assert wb.pop(b"x", "d") == "d"


ops = st.lists(st.tuples(st.sampled_from(["set", "pop", "begin", "flush"]), st.sampled_from([b"a", b"b", b"c"]),
                         st.binary(min_size=1, max_size=3)), max_size=40)


@given(ops)
def test_behaves_like_a_dict_once_everything_is_flushed(script):
    table: dict = {}
    wb = WriteBehind(table)
    model: dict = {}
    batches = [wb.begin()]
    for op, key, value in script:
        if op == "set":
            wb[key] = value
            model[key] = value
        elif op == "pop":
            assert wb.pop(key, None) == model.pop(key, None)
        elif op == "begin":
            batches.append(wb.begin())
        else:
            durable(wb, table, batches.pop(0)) if batches else None
            batches = batches or [wb.begin()]
        assert {k: wb[k] for k in wb} == model
    for b in batches:
        durable(wb, table, b)
    assert table == model


def _pipeline(table):
    return Pipeline(codec, ScoringModel(default_rules()), table, kinds={"ev": EVENTS}, focus=table.focus)



def _msgs(*records):
    return [RawMessage("ev", 0, i, k, v) for i, (k, v) in enumerate(records)]


def test_a_batch_lost_before_delivery_is_replayed_with_the_same_lifecycle_changes():
    """The failure this module exists for: state written, outputs not delivered, worker killed."""
    now = 1_700_000_000_000
    msgs = _msgs(event("c1", "e1", "demo_request", now), event("c1", "e2", "free_trial_signup", now + 1))
    table: dict = {}
    wb = WriteBehind(table)
    wb.begin()
    first = _pipeline(wb).process(msgs)
    assert first.lifecycle  # cold → warm → hot: changes to publish
    wb.discard()  # the worker died before the broker acknowledged them
    assert table == {}
    wb.begin()
    again = _pipeline(wb).process(msgs)
    assert [r.value for r in again.lifecycle] == [r.value for r in first.lifecycle]


def test_an_oversized_original_is_kept_truncated_and_the_reason_says_so():
    p = Pipeline(codec, ScoringModel(default_rules()), {}, kinds={"ev": EVENTS}, max_dead_letter_bytes=1000)
    out = p.process(_msgs((b"c1", b"\x00\x00\x00\x00\x01" + b"\xff" * 5000)))
    letter = codec.decode("DeadLetter", out.dead_letters[0].value)
    assert len(letter["original_value"]) == 1000
    assert "original value of 5005 bytes truncated to its first 1000" in letter["reason"]


class _Odd(Exception):
    field = 42  # not a field name: an exception from some library, with attributes of its own


@pytest.mark.parametrize("raised", [KeyError("x"), RuntimeError(""), _Odd("odd"), ZeroDivisionError()])
def test_whatever_a_decoder_raises_becomes_a_dead_letter_and_the_next_record_is_scored(raised):
    class Exploding:
        """A codec that fails on the first record, as fastavro's UnknownType did on a JSON schema."""

        def __init__(self):
            self.calls = 0

        def decode(self, name, data):
            self.calls += 1
            if self.calls == 1:
                raise raised
            return codec.decode(name, data)

        def encode(self, name, record):
            return codec.encode(name, record)

    p = Pipeline(Exploding(), ScoringModel(default_rules()), {}, kinds={"ev": EVENTS})
    out = p.process(_msgs(event("c1", "e1", "page_view", 1_700_000_000_000),
                          event("c1", "e2", "demo_request", 1_700_000_000_001)))
    letter = codec.decode("DeadLetter", out.dead_letters[0].value)
    assert letter["error_class"] == type(raised).__name__ and letter["reason"] and letter["source_offset"] == 0
    assert letter["field"] is None or isinstance(letter["field"], str)
    assert out.consumed == {"demo_request": 1} and len(out.scores) == 1
