"""The small runtime parts, alone: the contact router, failpoints, the watchdog's judgement, the
version check of the Faust/aiokafka patches and the agent's queue across a rebalance."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from streams import compat, failpoints
from streams.bootstrap import Runtime
from streams.bulk import BulkDelivery
from streams.routing import ContactRouter, murmur2_partition
from streams.watchdog import EXIT_FATAL, EXIT_STALLED, Signals, Watchdog, stall_reason


# -- routing ---------------------------------------------------------------------------------------

@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=64))
def test_the_owner_is_the_java_clients_default_partition(contact_id, partitions):
    key = contact_id.encode()
    java = DefaultPartitioner()(key, list(range(partitions)), list(range(partitions)))
    assert murmur2_partition(key, partitions) == java == ContactRouter(partitions).owner(contact_id)


@pytest.mark.parametrize("key, java_hash", [
    # Apache Kafka's UtilsTest.testMurmur2: what the Java client's Utils.murmur2 returns.
    (b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829), (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
])
@pytest.mark.parametrize("partitions", [1, 4, 6, 12, 100])
def test_placements_match_the_java_clients_published_hashes(key, java_hash, partitions):
    assert murmur2_partition(key, partitions) == (java_hash & 0x7FFFFFFF) % partitions


def test_the_router_refuses_no_partitions():
    with pytest.raises(ValueError):
        ContactRouter(0)


# -- failpoints ------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("", {}),
    ("a=raise", {"a": ("raise", 1)}),
    (" a=raise@3 , b=hang ", {"a": ("raise", 3), "b": ("hang", 1)}),
])
def test_failpoint_specs(spec, expected):
    assert failpoints.parse(spec) == expected


@pytest.mark.parametrize("bad", ["a", "a=explode", "a=raise@x", "=hang@2x"])
def test_a_bad_failpoint_spec_names_itself(bad):
    with pytest.raises(ValueError, match="LEADPULSE_FAILPOINTS"):
        failpoints.parse(bad)


async def test_a_failpoint_fires_from_its_nth_hit_and_hangs_when_told():
    failpoints.configure("p=raise@2,h=hang")
    try:
        await failpoints.hit("p")  # first: not yet
        with pytest.raises(failpoints.FailpointError):
            await failpoints.hit("p")
        await failpoints.hit("other")  # unnamed points do nothing
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(failpoints.hit("h"), 0.05)
    finally:
        failpoints.configure("")


# -- the watchdog ----------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def signals(clock, *, waiting=False, progress=None, recovering=False, read=0, beat=None):
    state = dict(waiting=waiting, progress=progress, recovering=recovering, read=read, beat=beat)
    s = Signals(work_waiting=lambda: state["waiting"],
                last_progress=lambda: clock() if state["progress"] is None else state["progress"],
                recovering=lambda: state["recovering"], recovery_progress=lambda: state["read"],
                heartbeat=lambda: clock() if state["beat"] is None else state["beat"])
    return s, state


def test_idle_is_live_and_waiting_input_with_no_progress_is_a_stall():
    clock = Clock()
    s, state = signals(clock)
    assert stall_reason(s, clock(), 10, (0, clock()))[0] == ""
    state.update(waiting=True, progress=clock() - 11)
    assert "no batch has completed for 11 s" in stall_reason(s, clock(), 10, (0, clock()))[0]
    state.update(waiting=False)  # nothing to do: an old last batch is not a stall
    assert stall_reason(s, clock(), 10, (0, clock()))[0] == ""


def test_a_recovery_that_reads_nothing_is_a_stall_one_that_reads_is_not():
    clock = Clock()
    s, state = signals(clock, recovering=True, read=500)
    marker = (-1, clock())
    reason, marker = stall_reason(s, clock(), 10, marker)
    assert reason == "" and marker == (500, clock())
    clock.t += 9
    state["read"] = 900  # progress: records restored
    reason, marker = stall_reason(s, clock(), 10, marker)
    assert reason == "" and marker == (900, clock())
    clock.t += 11
    reason, marker = stall_reason(s, clock(), 10, marker)
    assert reason == "rebalancing or restoring the assigned partitions for 11 s without reading a changelog record"
    state["recovering"] = False  # done: no stall, whatever the count
    assert stall_reason(s, clock(), 10, marker)[0] == ""


def test_a_blocked_event_loop_is_a_stall():
    clock = Clock()
    s, _ = signals(clock, beat=clock() - 30)
    assert "event loop has not run for 30 s" in stall_reason(s, clock(), 10, (0, clock()))[0]


def test_a_stall_fails_liveness_then_exits_unless_it_clears():
    clock = Clock()
    s, state = signals(clock, waiting=True, progress=clock() - 20)
    exits = []
    dog = Watchdog(s, stall_after=10, exit_after=5, exit=exits.append, clock=clock)
    dog.check()
    assert dog.live()[0] is False and exits == []
    state["progress"] = None  # a batch completed: live again
    dog.check()
    assert dog.live() == (True, "") and exits == []
    state["progress"] = clock() - 20
    dog.check()
    clock.t += 5
    dog.check()
    assert exits == [EXIT_STALLED]


def test_fatal_fails_liveness_and_exits_at_once():
    clock = Clock()
    s, _ = signals(clock)
    exits = []
    dog = Watchdog(s, stall_after=10, exit=exits.append, clock=clock)
    dog.fatal("a batch failed")
    assert dog.live() == (False, "fatal: a batch failed")
    import time as _time

    _time.sleep(0.7)
    assert exits == [EXIT_FATAL]


# -- the compat version check ----------------------------------------------------------------------

def test_the_installed_versions_are_the_ones_the_patches_target():
    compat.check_versions()  # what `make venv` installs from constraints.txt


def test_another_version_is_refused_naming_every_package():
    found = dict(compat.REQUIRED, **{"aiokafka": "0.15.0", "faust-streaming": None})
    with pytest.raises(compat.CompatError) as err:
        compat.check_versions(found)
    assert "aiokafka 0.15.0 (needs 0.14.0)" in str(err.value)
    assert "faust-streaming not installed (needs 0.15.3)" in str(err.value)


# -- bulk delivery across a rebalance ----------------------------------------------------------------

def _msg(offset: int, partition: int = 2) -> SimpleNamespace:
    return SimpleNamespace(topic="lead-events", partition=partition, offset=offset)


async def test_faust_resuming_the_flow_keeps_the_fetches_waiting_for_the_agent():
    """A recovery seeks the inputs, resumes them, then resumes the flow; Faust empties its own queues
    there. Fetches made after the seek and dropped there were never read again (3 events lost in a
    fault run), so the agent's queue is not one of them."""
    import faust

    app = faust.App("leadpulse-test-bulk", broker="kafka://127.0.0.1:1")
    delivery = BulkDelivery(["lead-events"])
    await delivery.put([_msg(173), _msg(174)])
    app.flow_control.suspend()
    app.flow_control.resume()
    assert delivery.pending() == 1
    assert [x.offset for x in await delivery.take(10)] == [173, 174]


