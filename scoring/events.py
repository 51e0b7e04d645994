"""Inputs of the scoring core.

The streaming layer converts Avro records into these frozen, slotted dataclasses; the core
never sees a dict from the wire.  ``validate_*`` are separate from ``ScoringModel.apply_*``
because "is this timestamp in the future?" needs wall-clock time, which the deterministic
core must not read (replays and backtests would then disagree with live).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

from .errors import InvalidEvent

DAY_MS = 86_400_000

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "pricing_page_view",
    "content_download",
    "webinar_signup",
    "webinar_attended",
    "newsletter_signup",
    "email_open",
    "email_click",
    "form_submit",
    "event_attended",
    "social_engagement",
    "demo_request",
    "free_trial_signup",
    "unsubscribe",
    "email_bounce",
    "case_study_view",
)
_KNOWN_TYPES = frozenset(EVENT_TYPES)

#: Sales actions on a contact.  "criteria" records BANT/MEDDICC answers; the others move the stage.
ACTIONS: tuple[str, ...] = ("criteria", "accept", "reject", "disqualify", "won")

#: Qualification frameworks known when no rules are at hand (the rules file may define others).
DEFAULT_FRAMEWORKS: Mapping[str, tuple[str, ...]] = {
    "BANT": ("budget", "authority", "need", "timeline"),
    "MEDDICC": (
        "metrics",
        "economic_buyer",
        "decision_criteria",
        "decision_process",
        "identify_pain",
        "champion",
        "competition",
    ),
}

_EMPTY: Mapping[str, str] = {}


@dataclass(frozen=True, slots=True)
class BehaviourEvent:
    """Something a contact did (web, e-mail, events...); the unit of engagement."""

    event_id: str
    contact_id: str
    event_type: str
    occurred_at: int  # epoch ms, event time
    properties: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    anonymous_id: str | None = None


_new = object.__new__
(_set_event_id, _set_contact_id, _set_event_type, _set_occurred_at, _set_properties, _set_source,
 _set_anonymous_id) = (BehaviourEvent.__dict__[f.name].__set__ for f in fields(BehaviourEvent))


def behaviour_event(event_id: str, contact_id: str, event_type: str, occurred_at: int, properties: Mapping[str, str],
                    source: str, anonymous_id: str | None) -> BehaviourEvent:
    """``BehaviourEvent(...)`` with every field given, in half the time: the frozen dataclass's
    ``__init__`` goes through ``object.__setattr__`` for each field, this stores them through the
    slots' descriptors (the decoder builds one per consumed event)."""
    e = _new(BehaviourEvent)
    _set_event_id(e, event_id)
    _set_contact_id(e, contact_id)
    _set_event_type(e, event_type)
    _set_occurred_at(e, occurred_at)
    _set_properties(e, properties)
    _set_source(e, source)
    _set_anonymous_id(e, anonymous_id)
    return e


@dataclass(frozen=True, slots=True)
class ContactProfile:
    """What we know about who the contact is (CRM / form data); the input of FIT."""

    contact_id: str
    email: str | None
    job_title: str | None
    company: str | None
    company_size: int | None
    industry: str | None
    country: str | None
    updated_at: int  # epoch ms


@dataclass(frozen=True, slots=True)
class QualificationUpdate:
    """A sales decision or a BANT/MEDDICC answer about a contact."""

    update_id: str
    contact_id: str
    action: str  # one of ACTIONS
    framework: str | None  # "BANT" | "MEDDICC" | another framework of the rules
    criteria: Mapping[str, bool]
    occurred_at: int  # epoch ms
    reason: str = ""


