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
from dataclasses import dataclass, field, replace
from typing import Any

from scoring.accounts import (
    ACCOUNT_KEY_PREFIX, AccountModel, account_key, membership, pack_share, removal, unpack_share,
)
from scoring.errors import InvalidEvent, ScoringError
from scoring.events import (
    DAY_MS, BehaviourEvent, ContactProfile, QualificationUpdate, behaviour_event, validate_event, validate_profile,
    validate_qualification,
)
from scoring.identity import (
    ALIAS_MARK, MAX_HOPS, alias_target, alias_value, anonymous_contact, contact_merge, identity_link, implied_link,
    merge_cause,
)
from scoring.model import ScoringModel, event_hash
from streams.codec import AvroCodec, RegistryError
from streams.routing import ContactRouter

# What an input topic carries.
EVENTS, PROFILES, QUALIFICATIONS, ERASURES = "events", "profiles", "qualifications", "erasures"
IDENTITIES, MERGES = "identities", "merges"  # aliases: anonymous → known, loser → winner
MEMBERSHIPS, SHARES = "memberships", "account-shares"  # a contact's account; contacts' shares, by account
TICKS, FORWARDED = "ticks", "forwarded"
#: Internal, on the repartition topic only: an alias's state on its way to the contact it is merged into.
TRANSFERS = "merge-states"
KIND_HEADER, SOURCE_HEADER = "leadpulse-kind", "leadpulse-source"  # on forwarded inputs
#: On an input redirected from an alias: the contact it counts for, and how many aliases it followed.
CONTACT_HEADER, HOPS_HEADER = "leadpulse-contact", "leadpulse-hops"
MERGE_HEADER = "leadpulse-merge"  # on a state transfer: "<merge instant>|<link or merge id>"
#: Errors that are not the record's fault (an unreachable or refusing schema registry): they stop
#: the batch, and the worker, instead of dead-lettering a valid record.
NOT_THE_RECORDS_FAULT: tuple[type[BaseException], ...] = (RegistryError,)
RECORD_OF = {
    EVENTS: "BehaviourEvent", PROFILES: "ContactProfile",
    QUALIFICATIONS: "QualificationUpdate", ERASURES: "EraseRequest",
    IDENTITIES: "IdentityLink", MERGES: "ContactMerge", MEMBERSHIPS: "AccountMembership",
}
#: Inputs that are not applied with the contact's run of events: each ends a run (see _apply_special).
SPECIAL = frozenset((ERASURES, IDENTITIES, MERGES, TRANSFERS))


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
    shares: list[Record] = field(default_factory=list)  # contacts' shares, into their account's partition
    accounts: list[Record] = field(default_factory=list)  # AccountChange records
    changes: list[Any] = field(default_factory=list)  # LifecycleChange values, for metrics and logs
    consumed: dict[str, int] = field(default_factory=dict)  # valid inputs by event type / kind
    rejected: dict[str, int] = field(default_factory=dict)  # dead letters by error class
    lags_ms: list[int] = field(default_factory=list)  # event time → scored, per behaviour event
    touched: list[tuple[int, str, int | None]] = field(default_factory=list)  # (partition, contact, next cooling)


def now_ms() -> int:
    return int(time.time() * 1000)


def account_change_record(change) -> dict:
    return {
        "change_id": change.change_id, "account_id": change.account_id, "kind": change.kind,
        "from_value": change.from_value, "to_value": change.to_value, "at": change.at,
        "cause_contact_id": change.cause_contact_id, "engagement": float(change.engagement),
        "fit": float(change.fit), "contacts": change.contacts, "engaged_contacts": change.engaged_contacts,
        "roles": list(change.roles), "rules_version": change.rules_version,
    }


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


@dataclass(frozen=True, slots=True)
class StateTransfer:
    """An alias's state, forwarded to the contact it is merged into (kind TRANSFERS)."""

    alias_id: str
    contact_id: str  # the contact it is merged into
    at: int
    state: bytes