async def test_a_rebalance_drops_the_fetches_not_taken_before_it_drains():
    delivery = BulkDelivery(["lead-events"], maxsize=2)
    await delivery.put([_msg(1), _msg(2)])
    await delivery.put([_msg(3)])
    blocked = asyncio.ensure_future(delivery.put([_msg(4)]))  # the fetch loop, waiting for room
    await asyncio.sleep(0)
    drained = []

    async def drain(timeout):
        drained.append(delivery.pending())
        return True

    rt = SimpleNamespace(recovered=True, delivery=delivery, drain=drain, settings=SimpleNamespace(stall_timeout_s=1),
                         checkpoint=SimpleNamespace(in_flight=lambda: 0), store=SimpleNamespace(forget=lambda: None))
    await Runtime.on_revoked(rt, None)
    assert drained == [0] and rt.recovered is False
    await asyncio.wait_for(blocked, 1)  # woken by the clear, not stuck behind the dropped fetches


async def test_what_a_seek_makes_the_fetch_loop_read_again_is_handed_over_once():
    delivery = BulkDelivery(["lead-events"])
    await delivery.put([_msg(173), _msg(174)])
    await delivery.put([_msg(9, partition=0)])
    await delivery.put([_msg(173), _msg(174), _msg(175)])  # sought back to the committed offset: read again
    got = await delivery.take(100)
    assert [(x.partition, x.offset) for x in got] == [(2, 173), (2, 174), (0, 9), (2, 175)]
    delivery.clear()  # a rebalance: whatever comes next is new
    await delivery.put([_msg(173)])
    assert [x.offset for x in await delivery.take(100)] == [173]
