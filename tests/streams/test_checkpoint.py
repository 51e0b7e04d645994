"""The checkpoint's order, with fakes for Kafka and the store: outputs, then states (changelog, then
local store), then offsets; batches complete in read order; a failure at any step stops everything
after it, for that batch and every later one. Under exactly_once: one transaction per partition
holding the partition's outputs, states and offsets, and the store only after the commit."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.structs import TopicPartition
from faust.types import TP

from agents.writebehind import WriteBehind
from streams import failpoints
from streams.checkpoint import Batch, Checkpoint, TransactionalKafka

CL = "app-contacts-changelog"


class Journal(list):
    def kinds(self, handed: bool = False):
        return [e[0] for e in self if handed or not e[0].startswith("handed")]


class FakeKafka:
    def __init__(self, journal: Journal, transactional: bool = False):
        self.journal = journal
        self.transactional = transactional
        self.gates: dict[str, asyncio.Future] = {}  # step name → a future the step waits for
        self.fail: set[str] = set()
        self.next_offset: dict[tuple[str, int], int] = {}

    async def _step(self, name: str):
        gate = self.gates.get(name)
        if gate is not None:
            await gate
        if name in self.fail:
            raise RuntimeError(f"broker refused {name}")

    def _reach(self, records):
        reached = {}
        for topic, partition, *_ in records:
            off = self.next_offset.get((topic, partition), 0)
            self.next_offset[topic, partition] = off + 1
            reached[topic, partition] = off
        return reached

    async def hand_off(self, records):
        name = "changelog" if records and records[0][0] == CL else "outputs"
        self.journal.append(("handed " + name, [(t, p, k) for t, p, k, *_ in records]))

        async def delivered():
            await self._step(name)
            self.journal.append((name, [(t, p, k) for t, p, k, *_ in records]))
            return self._reach(records)

        return asyncio.ensure_future(delivered())

    async def commit_offsets(self, offsets):
        await self._step("offsets")
        self.journal.append(("offsets", dict(offsets)))

    async def commit_transactions(self, records, offsets):
        await self._step("transaction")
        self.journal.append(("transaction", {p: [(t, k) for t, _, k, *_ in rs] for p, rs in records.items()},
                             dict(offsets)))
        return self._reach([r for rs in records.values() for r in rs])


class FakeStore:
    def __init__(self, journal: Journal):
        self.journal = journal
        self.data: dict[bytes, bytes] = {}

    def get(self, key, default=None):
        return self.data.get(key, default)

    def write(self, partition, items, held):
        for k, v in items:
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v
        self.journal.append(("store", partition, list(items), held))


def world(transactional=False):
    journal = Journal()
    kafka = FakeKafka(journal, transactional)
    store = FakeStore(journal)
    states = WriteBehind(store)
    fatal: list = []
    cp = Checkpoint(kafka, store, states, CL, on_fatal=lambda what, exc: fatal.append(exc))
    return journal, kafka, store, states, cp, fatal


def one_batch(states: WriteBehind, partition: int, key: bytes, value: bytes, offset: int) -> Batch:
    number = states.begin()
    states.focus(partition)
    states[key] = value
    return Batch(number, {TP("events", partition): offset + 1},
                 {partition: [("lifecycle", partition, key, b"change", None)]})


@pytest.fixture(autouse=True)
def no_failpoints():
    failpoints.configure("")
    yield
    failpoints.configure("")


async def test_at_least_once_order_is_outputs_then_changelog_then_store_then_offsets():
    journal, kafka, store, states, cp, fatal = world()
    await cp.submit(one_batch(states, 2, b"c1", b"s1", offset=9))
    assert await cp.drain(1.0)
    assert journal.kinds() == ["outputs", "changelog", "store", "offsets"]
    done = [e for e in journal if not e[0].startswith("handed")]
    assert done[0][1] == [("lifecycle", 2, b"c1")] and done[1][1] == [(CL, 2, b"c1")]
    assert done[2] == ("store", 2, [(b"c1", b"s1")], 0)  # with the changelog offset it reached
    assert done[3] == ("offsets", {TP("events", 2): 10})
    # The changelog is handed over only once the outputs are delivered.
    assert journal.kinds(handed=True).index("handed changelog") > journal.kinds(handed=True).index("outputs")
    assert cp.committed == {TP("events", 2): 10} and not fatal and states.pending == {}


async def test_outputs_are_handed_over_at_submit_in_read_order_and_states_after_the_earlier_batchs():
    """A contact's snapshots and changes reach their (compacted) topics in the order its states were
    computed, even when a later batch's deliveries come back first."""
    journal, kafka, store, states, cp, fatal = world()
    loop = asyncio.get_running_loop()
    gate = kafka.gates["outputs"] = loop.create_future()
    await cp.submit(one_batch(states, 0, b"a", b"1", offset=0))
    assert journal.kinds(handed=True) == ["handed outputs"]  # at submit, before the next batch is read
    await asyncio.sleep(0.01)
    del kafka.gates["outputs"]
    await cp.submit(one_batch(states, 0, b"a", b"2", offset=1))  # the same contact, newer state
    await asyncio.sleep(0.05)
    handed = [e for e in journal if e[0] == "handed changelog"]
    assert handed == []  # the second batch's state waits for the first's to be handed over
    gate.set_result(None)
    assert await cp.drain(1.0)
    changelog = [e for e in journal if e[0] == "handed changelog"]
    stores = [e[2] for e in journal if e[0] == "store"]
    assert len(changelog) == 2 and stores == [[(b"a", b"1")], [(b"a", b"2")]]


