"""The batch step the agent runs: decode → core → table → outputs, with no Faust in sight.

One call handles a whole batch of Kafka messages from every input topic: messages are decoded and
validated, grouped by contact (keeping their order), each contact's state is read once, the pure
scoring core is applied to all of the contact's inputs, and the state is written back once. What
comes out (lifecycle changes, score snapshots, dead letters, re-keyed inputs) is returned as encoded
records for the caller to publish in one go.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from scoring.errors import ScoringError
from scoring.events import (
    BehaviourEvent, ContactProfile, QualificationUpdate, validate_event, validate_profile,
    validate_qualification,
)
from scoring.model import ScoringModel, event_hash
from streams.codec import AvroCodec, DecodeError

# What an input topic carries.
EVENTS, PROFILES, QUALIFICATIONS, ERASURES = "events", "profiles", "qualifications", "erasures"
RECORD_OF = {
    EVENTS: "BehaviourEvent", PROFILES: "ContactProfile",
    QUALIFICATIONS: "QualificationUpdate", ERASURES: "EraseRequest",
}


@dataclass(frozen=True, slots=True)
class RawMessage:
    """What the pipeline needs of a consumed Kafka message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    event: Any = None  # the framework's event object, handed back to `focus` (see Pipeline)


@dataclass(frozen=True, slots=True)
class Record:
    """An encoded record to publish. `partition`: the contact's, which is its source message's (all
    topics are co-partitioned), so the record joins that partition's transaction under exactly_once."""

    key: bytes | None
    value: bytes | None
    partition: int | None = None
    topic: str | None = None  # only for re-keyed inputs, which go back to their own topic
    source: int | None = None  # re-keyed inputs: the partition they came from (whose transaction they join)


@dataclass
class Outputs:
    lifecycle: list[Record] = field(default_factory=list)
    scores: list[Record] = field(default_factory=list)
    dead_letters: list[Record] = field(default_factory=list)
    rekeyed: list[Record] = field(default_factory=list)
    changes: list[Any] = field(default_factory=list)  # LifecycleChange values, for metrics and logs
    consumed: dict[str, int] = field(default_factory=dict)  # valid inputs by event type / kind
    rejected: dict[str, int] = field(default_factory=dict)  # dead letters by error class
    lags_ms: list[int] = field(default_factory=list)  # event time → scored, per behaviour event
    touched: list[tuple[int, str, int | None]] = field(default_factory=list)  # (partition, contact, next cooling)


def now_ms() -> int:
    return int(time.time() * 1000)


def change_record(change) -> dict:
    return {
        "change_id": change.change_id,
        "contact_id": change.contact_id,
        "kind": change.kind,
        "from_value": change.from_value,
        "to_value": change.to_value,
        "at": change.at,
        "cause_event_id": change.cause_event_id,
        "score": float(change.score),
        "engagement": float(change.engagement),
        "fit": float(change.fit),
        "grade": change.grade,
        "explanation": {k: float(v) for k, v in change.explanation.items()},
        "rules_version": change.rules_version,
    }


def snapshot_record(snap) -> dict:
    return {
        "contact_id": snap.contact_id,
        "at": snap.at,
        "score": float(snap.score),
        "engagement": float(snap.engagement),
        "fit": float(snap.fit),
        "grade": snap.grade,
        "temperature": snap.temperature,
        "stage": snap.stage,
        "explanation": {k: float(v) for k, v in snap.explanation.items()},
        "rules_version": snap.rules_version,
    }


def to_domain(kind: str, rec: dict):
    """A decoded Avro record of the given input kind as the core's value object."""
    if kind == EVENTS:
        return BehaviourEvent(
            event_id=rec["event_id"], contact_id=rec["contact_id"], event_type=rec["event_type"],
            occurred_at=rec["occurred_at"], properties=rec["properties"], source=rec["source"],
            anonymous_id=rec["anonymous_id"],
        )
    if kind == PROFILES:
        return ContactProfile(**rec)
    if kind == QUALIFICATIONS:
        return QualificationUpdate(**rec)
    return rec  # an erase request stays a dict: contact_id, request_id, requested_at