def to_domain(kind: str, rec: dict, now: int = 0, max_future_ms: int = DAY_MS):
    """A decoded Avro record of the given input kind as the core's value object. An event with no
    contact id but an anonymous id is the anonymous visitor's (`anon:<anonymous_id>`)."""
    if kind == EVENTS:
        cid, anon = rec["contact_id"], rec["anonymous_id"]
        if anon and isinstance(cid, str) and not cid.strip():
            cid = anonymous_contact(anon)
        return behaviour_event(rec["event_id"], cid, rec["event_type"], rec["occurred_at"],
                               rec["properties"], rec["source"], anon)
    if kind == PROFILES:
        return ContactProfile(**rec)
    if kind == QUALIFICATIONS:
        return QualificationUpdate(**rec)
    if kind == IDENTITIES:
        return identity_link(rec, now, max_future_ms)
    if kind == MERGES:
        return contact_merge(rec, now, max_future_ms)
    if kind == MEMBERSHIPS:
        return membership(rec, now, max_future_ms)
    return rec  # an erase request stays a dict: contact_id, request_id, requested_at


def for_contact(kind: str, value, contact_id: str):
    """An input redirected from an alias, as the contact's own."""
    if kind == EVENTS:
        v = value
        return behaviour_event(v.event_id, contact_id, v.event_type, v.occurred_at, v.properties, v.source,
                               v.anonymous_id)
    if kind == ERASURES:
        return {**value, "contact_id": contact_id}
    return replace(value, contact_id=contact_id)


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


class IdentityConflict(EraseRequestInvalid):
    """An id already merged into one contact is linked or merged into another: the first link holds."""


class AliasCycle(EraseRequestInvalid):
    """An input followed more than MAX_HOPS aliases (ids merged into each other in a loop)."""


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


def header(msg: RawMessage, wanted: str) -> str | None:
    for name, value in msg.headers or ():
        if name == wanted:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


def forwarded_kind(msg: RawMessage) -> str:
    return header(msg, KIND_HEADER) or ""


_OURS = (KIND_HEADER, SOURCE_HEADER, CONTACT_HEADER, HOPS_HEADER, MERGE_HEADER)


def forward_headers(msg: RawMessage, kind: str, extra: tuple = ()) -> list[tuple[str, bytes]]:
    """The producer's headers, plus the input's kind, where it was first read and `extra` headers."""
    topic, partition, offset = provenance(msg)
    kept = [(k, v) for k, v in (msg.headers or ()) if k not in _OURS]
    return kept + [(KIND_HEADER, kind.encode()), (SOURCE_HEADER, f"{topic}:{partition}:{offset}".encode()),
                   *((k, v.encode()) for k, v in extra)]


def own_key(contact_id: str, field: str) -> str:
    """`contact_id`, unless it starts with NUL: those keys are the worker's own (account states). The
    validators refuse it in events, profiles, qualifications, links and memberships; this covers the
    inputs they do not see (erasures, the worker's own headers)."""
    if contact_id[:1] == "\0":
        raise InvalidEvent(field, "a contact id starting with NUL is reserved for the worker's own keys")
    return contact_id