def _check_id(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise InvalidEvent(name, f"expected str, got {type(value).__name__}")
    if not value.strip():
        raise InvalidEvent(name, "empty")
    if value[0] == "\0":
        raise InvalidEvent(name, "starts with NUL (reserved for the worker's own keys)")


def _check_time(value: object, name: str, now_ms: int, max_future_ms: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(name, f"expected epoch milliseconds (int), got {type(value).__name__}")
    if value <= 0:
        raise InvalidEvent(name, "must be > 0 (epoch milliseconds)")
    if value > now_ms + max_future_ms:
        raise InvalidEvent(name, f"{value - now_ms} ms in the future (max {max_future_ms})")


def validate_event(e: BehaviourEvent, now_ms: int, max_future_ms: int = DAY_MS) -> None:
    """Raise ``InvalidEvent`` if ``e`` must not reach the model (call before ``apply_event``)."""
    # Every event goes through here: the usual valid values pass a few cheap tests, anything else
    # gets the detailed checks (same order, same error).
    eid, cid, t = e.event_id, e.contact_id, e.occurred_at
    if not (type(eid) is str and type(cid) is str and eid.strip() and cid.strip()) or cid[0] == "\0":
        _check_id(eid, "event_id")
        _check_id(cid, "contact_id")
    et = e.event_type
    if (et not in _KNOWN_TYPES) if type(et) is str else (et not in EVENT_TYPES):  # the set needs a hashable
        raise InvalidEvent("event_type", f"unknown event type {et!r}")
    if not (type(t) is int and 0 < t <= now_ms + max_future_ms):
        _check_time(t, "occurred_at", now_ms, max_future_ms)
    props = e.properties
    if type(props) is not dict and not isinstance(props, Mapping):
        raise InvalidEvent("properties", f"expected a mapping, got {type(props).__name__}")
    for k, v in props.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidEvent("properties", f"entry {k!r}: keys and values must be str")
    if e.anonymous_id is not None and not isinstance(e.anonymous_id, str):
        raise InvalidEvent("anonymous_id", "expected str or None")


def validate_profile(p: ContactProfile, now_ms: int, max_future_ms: int = DAY_MS) -> None:
    """Raise ``InvalidEvent`` for a profile that is structurally wrong (not merely poor data)."""
    _check_id(p.contact_id, "contact_id")
    _check_time(p.updated_at, "updated_at", now_ms, max_future_ms)
    if p.email is not None:
        if not isinstance(p.email, str):
            raise InvalidEvent("email", "expected str or None")
        local, at, domain = p.email.strip().rpartition("@")
        if not at or not local or not domain or "." not in domain:
            raise InvalidEvent("email", f"malformed address {p.email!r}")
    if p.company_size is not None:
        if isinstance(p.company_size, bool) or not isinstance(p.company_size, int):
            raise InvalidEvent("company_size", "expected int or None")
        if p.company_size < 0:
            raise InvalidEvent("company_size", "must be >= 0")
    for name in ("job_title", "company", "industry", "country"):
        v = getattr(p, name)
        if v is not None and not isinstance(v, str):
            raise InvalidEvent(name, "expected str or None")


def validate_qualification(
    u: QualificationUpdate,
    now_ms: int,
    frameworks: Mapping[str, Sequence[str]] | None = None,
    max_future_ms: int = DAY_MS,
) -> None:
    """Raise ``InvalidEvent`` for an unknown action, framework or criterion, or a bad id/time.

    ``frameworks`` defaults to BANT and MEDDICC; pass ``rules.framework_criteria()`` to
    validate against the frameworks of a rules file.
    """
    _check_id(u.update_id, "update_id")
    _check_id(u.contact_id, "contact_id")
    if u.action not in ACTIONS:
        raise InvalidEvent("action", f"unknown action {u.action!r} (expected one of {', '.join(ACTIONS)})")
    _check_time(u.occurred_at, "occurred_at", now_ms, max_future_ms)
    check_qualification_criteria(u, DEFAULT_FRAMEWORKS if frameworks is None else frameworks)


def check_qualification_criteria(u: QualificationUpdate, frameworks: Mapping[str, Sequence[str]]) -> None:
    """The structural part of qualification validation, also enforced by the model itself."""
    if u.framework is not None and u.framework not in frameworks:
        raise InvalidEvent("framework", f"unknown framework {u.framework!r} (expected one of {', '.join(frameworks)})")
    criteria = u.criteria
    if not isinstance(criteria, Mapping):
        raise InvalidEvent("criteria", f"expected a mapping, got {type(criteria).__name__}")
    if criteria and u.framework is None:
        raise InvalidEvent("framework", "required when criteria are given")
    if u.action == "criteria" and not criteria:
        raise InvalidEvent("criteria", "empty for action 'criteria'")
    if criteria:
        known = frameworks[u.framework]  # type: ignore[index]
        for name, met in criteria.items():
            if name not in known:
                raise InvalidEvent("criteria", f"unknown criterion {name!r} for {u.framework} (expected one of {', '.join(known)})")
            if not isinstance(met, bool):
                raise InvalidEvent("criteria", f"criterion {name!r}: expected bool")
