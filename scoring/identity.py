"""Identity: one person, several ids.

An anonymous visitor (scored under ``anon:<anonymous_id>``) who identifies, or a CRM duplicate
merged into its winner, becomes an *alias* of the contact it turned out to be: its state folds into
that contact's (``ScoringModel.merge``), and its later inputs count for that contact. In the table
the alias's key then holds an alias marker (``alias_value``) instead of a state, so the one read the
worker makes per contact and batch also tells it where the inputs go.

Pure: value objects, their validation and the marker; no Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InvalidEvent
from .events import _check_id, _check_time

ANON_PREFIX = "anon:"
IDENTIFY, CONTACT_MERGE = "identify", "contact-merge"
#: First byte of an alias marker in the contacts table (a state's first byte is its format version, 1).
ALIAS_MARK = 0xA1
_MARK = bytes([ALIAS_MARK])
#: A longer alias chain is a loop (A merged into B, B into A): the worker dead-letters what follows it.
MAX_HOPS = 8


@dataclass(frozen=True, slots=True)
class Alias:
    """``source`` is the same person as ``target`` from ``at`` on: an identity link (anonymous →
    known) or a contact merge (loser → winner). ``alias_id`` is the input's deterministic id: the
    cause of the lifecycle changes the merge makes, and how re-deliveries are recognised."""

    alias_id: str
    source: str
    target: str
    at: int
    how: str  # IDENTIFY | CONTACT_MERGE


def anonymous_contact(anonymous_id: str) -> str:
    """The contact id anonymous-only activity is scored under."""
    return ANON_PREFIX + anonymous_id


def implied_link(event) -> Alias | None:
    """The link an event carrying both a known contact id and an anonymous id makes (a form fill, an
    identify), or None: the anonymous visitor is that contact from the event on."""
    anon = event.anonymous_id
    if not anon or event.contact_id.startswith(ANON_PREFIX):
        return None
    return Alias("event:" + event.event_id, ANON_PREFIX + anon, event.contact_id, event.occurred_at, IDENTIFY)


def merge_cause(alias_id: str) -> str:
    """The cause_event_id of the lifecycle changes a merge makes (``merge:<link or merge id>``)."""
    return "merge:" + alias_id


def _text(rec: Mapping, name: str) -> str:
    v = rec.get(name)
    _check_id(v, name)
    return v  # type: ignore[return-value]


def _instant(rec: Mapping, name: str, now_ms: int, max_future_ms: int) -> int:
    v = rec.get(name)
    _check_time(v, name, now_ms, max_future_ms)
    return v  # type: ignore[return-value]


def identity_link(rec: Mapping, now_ms: int, max_future_ms: int) -> Alias:
    """An ``IdentityLink`` record as an alias of ``anon:<anonymous_id>``; ``InvalidEvent`` names the field."""
    link_id = _text(rec, "link_id")
    anonymous_id = _text(rec, "anonymous_id")
    contact_id = _text(rec, "contact_id")
    if contact_id.startswith(ANON_PREFIX):
        raise InvalidEvent("contact_id", f"an anonymous id ({ANON_PREFIX}…) cannot be the known contact")
    return Alias(link_id, anonymous_contact(anonymous_id), contact_id,
                 _instant(rec, "linked_at", now_ms, max_future_ms), IDENTIFY)


def contact_merge(rec: Mapping, now_ms: int, max_future_ms: int) -> Alias:
    """A ``ContactMerge`` record as an alias of the loser; ``InvalidEvent`` names the field."""
    merge_id = _text(rec, "merge_id")
    winner = _text(rec, "winner")
    loser = _text(rec, "loser")
    if loser == winner:
        raise InvalidEvent("loser", "equals the winner")
    return Alias(merge_id, loser, winner, _instant(rec, "merged_at", now_ms, max_future_ms), CONTACT_MERGE)


def alias_value(target: str) -> bytes:
    """What the contacts table holds under an alias's key: the marker and the target's id."""
    return _MARK + target.encode()


def alias_target(raw: bytes | None) -> str | None:
    """The target of an alias marker, or None for a state (or nothing)."""
    if raw and raw[0] == ALIAS_MARK:
        return raw[1:].decode()
    return None
