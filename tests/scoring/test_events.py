from __future__ import annotations

import pytest

from scoring import (
    EVENT_TYPES,
    BehaviourEvent,
    ContactProfile,
    InvalidEvent,
    QualificationUpdate,
    validate_event,
    validate_profile,
    validate_qualification,
)

from .helpers import DAY, T0

NOW = T0


def test_event_types_cover_the_brief():
    assert len(EVENT_TYPES) == 16 and len(set(EVENT_TYPES)) == 16
    assert {"demo_request", "email_bounce", "unsubscribe", "case_study_view"} <= set(EVENT_TYPES)


def test_valid_event_passes():
    validate_event(BehaviourEvent("e1", "c1", "page_view", NOW, {"url": "/"}), NOW)
    validate_event(BehaviourEvent("e1", "c1", "page_view", NOW + DAY), NOW)  # exactly one day ahead is fine


@pytest.mark.parametrize(
    "event, field, reason",
    [
        (BehaviourEvent("e1", "c1", "page_visit", NOW), "event_type", "unknown event type 'page_visit'"),
        (BehaviourEvent("e1", "", "page_view", NOW), "contact_id", "empty"),
        (BehaviourEvent("e1", "   ", "page_view", NOW), "contact_id", "empty"),
        (BehaviourEvent("", "c1", "page_view", NOW), "event_id", "empty"),
        (BehaviourEvent("e1", None, "page_view", NOW), "contact_id", "expected str"),  # type: ignore[arg-type]
        (BehaviourEvent("e1", "c1", "page_view", NOW + DAY + 1), "occurred_at", "in the future"),
        (BehaviourEvent("e1", "c1", "page_view", 0), "occurred_at", "must be > 0"),
        (BehaviourEvent("e1", "c1", "page_view", -5), "occurred_at", "must be > 0"),
        (BehaviourEvent("e1", "c1", "page_view", 1.5e12), "occurred_at", "int"),  # type: ignore[arg-type]
        (BehaviourEvent("e1", "c1", "page_view", NOW, {"url": 3}), "properties", "must be str"),  # type: ignore[dict-item]
        (BehaviourEvent("e1", "c1", "page_view", NOW, ["url"]), "properties", "mapping"),  # type: ignore[arg-type]
    ],
)
def test_invalid_event_names_the_field(event, field, reason):
    with pytest.raises(InvalidEvent) as ei:
        validate_event(event, NOW)
    assert ei.value.field == field
    assert reason in ei.value.reason
    assert str(ei.value).startswith(f"field {field!r}: ")


def test_invalid_event_message_format():
    with pytest.raises(InvalidEvent, match=r"^field 'contact_id': empty$"):
        validate_event(BehaviourEvent("e1", "", "page_view", NOW), NOW)


def test_max_future_is_configurable():
    e = BehaviourEvent("e1", "c1", "page_view", NOW + 10)
    validate_event(e, NOW, max_future_ms=10)
    with pytest.raises(InvalidEvent):
        validate_event(e, NOW, max_future_ms=9)


def prof(**kw) -> ContactProfile:
    base = dict(contact_id="c1", email="a@b.com", job_title="CEO", company="B", company_size=10, industry="Software",
                country="FR", updated_at=NOW)
    base.update(kw)
    return ContactProfile(**base)


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"contact_id": ""}, "contact_id"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@localhost"}, "email"),
        ({"email": "@b.com"}, "email"),
        ({"company_size": -1}, "company_size"),
        ({"company_size": "big"}, "company_size"),
        ({"updated_at": NOW + 2 * DAY}, "updated_at"),
        ({"job_title": 3}, "job_title"),
    ],
)
def test_invalid_profile(kw, field):
    validate_profile(prof(), NOW)
    with pytest.raises(InvalidEvent) as ei:
        validate_profile(prof(**kw), NOW)
    assert ei.value.field == field


def q(**kw) -> QualificationUpdate:
    base = dict(update_id="u1", contact_id="c1", action="criteria", framework="BANT", criteria={"budget": True},
                occurred_at=NOW)
    base.update(kw)
    return QualificationUpdate(**base)


@pytest.mark.parametrize(
    "kw, field, reason",
    [
        ({"action": "promote"}, "action", "unknown action"),
        ({"framework": "SPICED"}, "framework", "unknown framework"),
        ({"criteria": {"budgett": True}}, "criteria", "unknown criterion 'budgett'"),
        ({"framework": "MEDDICC", "criteria": {"budget": True}}, "criteria", "unknown criterion"),
        ({"criteria": {"budget": "yes"}}, "criteria", "expected bool"),
        ({"framework": None}, "framework", "required"),
        ({"criteria": {}}, "criteria", "empty"),
        ({"update_id": ""}, "update_id", "empty"),
        ({"contact_id": ""}, "contact_id", "empty"),
        ({"occurred_at": NOW + 2 * DAY}, "occurred_at", "future"),
    ],
)
def test_invalid_qualification(kw, field, reason):
    validate_qualification(q(), NOW)
    with pytest.raises(InvalidEvent) as ei:
        validate_qualification(q(**kw), NOW)
    assert (ei.value.field, reason in ei.value.reason) == (field, True)


def test_qualification_frameworks_from_rules(rules):
    validate_qualification(q(framework="MEDDICC", criteria={"champion": True}), NOW, rules.framework_criteria())
    validate_qualification(q(action="accept", framework=None, criteria={}), NOW)


def test_events_are_frozen_and_slotted():
    e = BehaviourEvent("e1", "c1", "page_view", NOW)
    with pytest.raises(AttributeError):
        e.event_type = "x"  # type: ignore[misc]
    assert not hasattr(e, "__dict__")
    assert e.properties == {} and e.source == "" and e.anonymous_id is None