async def test_a_later_batch_never_reaches_the_store_or_commits_before_an_earlier_one():
    journal, kafka, store, states, cp, fatal = world()
    loop = asyncio.get_running_loop()
    first_outputs = kafka.gates["outputs"] = loop.create_future()
    await cp.submit(one_batch(states, 0, b"a", b"1", offset=0))
    await asyncio.sleep(0.01)  # the first batch is waiting for its outputs
    del kafka.gates["outputs"]  # the second batch's outputs go through at once
    await cp.submit(one_batch(states, 0, b"b", b"2", offset=1))
    await asyncio.sleep(0.05)
    assert "store" not in journal.kinds() and "offsets" not in journal.kinds()  # the second waits for the first
    first_outputs.set_result(None)
    assert await cp.drain(1.0)
    stores = [e for e in journal if e[0] == "store"]
    offsets = [e[1] for e in journal if e[0] == "offsets"]
    assert [s[2] for s in stores] == [[(b"a", b"1")], [(b"b", b"2")]]
    assert offsets == [{TP("events", 0): 1}, {TP("events", 0): 2}]


@pytest.mark.parametrize("fails, done_before", [
    ("outputs", []),
    ("changelog", ["outputs"]),
    ("offsets", ["outputs", "changelog", "store"]),
])
async def test_a_failed_step_stops_the_batch_there_and_every_later_batch(fails, done_before):
    journal, kafka, store, states, cp, fatal = world()
    kafka.fail.add(fails)
    await cp.submit(one_batch(states, 1, b"a", b"1", offset=5))
    await cp.drain(1.0)
    assert journal.kinds() == done_before
    assert len(fatal) == 1 and cp.committed == {}
    # Whatever comes after is refused outright: the worker is going down and replays from offset 5.
    kafka.fail.clear()
    with pytest.raises(RuntimeError):
        await cp.submit(one_batch(states, 1, b"b", b"2", offset=6))
    assert "offsets" not in journal.kinds()[len(done_before):]


async def test_a_batch_in_flight_behind_a_failed_one_does_not_commit():
    journal, kafka, store, states, cp, fatal = world()
    loop = asyncio.get_running_loop()
    gate = kafka.gates["changelog"] = loop.create_future()
    await cp.submit(one_batch(states, 0, b"a", b"1", offset=0))
    await cp.submit(one_batch(states, 0, b"b", b"2", offset=1))  # submitted before the first fails
    kafka.fail.add("changelog")
    gate.set_result(None)
    await cp.drain(1.0)
    assert "offsets" not in journal.kinds() and "store" not in journal.kinds()
    assert cp.committed == {} and len(fatal) == 1


@pytest.mark.parametrize("point, done_before", [
    ("checkpoint.start", []),  # (the outputs, handed over at submit, may still be delivered)
    ("checkpoint.after_outputs", ["outputs"]),
    ("checkpoint.before_offsets", ["outputs", "changelog", "store"]),
])
async def test_failpoints_fail_the_real_steps_where_they_are_named(point, done_before):
    failpoints.configure(f"{point}=raise")
    journal, kafka, store, states, cp, fatal = world()
    await cp.submit(one_batch(states, 0, b"a", b"1", offset=0))
    await cp.drain(1.0)
    await asyncio.sleep(0.01)
    assert [k for k in journal.kinds() if k != "outputs" or done_before] == done_before
    assert isinstance(fatal[0], failpoints.FailpointError)


async def test_exactly_once_is_one_transaction_per_partition_then_the_store():
    journal, kafka, store, states, cp, fatal = world(transactional=True)
    number = states.begin()
    states.focus(0)
    states[b"a"] = b"1"
    states.focus(3)
    states[b"b"] = b"2"
    batch = Batch(number, {TP("events", 0): 4, TP("repartition", 0): 8, TP("events", 3): 2},
                  {0: [("lifecycle", 0, b"a", b"x", None), ("repartition", 3, b"z", b"fwd", None)],
                   3: [("scores", 3, b"b", b"snap", None)]})
    await cp.submit(batch)
    assert await cp.drain(1.0)
    assert journal.kinds() == ["transaction", "store", "store"]  # no separate offset commit
    _, records, offsets = journal[0]
    assert records == {0: [("lifecycle", b"a"), ("repartition", b"z"), (CL, b"a")],
                       3: [("scores", b"b"), (CL, b"b")]}
    assert offsets == batch.offsets
    assert cp.committed == batch.offsets


