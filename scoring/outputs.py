"""Outputs of the core: lifecycle changes (published downstream) and score snapshots.

Every output carries the rules version and a full explanation (rule -> contribution,
including "fit") that sums to the score, so a salesperson can be told *why* a lead is hot.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b
from typing import Mapping


_B2_16 = blake2b(digest_size=16)


def change_id(contact_id: str, kind: str, from_value: str | None, to_value: str | None,
              cause_id: str | None, at: int) -> str:
    """Deterministic id: a replay of the same input produces the same id (downstream dedup).

    hex(blake2b-128("contact_id|kind|from|to|cause_id|at")), None written as ""."""
    h = _B2_16.copy()
    h.update(f"{contact_id}|{kind}|{from_value or ''}|{to_value or ''}|{cause_id or ''}|{at}".encode())
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class LifecycleChange:
    """A temperature or stage change (or an erasure) of one contact, at an event-time instant.

    ``cause_event_id`` is the event / update id that triggered it, "profile@<updated_at>" for
    a profile update, or None when the change comes from decay alone (timer).
    """

    change_id: str
    contact_id: str
    kind: str  # "temperature" | "stage" | "erasure"
    from_value: str | None
    to_value: str | None
    at: int
    cause_event_id: str | None
    score: float
    engagement: float
    fit: float
    grade: str
    explanation: Mapping[str, float]
    rules_version: str


@dataclass(frozen=True, slots=True)
class ScoreSnapshot:
    """The score of a contact at one instant, with its explanation."""

    contact_id: str
    at: int
    score: float
    engagement: float
    fit: float
    grade: str
    temperature: str
    stage: str
    explanation: Mapping[str, float]
    rules_version: str
