"""A broker-free stand-in for the worker's topics: one pipeline over every partition, with the
repartition and account-shares topics played back as Kafka would (each record into the partition it
names, in order). For tests of routing, identity and accounts through the batch step."""

from __future__ import annotations

from agents.cooling import CoolingSchedule
from agents.pipeline import (
    ERASURES, EVENTS, FORWARDED, IDENTITIES, MEMBERSHIPS, MERGES, PROFILES, SHARES, TICK, TICKS, Pipeline, RawMessage,
)
from scoring import BehaviourEvent, ScoringModel, default_rules
from scoring.accounts import account_key
from scoring.identity import alias_target
from streams.codec import AvroCodec
from streams.routing import ContactRouter
from tests.scoring.helpers import DAY, T0

PARTITIONS = 4
KINDS = {"ev": EVENTS, "prof": PROFILES, "id": IDENTITIES, "merge": MERGES, "erase": ERASURES, "memb": MEMBERSHIPS,
         "shares": SHARES, "rep": FORWARDED, "ticks": TICKS}
codec = AvroCodec()
MODEL = ScoringModel(default_rules())


class Cluster:
    """One pipeline over every partition; `run` feeds records and replays what is forwarded until
    nothing is left, like the repartition topic would."""

    def __init__(self) -> None:
        self.table: dict[bytes, bytes] = {}
        self.router = ContactRouter(PARTITIONS)
        self.pipeline = Pipeline(codec, MODEL, self.table, KINDS, router=self.router, repartition_topic="rep",
                                 clock=lambda: T0 + 30 * DAY)
        self.offsets = {p: 0 for p in range(PARTITIONS)}
        self.dead: list[dict] = []
        self.lifecycle: list[dict] = []
        self.scores: dict[bytes, bytes | None] = {}
        self.accounts: list[dict] = []
        self.schedule = CoolingSchedule()

    def message(self, topic: str, partition: int, key, value, headers=()) -> RawMessage:
        self.offsets[partition] += 1
        return RawMessage(topic, partition, self.offsets[partition], key, value, list(headers))

    def run(self, messages: list[RawMessage]) -> None:
        for _ in range(20):
            if not messages:
                return
            out = self.pipeline.process(messages, due=self.schedule.pop_due)
            for partition, key, at in out.touched:
                self.schedule.schedule(partition, key, at)
            self.dead += [codec.decode("DeadLetter", r.value) for r in out.dead_letters]
            self.lifecycle += [codec.decode("LifecycleChange", r.value) for r in out.lifecycle]
            self.accounts += [codec.decode("AccountChange", r.value) for r in out.accounts]
            for r in out.scores:
                self.scores[r.key] = r.value
            messages = [self.message("rep", r.partition, r.key, r.value, r.headers) for r in out.forwarded]
            messages += [self.message("shares", r.partition, r.key, r.value) for r in out.shares]
        raise AssertionError("forwarding did not settle")

    def tick(self, at: int) -> None:
        """A cooling tick into every partition, as the worker's timer sends them."""
        self.run([self.message("ticks", p, None, TICK.pack(at)) for p in range(PARTITIONS)])

    def send(self, topic: str, record: str, rec: dict, partition: int) -> RawMessage:
        return self.message(topic, partition, None, codec.encode(record, rec))

    def state(self, contact_id: str):
        raw = self.table.get(contact_id.encode())
        return None if raw is None or alias_target(raw) else MODEL.decode_state(raw)

    def account(self, account_id: str):
        raw = self.table.get(account_key(account_id).encode())
        return None if raw is None else self.pipeline.accounts.decode(raw, account_id)


def event(cid: str, eid: str, et: str, at: int, anon: str | None = None, **props) -> dict:
    return {"event_id": eid, "contact_id": cid, "event_type": et, "occurred_at": at, "properties": props,
            "source": "test", "anonymous_id": anon}


def link(anon: str, cid: str, at: int, lid: str | None = None) -> dict:
    return {"link_id": lid or f"link-{anon}", "anonymous_id": anon, "contact_id": cid, "linked_at": at,
            "source": "test"}


def as_events(recs: list[dict], cid: str) -> list[BehaviourEvent]:
    return [BehaviourEvent(**{**r, "contact_id": cid}) for r in recs]