async def test_exactly_once_failure_leaves_the_store_as_it_was():
    journal, kafka, store, states, cp, fatal = world(transactional=True)
    kafka.fail.add("transaction")
    await cp.submit(one_batch(states, 0, b"a", b"1", offset=0))
    await cp.drain(1.0)
    assert journal == [] and store.data == {} and fatal


# -- TransactionalKafka with fake producers ------------------------------------------------------

class FakeProducer:
    def __init__(self, tid, log, fail_commit=False):
        self.tid, self.log, self.fail_commit = tid, log, fail_commit

    async def start(self):
        self.log.append((self.tid, "start"))

    async def stop(self):
        self.log.append((self.tid, "stop"))

    async def begin_transaction(self):
        self.log.append((self.tid, "begin"))

    def create_batch(self):
        from aiokafka.producer.message_accumulator import BatchBuilder

        return BatchBuilder(1 << 20, 0, is_transactional=True)

    async def send_batch(self, builder, topic, *, partition):
        self.log.append((self.tid, "send", topic, partition))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(type("Meta", (), {"offset": 0})())
        return fut

    async def send_offsets_to_transaction(self, offsets, group_id):
        self.log.append((self.tid, "offsets", group_id, dict(offsets)))

    async def commit_transaction(self):
        if self.fail_commit:
            raise RuntimeError("fenced")
        self.log.append((self.tid, "commit"))

    async def abort_transaction(self):
        self.log.append((self.tid, "abort"))


async def test_partition_transactions_fence_on_prepare_and_chain_per_partition():
    log: list = []
    failing = set()
    kafka = TransactionalKafka(lambda tid: FakeProducer(tid, log, fail_commit=tid in failing), "grp", "app")
    await kafka.prepare({0, 1})
    assert sorted(log) == [("app-p0", "start"), ("app-p1", "start")]
    log.clear()
    await kafka.commit_transactions({0: [("out", 0, b"k", b"v", None)]}, {TP("events", 0): 5})
    assert log == [("app-p0", "begin"), ("app-p0", "send", "out", 0),
                   ("app-p0", "offsets", "grp", {TopicPartition("events", 0): 5}),
                   ("app-p0", "commit")]
    log.clear()
    await kafka.prepare({1, 2})  # partition 0 went to another worker, 2 came
    assert sorted(log) == [("app-p0", "stop"), ("app-p2", "start")]
    failing.add("app-p3")
    log.clear()
    with pytest.raises(RuntimeError):  # not prepared: started on first use; its commit fails → aborted
        await kafka.commit_transactions({3: [("out", 3, b"k", b"v", None)]}, {TP("events", 3): 1})
    assert log[-1] == ("app-p3", "abort")
    with pytest.raises(RuntimeError, match="an earlier batch failed"):  # the partition's next batch refuses
        await kafka.commit_transactions({3: [("out", 3, b"k", b"v", None)]}, {TP("events", 3): 2})
    await kafka.commit_transactions({1: []}, {TP("events", 1): 3})  # other partitions go on
    assert log[-1] == ("app-p1", "commit")


async def test_offset_commits_are_coalesced_while_one_is_on_its_way():
    from streams.checkpoint import AtLeastOnceKafka

    loop = asyncio.get_running_loop()
    committed, gates = [], []

    async def commit(offsets):
        gate = loop.create_future()
        gates.append(gate)
        await gate
        committed.append(dict(offsets))

    kafka = AtLeastOnceKafka(None, commit)
    first = asyncio.ensure_future(kafka.commit_offsets({TP("e", 0): 10}))
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(kafka.commit_offsets({TP("e", p): o})) for p, o in ((0, 20), (1, 5), (0, 30))]
    await asyncio.sleep(0)
    assert len(gates) == 1  # one request in flight; the three others wait for the next
    gates[0].set_result(None)
    await first
    await asyncio.sleep(0)
    assert len(gates) == 2 and not any(f.done() for f in later)
    gates[1].set_result(None)
    await asyncio.gather(*later)
    assert committed == [{TP("e", 0): 10}, {TP("e", 0): 30, TP("e", 1): 5}]


async def test_a_failed_commit_fails_every_batch_waiting_for_it():
    from streams.checkpoint import AtLeastOnceKafka

    async def commit(offsets):
        raise RuntimeError("coordinator gone")

    kafka = AtLeastOnceKafka(None, commit)
    with pytest.raises(RuntimeError, match="coordinator gone"):
        await kafka.commit_offsets({TP("e", 0): 1})
