"""The batch step the agent runs: decode → route → core → table → outputs, with no Faust in sight.

One call handles a whole batch of Kafka messages from every input topic: messages are decoded and
validated, routed (an input in another partition than its contact's owner is forwarded there, see
`streams.routing`), grouped by contact (keeping their order), each contact's state is read once,
the pure scoring core is applied to all of the contact's inputs, and the state is written back
once; cooling ticks then cool the contacts due. What comes out (lifecycle changes, score
snapshots, dead letters, forwarded inputs) is returned as encoded records for the checkpoint to
make durable in one go. Anything a message can make the decoder or a validator raise becomes a dead
letter: no input can stop a partition.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from scoring.errors import ScoringError
from scoring.events import (
    BehaviourEvent, ContactProfile, QualificationUpdate, behaviour_event, validate_event, validate_profile,
    validate_qualification,
)
from scoring.model import ScoringModel, event_hash
from streams.codec import AvroCodec, RegistryError
from streams.routing import ContactRouter

# What an input topic carries.
EVENTS, PROFILES, QUALIFICATIONS, ERASURES = "events", "profiles", "qualifications", "erasures"
TICKS, FORWARDED = "ticks", "forwarded"
KIND_HEADER, SOURCE_HEADER = "leadpulse-kind", "leadpulse-source"  # on forwarded inputs
#: Errors that are not the record's fault (an unreachable or refusing schema registry): they stop
#: the batch, and the worker, instead of dead-lettering a valid record.
NOT_THE_RECORDS_FAULT: tuple[type[BaseException], ...] = (RegistryError,)
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
    headers: Any = ()


@dataclass(slots=True)
class Record:
    """An encoded record to publish into `partition` of its output topic. It joins the transaction
    of `source`, the input partition that caused it (default: `partition` itself: a contact's
    outputs go to its own partition of every co-partitioned topic).

    Not frozen: a frozen dataclass stores each field through object.__setattr__, which made building
    the one or two records per contact of a batch cost 4× as much; nothing mutates or hashes them."""

    key: bytes | None
    value: bytes | None
    partition: int
    source: int | None = None  # forwarded inputs and their dead letters: the partition they came from
    headers: list | None = None  # forwarded inputs: their kind and provenance


@dataclass
class Outputs:
    lifecycle: list[Record] = field(default_factory=list)
    scores: list[Record] = field(default_factory=list)
    dead_letters: list[Record] = field(default_factory=list)
    forwarded: list[Record] = field(default_factory=list)  # inputs whose contact another partition owns
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
        return behaviour_event(rec["event_id"], rec["contact_id"], rec["event_type"], rec["occurred_at"],
                               rec["properties"], rec["source"], rec["anonymous_id"])
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


class InvalidTick(EraseRequestInvalid):
    """A record on the cooling-ticks topic that is not a tick (only the worker writes there)."""


class InvalidForwarded(EraseRequestInvalid):
    """A record on the repartition topic without a known input kind (only the worker writes there)."""


TICK = struct.Struct(">q")  # a cooling tick's value: the instant (epoch ms) it cools up to


def provenance(msg: RawMessage) -> tuple[str, int, int]:
    """Where an input was first read: its own topic/partition/offset, or, for one forwarded to its
    contact's partition, where it was read before that (dead letters name the original)."""
    for name, value in msg.headers or ():
        if name == SOURCE_HEADER:
            try:
                topic, partition, offset = value.decode().rsplit(":", 2)  # topic names have no ':'
                return topic, int(partition), int(offset)
            except (ValueError, AttributeError, UnicodeDecodeError):
                break
    return msg.topic, msg.partition, msg.offset


def forwarded_kind(msg: RawMessage) -> str:
    for name, value in msg.headers or ():
        if name == KIND_HEADER:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return ""


def forward_headers(msg: RawMessage, kind: str) -> list[tuple[str, bytes]]:
    """The producer's headers, plus the input's kind and where it was first read."""
    topic, partition, offset = provenance(msg)
    kept = [(k, v) for k, v in (msg.headers or ()) if k not in (KIND_HEADER, SOURCE_HEADER)]
    return kept + [(KIND_HEADER, kind.encode()), (SOURCE_HEADER, f"{topic}:{partition}:{offset}".encode())]