def transfer_of(msg: RawMessage) -> StateTransfer:
    """A state transfer as forwarded by `Pipeline._apply_special`."""
    contact_id, merge = header(msg, CONTACT_HEADER), header(msg, MERGE_HEADER)
    if not contact_id or not merge or "|" not in merge or not msg.value:
        raise InvalidForwarded("headers", f"a state transfer needs {CONTACT_HEADER!r}, {MERGE_HEADER!r} and a state")
    at, alias_id = merge.split("|", 1)
    try:
        return StateTransfer(alias_id, contact_id, int(at), msg.value)
    except ValueError:
        raise InvalidForwarded("headers", f"{MERGE_HEADER!r} does not start with an instant: {merge!r}") from None


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
        self._linked: dict[str, str] = {}  # anonymous ids this worker has linked (see _implied_link)
        self.accounts = AccountModel(model.rules)
        self._account_cache: dict[bytes, tuple[bytes, Any]] = {}  # key -> (bytes written, that state)

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
            redirected = None
            if kind is None or kind == FORWARDED:
                kind = forwarded_kind(msg)
                redirected = header(msg, CONTACT_HEADER)
            try:
                if kind == TRANSFERS:
                    value = transfer_of(msg)
                    contact_id = own_key(value.contact_id, "headers")
                elif kind == SHARES:
                    value = unpack_share(msg.value)
                    contact_id = account_key(value.account)
                else:
                    record = RECORD_OF.get(kind)
                    if record is None:
                        raise InvalidForwarded("headers", f"no known input kind in header {KIND_HEADER!r}")
                    value = to_domain(kind, decode(record, msg.value), now)
                    if kind == ERASURES:
                        if not value["contact_id"].strip():
                            raise EraseRequestInvalid("contact_id", "empty")
                        contact_id = own_key(value["contact_id"], "contact_id")
                    elif kind == IDENTITIES or kind == MERGES:
                        contact_id = value.source  # decided where the alias's own state lives
                    elif kind == MEMBERSHIPS:
                        contact_id = value.contact_id
                    else:
                        _VALIDATE[kind](value, now)
                        contact_id = value.contact_id
                        if kind == EVENTS and value.anonymous_id:
                            self._implied_link(value, msg, out, by_contact)
                    if redirected:
                        contact_id = own_key(redirected, "headers")
                        value = for_contact(kind, value, contact_id)
            except NOT_THE_RECORDS_FAULT:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever a record makes a decoder raise: a dead letter
                self.dead_letter(msg, exc, now, out)
                continue
            if owner is not None:
                home = owner(contact_id if kind != SHARES else value.account)
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

    def _implied_link(self, event: BehaviourEvent, msg: RawMessage, out: Outputs, by_contact: dict) -> None:
        """An event that carries both a contact id and an anonymous id (a form fill, an identify)
        links them, like an IdentityLink: into the anonymous id's partition, where its state is. Each
        worker sends a pair once (links are idempotent; re-sending one after a restart is harmless)."""
        alias = implied_link(event)
        if alias is None or self._linked.get(alias.source) == alias.target:
            return
        if len(self._linked) >= 1 << 16:
            self._linked.clear()
        anon = alias.source
        self._linked[anon] = alias.target
        home = self.router.owner(anon) if self.router is not None else msg.partition
        if home == msg.partition:
            by_contact.setdefault(anon, []).append((IDENTITIES, alias, msg))
            out.consumed[IDENTITIES] = out.consumed.get(IDENTITIES, 0) + 1
            return
        value = self.codec.encode("IdentityLink", {"link_id": alias.alias_id, "anonymous_id": event.anonymous_id,
                                                   "contact_id": alias.target, "linked_at": alias.at,
                                                   "source": event.source})
        out.forwarded.append(Record(anon.encode(), value, home, msg.partition, forward_headers(msg, IDENTITIES)))

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
        consumed = out.consumed  # decode counts every input it keeps
        any_special = any(k in consumed for k in SPECIAL)
        for contact_id, items in by_contact.items():
            partition = items[-1][2].partition
            focus(partition)
            if contact_id[0] == "\0":
                self._apply_account(contact_id, items, partition, out)
                continue
            key = contact_id.encode()
            raw = table.get(key)
            if raw is not None and raw[0] == ALIAS_MARK:  # merged into another contact: its inputs go there
                self._redirect(items, alias_target(raw), out, now)  # type: ignore[arg-type]
                if ERASURES in consumed and any(item[0] == ERASURES for item in items):
                    table.pop(key, None)  # the link itself is personal data: erased with the person
                continue
            state = model.decode_state(raw) if raw is not None else None
            account_before = state.account if state is not None else ""
            at_before = state.as_of if state is not None else 0
            changes: list = []
            if any_special:
                state, erased, target = self._apply_special(contact_id, state, items, changes, out, now)
            else:
                state, erased, target = self._apply(state, items, changes, out, now), False, None
            if state is None:
                if target is not None:
                    table[key] = alias_value(target)
                    if raw is not None:  # the contact existed: CRMs forget it, its activity is the target's
                        scores.append(Record(key, None, partition))
                    touched.append((partition, contact_id, None))
                elif erased:
                    table.pop(key, None)
                    scores.append(Record(key, None, partition))  # tombstone: CRMs forget the contact too
                    touched.append((partition, contact_id, None))
            else:
                table[key] = model.encode_state(state)
                scores.append(Record(key, encode("ScoreSnapshot", model.snapshot_fields(state)), partition))
                touched.append((partition, contact_id, model.next_cooling_at(state)))
                if state.account:
                    self._share(state, partition, out)  # its share: packed from the state itself
            if account_before and (state is None or state.account != account_before):
                # Moved to another account, merged into another contact or erased: its share goes.
                self._share(removal(account_before, contact_id, max(at_before, state.as_of if state else 0)),
                            partition, out)
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

    def _apply_special(self, contact_id: str, state, items: list, changes: list, out: Outputs, now: int):
        """``_apply`` for inputs among which there may be erasures, aliases and state transfers:
        (state, erased, alias target). An alias of this contact ends it: its state goes to the target,
        and its inputs after the alias follow (they are the target's from now on)."""
        erased = False
        segment: list = []  # inputs since the last special one, applied in one core call
        for i, item in enumerate(items):
            kind = item[0]
            if kind not in SPECIAL:
                segment.append(item)
                continue
            state = self._apply(state, segment, changes, out, now)
            segment = []
            value, msg = item[1], item[2]
            if kind == ERASURES:
                changes.append(self.model.erase(contact_id, value["requested_at"]))
                state, erased = None, True
            elif kind == TRANSFERS:
                try:
                    other = self.model.decode_state(value.state)
                    state, more = self.model.merge(state, other, value.at, merge_cause(value.alias_id), contact_id)
                except ScoringError as exc:
                    self.dead_letter(msg, exc, now, out)
                    continue
                changes.extend(more)
                erased = False
            else:
                if state is not None:
                    self._forward(msg, TRANSFERS, value.target, out, self.model.encode_state(state),
                                  ((MERGE_HEADER, f"{value.at}|{value.alias_id}"),))
                self._redirect(items[i + 1:], value.target, out, now)
                return None, False, value.target
        if segment:
            state = self._apply(state, segment, changes, out, now)
            erased = erased and state is None
        return state, erased, None

    def _redirect(self, items: list, target: str, out: Outputs, now: int) -> None:
        """Inputs of an alias, to the contact it was merged into. Another alias of the same id to the
        same contact is a re-delivery (dropped); to another contact, a conflict (dead-lettered)."""
        for kind, value, msg in items:
            if kind == IDENTITIES or kind == MERGES:
                if value.target != target:
                    self.dead_letter(msg, IdentityConflict(
                        "contact_id" if kind == IDENTITIES else "winner",
                        f"{value.source!r} was merged into {target!r} before; it cannot also be {value.target!r}"),
                        now, out)
                continue
            if kind == TRANSFERS:
                self._forward(msg, kind, target, out, msg.value, ((MERGE_HEADER, header(msg, MERGE_HEADER) or ""),))
            else:
                self._forward(msg, kind, target, out, msg.value)

    def _forward(self, msg: RawMessage, kind: str, target: str, out: Outputs, value: bytes | None,
                 extra: tuple = ()) -> None:
        """Into the target's partition of the repartition topic, counted as one more alias followed."""
        hops = int(header(msg, HOPS_HEADER) or 0) + 1
        if hops > MAX_HOPS:
            self.dead_letter(msg, AliasCycle("contact_id", f"followed {MAX_HOPS} merges without reaching a "
                                                           f"contact (last {target!r}): the merges form a loop"),
                             self.clock(), out)
            return
        home = self.router.owner(target) if self.router is not None else msg.partition
        headers = forward_headers(msg, kind, ((CONTACT_HEADER, target), (HOPS_HEADER, str(hops)), *extra))
        out.forwarded.append(Record(target.encode(), value, home, msg.partition, headers))

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

    # -- accounts ---------------------------------------------------------------------------------

    def _share(self, share, partition: int, out: Outputs) -> None:
        """A contact's share (a Share, or its state), re-keyed by its account, into the account's
        partition of the shares topic."""
        account = share.account
        home = self.router.owner(account) if self.router is not None else partition
        out.shares.append(Record(account.encode(), pack_share(share), home, partition))

    def _apply_account(self, key_text: str, items: list, partition: int, out: Outputs) -> None:
        """One account's shares of this batch: one state read and write, its changes published."""
        account = key_text[len(ACCOUNT_KEY_PREFIX):]
        key = key_text.encode()
        raw = self.table.get(key)
        accounts = self.accounts
        try:
            state = self._account_state(key, raw, account)
        except ScoringError as exc:  # never written so by the worker: keep the shares, start over
            for _, _, msg in items:
                self.dead_letter(msg, exc, self.clock(), out)
            return
        state, changes = accounts.apply(state, account, [v for _, v, _ in items])
        self._store_account(key, state, partition, changes, out)
        out.touched.append((partition, key_text, accounts.next_check_at(state)))

    def _account_state(self, key: bytes, raw: bytes | None, account: str):
        """The account's state: the one this worker wrote last when the table still holds it (accounts
        change in almost every batch: decoded once), else decoded; ScoringError if corrupt."""
        held = self._account_cache.get(key)
        if held is not None and held[0] == raw:
            return held[1]
        return self.accounts.decode(raw, account) if raw is not None else None

    def _store_account(self, key: bytes, state, partition: int, changes: list, out: Outputs) -> None:
        cache = self._account_cache
        if state is None:
            self.table.pop(key, None)
            cache.pop(key, None)
        else:
            raw = self.table[key] = self.accounts.encode(state)
            if len(cache) >= 1 << 16:
                cache.clear()
            cache[key] = (raw, state)
        encode = self.codec.encode
        for c in changes:
            out.accounts.append(Record(c.account_id.encode(), encode("AccountChange", account_change_record(c)),
                                       partition))

    def _cool_account(self, key_text: str, key: bytes, raw: bytes, partition: int, at: int, out: Outputs) -> None:
        accounts = self.accounts
        try:
            state = self._account_state(key, raw, key_text[len(ACCOUNT_KEY_PREFIX):])
        except ScoringError:  # dead-lettered with its shares at the next one; nothing to cool
            return
        state, changes = accounts.cool(state, at)
        if changes:
            self._store_account(key, state, partition, changes, out)
        out.touched.append((partition, key_text, accounts.next_check_at(state, max(at, state.as_of))))

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
            if raw is None or raw[0] == ALIAS_MARK:  # erased or merged since the timer was set
                continue
            if contact_id[0] == "\0":  # an account: its temperature and buying group, by decay alone
                self._cool_account(contact_id, key, raw, partition, at, out)
                continue
            state, changes = model.cool(model.decode_state(raw), at)
            if changes:
                table[key] = model.encode_state(state)
                out.scores.append(Record(key, self.codec.encode("ScoreSnapshot", model.snapshot_fields(state)),
                                         partition))
                self._publish(key, partition, changes, out)
                if state.account:
                    self._share(state, partition, out)
            out.touched.append((partition, contact_id, model.next_cooling_at(state)))