_VALIDATE = {EVENTS: validate_event, PROFILES: validate_profile, QUALIFICATIONS: validate_qualification}


DEAD_LETTER_HEADROOM = 64 * 1024  # for the dead letter's own fields and the record overhead


class EraseRequestInvalid(ScoringError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"field {field!r}: {reason}")
        self.field, self.reason = field, reason


class Pipeline:
    """Holds what every batch needs: the codec, the scoring model, the contact table, topic kinds."""

    def __init__(
        self,
        codec: AvroCodec,
        model: ScoringModel,
        table: MutableMapping[bytes, bytes],
        kinds: dict[str, str],
        clock: Callable[[], int] = now_ms,
        focus: Callable[[RawMessage], None] | None = None,
        max_dead_letter_bytes: int = 8 * 1024 * 1024 - DEAD_LETTER_HEADROOM,
    ):
        self.codec = codec
        self.model = model
        self.table = table
        self.kinds = kinds
        self.clock = clock
        # Called with a contact's source message before its state is read or written: a partitioned
        # store (Faust's) must know which partition the contact lives in.
        self.focus = focus or (lambda msg: None)
        # An original value larger than this is kept truncated, and the reason says so: a dead letter
        # the producer or the topic refuses would stop the worker.
        self.max_dead_letter_bytes = max_dead_letter_bytes

    # -- decoding ---------------------------------------------------------------------------------

    def dead_letter(self, msg: RawMessage, error: Exception, at: int, out: Outputs) -> None:
        cls = type(error).__name__
        original, reason = msg.value, getattr(error, "reason", None) or str(error)
        if original is not None and len(original) > self.max_dead_letter_bytes:
            reason += f" (original value of {len(original)} bytes truncated to its first {self.max_dead_letter_bytes})"
            original = original[: self.max_dead_letter_bytes]
        value = self.codec.encode(
            "DeadLetter",
            {
                "source_topic": msg.topic,
                "source_partition": msg.partition,
                "source_offset": msg.offset,
                "original_key": msg.key,
                "original_value": original,
                "error_class": cls,
                "field": getattr(error, "field", None),
                "reason": reason,
                "failed_at": at,
            },
        )
        # Same partition as the source: keeps the DLQ write in the source partition's transaction.
        out.dead_letters.append(Record(msg.key, value, msg.partition))
        out.rejected[cls] = out.rejected.get(cls, 0) + 1

    def decode(self, messages: Iterable[RawMessage], now: int, out: Outputs) -> dict[str, list]:
        """Valid inputs grouped by contact, in arrival order, as (kind, value, source message)."""
        by_contact: dict[str, list] = {}
        decode = self.codec.decode
        kinds = self.kinds
        consumed = out.consumed
        for msg in messages:
            kind = kinds[msg.topic]
            try:
                value = to_domain(kind, decode(RECORD_OF[kind], msg.value))
                if kind == ERASURES:
                    if not value["contact_id"].strip():
                        raise EraseRequestInvalid("contact_id", "empty")
                    contact_id = value["contact_id"]
                else:
                    _VALIDATE[kind](value, now)
                    contact_id = value.contact_id
            except (DecodeError, ScoringError, TypeError) as exc:
                self.dead_letter(msg, exc, now, out)
                continue
            if msg.key != contact_id.encode():
                # Keyed otherwise (or not keyed): send it back to its topic keyed by contact, so it
                # lands in the partition that owns the contact's state.
                out.rekeyed.append(Record(contact_id.encode(), msg.value, None, msg.topic, msg.partition))
                continue
            label = value.event_type if kind == EVENTS else kind
            consumed[label] = consumed.get(label, 0) + 1
            items = by_contact.get(contact_id)
            if items is None:
                by_contact[contact_id] = [(kind, value, msg)]
            else:
                items.append((kind, value, msg))
        return by_contact

    # -- the batch step ---------------------------------------------------------------------------

    def process(self, messages: Iterable[RawMessage]) -> Outputs:
        """The hot path: one table read and one table write per contact per batch."""
        out = Outputs()
        now = self.clock()
        table = self.table
        model = self.model
        for contact_id, items in self.decode(messages, now, out).items():
            source = items[-1][2]
            self.focus(source)
            key = contact_id.encode()
            raw = table.get(key)
            state = model.decode_state(raw) if raw is not None else None
            changes: list = []
            erased = False
            segment: list = []  # inputs since the last erasure, applied in one core call
            for kind, value, msg in items:
                if kind != ERASURES:
                    segment.append((value, msg))
                    continue
                state = self._apply(state, segment, changes, out, now)
                segment = []
                changes.append(model.erase(contact_id, value["requested_at"]))
                state, erased = None, True
            if segment:
                state = self._apply(state, segment, changes, out, now)
                erased = erased and state is None
            if state is None:
                if erased:
                    table.pop(key, None)
                    out.scores.append(Record(key, None, source.partition))  # tombstone: CRMs forget the contact too
                    out.touched.append((source.partition, contact_id, None))
            else:
                table[key] = model.encode_state(state)
                out.scores.append(Record(key, self.codec.encode("ScoreSnapshot", snapshot_record(model.snapshot(state))),
                                         source.partition))
                out.touched.append((source.partition, contact_id, model.next_cooling_at(state)))
            self._publish(key, source.partition, changes, out)
        return out

    def _apply(self, state, segment: list, changes: list, out: Outputs, now: int):
        """One core call for a contact's (input, source message) pairs; inputs the core refuses
        (an event later than the late tolerance, an illegal transition) become dead letters."""
        inputs = [value for value, _ in segment]
        rejected: list = []
        # Events the contact already counted (read again after a crash or a rebalance) change nothing
        # and are left out of the consumed and freshness figures too.
        seen = state.seen if state is not None else None
        repeats = [v for v in inputs if type(v) is BehaviourEvent and v.event_id and event_hash(v.event_id) in seen] \
            if seen else ()
        for value in repeats:
            out.consumed[value.event_type] -= 1
        # In place: the state was decoded for this batch and belongs to nobody else.
        state, more = self.model.apply_inputs(state, inputs, rejected=rejected, inplace=True)
        changes.extend(more)
        if rejected:
            source = {id(value): msg for value, msg in segment}
            for value, exc in rejected:
                self.dead_letter(source[id(value)], exc, now, out)
        lags = out.lags_ms
        skip = {id(v) for v in repeats}
        for value in inputs:
            if type(value) is BehaviourEvent and id(value) not in skip:
                lags.append(now - value.occurred_at)
        return state

    def _publish(self, key: bytes, partition: int, changes: list, out: Outputs) -> None:
        encode = self.codec.encode
        for change in changes:
            out.lifecycle.append(Record(key, encode("LifecycleChange", change_record(change)), partition))
        out.changes.extend(changes)

    # -- time -------------------------------------------------------------------------------------

    def cool(self, tick: RawMessage, contact_ids: Iterable[str], now: int, out: Outputs) -> None:
        """Advance the given contacts of the tick's partition to `now`: cooling with no new event."""
        self.focus(tick)
        table = self.table
        model = self.model
        for contact_id in contact_ids:
            key = contact_id.encode()
            raw = table.get(key)
            if raw is None:  # erased since the timer was set
                continue
            state, changes = model.advance(model.decode_state(raw), now)
            table[key] = model.encode_state(state)
            out.scores.append(Record(key, self.codec.encode("ScoreSnapshot", snapshot_record(model.snapshot(state))),
                                     tick.partition))
            out.touched.append((tick.partition, contact_id, model.next_cooling_at(state)))
            self._publish(key, tick.partition, changes, out)