class Pipeline:
    """Holds what every batch needs: the codec, the scoring model, the contact table, topic kinds,
    the router and where forwarded inputs go."""

    def __init__(
        self,
        codec: AvroCodec,
        model: ScoringModel,
        table: MutableMapping[bytes, bytes],
        kinds: dict[str, str],
        router: ContactRouter | None = None,
        repartition_topic: str = "",
        clock: Callable[[], int] = now_ms,
        focus: Callable[[int], None] | None = None,
        max_dead_letter_bytes: int = 8 * 1024 * 1024 - DEAD_LETTER_HEADROOM,
    ):
        self.codec = codec
        self.model = model
        self.table = table
        self.kinds = kinds
        self.router = router
        self.repartition_topic = repartition_topic
        self.clock = clock
        # Called with a contact's partition before its state is read or written: a partitioned
        # store must know which partition the contact lives in.
        self.focus = focus or (lambda partition: None)
        # An original value larger than this is kept truncated, and the reason says so: a dead letter
        # the producer or the topic refuses would stop the worker.
        self.max_dead_letter_bytes = max_dead_letter_bytes
        self._kind_values = frozenset(kinds.values())

    # -- decoding ---------------------------------------------------------------------------------

    def dead_letter(self, msg: RawMessage, error: Exception, at: int, out: Outputs) -> None:
        cls = type(error).__name__
        original, reason = msg.value, str(getattr(error, "reason", None) or "") or str(error) or cls
        field = getattr(error, "field", None)
        if original is not None and len(original) > self.max_dead_letter_bytes:
            reason += f" (original value of {len(original)} bytes truncated to its first {self.max_dead_letter_bytes})"
            original = original[: self.max_dead_letter_bytes]
        topic, partition, offset = provenance(msg)
        value = self.codec.encode(
            "DeadLetter",
            {
                "source_topic": topic,
                "source_partition": partition,
                "source_offset": offset,
                "original_key": msg.key,
                "original_value": original,
                "error_class": cls,
                "field": field if isinstance(field, str) else None,  # any exception may land here
                "reason": reason,
                "failed_at": at,
            },
        )
        # Into the partition it was read from: under exactly_once the dead letter then commits with
        # that partition's offsets.
        out.dead_letters.append(Record(msg.key, value, msg.partition))
        out.rejected[cls] = out.rejected.get(cls, 0) + 1

    def decode(self, messages: Iterable[RawMessage], now: int, out: Outputs) -> dict[str, list]:
        """Valid inputs of the contacts this partition owns, grouped by contact in arrival order, as
        (kind, value, source message); the others forwarded or dead-lettered."""
        by_contact: dict[str, list] = {}
        decode = self.codec.decode
        kinds = self.kinds
        consumed = out.consumed
        owner = self.router.owner if self.router is not None else None
        for msg in messages:
            kind = kinds.get(msg.topic)
            if kind is None or kind == FORWARDED:
                kind = forwarded_kind(msg)
            try:
                record = RECORD_OF.get(kind)
                if record is None:
                    raise InvalidForwarded("headers", f"no known input kind in header {KIND_HEADER!r}")
                value = to_domain(kind, decode(record, msg.value))
                if kind == ERASURES:
                    if not value["contact_id"].strip():
                        raise EraseRequestInvalid("contact_id", "empty")
                    contact_id = value["contact_id"]
                else:
                    _VALIDATE[kind](value, now)
                    contact_id = value.contact_id
            except NOT_THE_RECORDS_FAULT:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever a record makes a decoder raise: a dead letter
                self.dead_letter(msg, exc, now, out)
                continue
            if owner is not None:
                home = owner(contact_id)
                if home != msg.partition:
                    # Another partition owns the contact's state: forward the record, untouched, into
                    # that partition of the repartition topic; it is scored there.
                    out.forwarded.append(Record(msg.key, msg.value, home, msg.partition, forward_headers(msg, kind)))
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

    def process(self, messages: Iterable[RawMessage],
                due: Callable[[int, int], Iterable[str]] | None = None) -> Outputs:
        """The hot path: one table read and one table write per contact per batch. Cooling ticks
        among the messages cool the contacts `due(partition, at)` names, after the batch's inputs."""
        out = Outputs()
        now = self.clock()
        table = self.table
        model = self.model
        encode = self.codec.encode
        focus = self.focus
        scores = out.scores
        touched = out.touched
        kinds = self.kinds
        ticks = [m for m in messages if kinds.get(m.topic) == TICKS] if TICKS in self._kind_values else ()
        if ticks:
            messages = [m for m in messages if kinds.get(m.topic) != TICKS]
        by_contact = self.decode(messages, now, out)
        any_erasure = ERASURES in out.consumed  # decode counts every input it keeps
        for contact_id, items in by_contact.items():
            partition = items[-1][2].partition
            focus(partition)
            key = contact_id.encode()
            raw = table.get(key)
            state = model.decode_state(raw) if raw is not None else None
            changes: list = []
            if any_erasure:
                state, erased = self._apply_erasing(contact_id, state, items, changes, out, now)
            else:
                state, erased = self._apply(state, items, changes, out, now), False
            if state is None:
                if erased:
                    table.pop(key, None)
                    scores.append(Record(key, None, partition))  # tombstone: CRMs forget the contact too
                    touched.append((partition, contact_id, None))
            else:
                table[key] = model.encode_state(state)
                scores.append(Record(key, encode("ScoreSnapshot", model.snapshot_fields(state)), partition))
                touched.append((partition, contact_id, model.next_cooling_at(state)))
            if changes:
                self._publish(key, partition, changes, out)
        for tick in ticks:
            try:
                at = TICK.unpack(tick.value)[0]
            except (struct.error, TypeError) as exc:
                self.dead_letter(tick, InvalidTick("value", f"not an 8-byte cooling instant ({exc})"), now, out)
                continue
            self.cool(tick.partition, due(tick.partition, at) if due is not None else (), at, out)
        return out

    def _apply_erasing(self, contact_id: str, state, items: list, changes: list, out: Outputs, now: int):
        """``_apply`` for inputs among which there may be erasures: (state, erased)."""
        erased = False
        segment: list = []  # inputs since the last erasure, applied in one core call
        for item in items:
            if item[0] != ERASURES:
                segment.append(item)
                continue
            state = self._apply(state, segment, changes, out, now)
            segment = []
            changes.append(self.model.erase(contact_id, item[1]["requested_at"]))
            state, erased = None, True
        if segment:
            state = self._apply(state, segment, changes, out, now)
            erased = erased and state is None
        return state, erased

    def _apply(self, state, segment: list, changes: list, out: Outputs, now: int):
        """One core call for a contact's (kind, input, source message) items; inputs the core refuses
        (an event later than the late tolerance, an illegal transition) become dead letters."""
        inputs = []
        only_events = True
        lags = out.lags_ms  # freshness: event time → scored, per behaviour event
        # Events the contact already counted (read again after a crash or a rebalance) change nothing
        # and are left out of the consumed and freshness figures too.
        seen = state.seen if state is not None else None
        for item in segment:
            value = item[1]
            inputs.append(value)
            if type(value) is BehaviourEvent:
                if seen and value.event_id and event_hash(value.event_id) in seen:
                    out.consumed[value.event_type] -= 1
                else:
                    lags.append(now - value.occurred_at)
            else:
                only_events = False
        rejected: list = []
        # In place: the state was decoded for this batch and belongs to nobody else.  Behaviour events
        # only (the usual case): apply_events directly, which is all apply_inputs would do with them.
        if only_events:
            state, more = self.model.apply_events(state, inputs, rejected=rejected, inplace=True)
        else:
            state, more = self.model.apply_inputs(state, inputs, rejected=rejected, inplace=True)
        changes.extend(more)
        if rejected:
            source = {id(item[1]): item[2] for item in segment}
            for value, exc in rejected:
                self.dead_letter(source[id(value)], exc, now, out)
        return state

    def _publish(self, key: bytes, partition: int, changes: list, out: Outputs) -> None:
        encode = self.codec.encode
        for change in changes:
            out.lifecycle.append(Record(key, encode("LifecycleChange", change_record(change)), partition))
        out.changes.extend(changes)

    # -- time -------------------------------------------------------------------------------------

    def cool(self, partition: int, contact_ids: Iterable[str], at: int, out: Outputs) -> None:
        """Cool the given contacts of `partition` by `at` (a tick): the changes decay alone makes by
        then, at their exact instants; a contact's clock moves to the last of them, never to `at`
        (see ScoringModel.cool)."""
        self.focus(partition)
        table = self.table
        model = self.model
        for contact_id in contact_ids:
            key = contact_id.encode()
            raw = table.get(key)
            if raw is None:  # erased since the timer was set
                continue
            state, changes = model.cool(model.decode_state(raw), at)
            if changes:
                table[key] = model.encode_state(state)
                out.scores.append(Record(key, self.codec.encode("ScoreSnapshot", model.snapshot_fields(state)),
                                         partition))
                self._publish(key, partition, changes, out)
            out.touched.append((partition, contact_id, model.next_cooling_at(state)))
