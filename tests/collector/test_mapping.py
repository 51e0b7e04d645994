"""The Segment mapping (collector.mapping), pure: spec rules one by one, and for any JSON at all
either records that encode to Avro or a typed error naming the field."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from collector.config import load_mapping, parse_mapping
from collector.mapping import InvalidRequest, Received, map_message, map_request, message_id_of, size_value
from collector.records import (
    ANONYMOUS_PREFIX, InvalidMessage, Mapped, MappingError, MessageTooLarge, UnmappedEvent,
)
from streams.codec import AvroCodec

CFG = load_mapping()
codec = AvroCodec()
NOW = 1_765_000_000_000  # the collector's clock when the request came in (receivedAt)
CTX = Received("website", NOW)


def one(msg, ctx=CTX, cfg=CFG, endpoint=None) -> Mapped:
    return map_message(msg, ctx, cfg, endpoint)


def records(mapped: Mapped) -> dict[str, dict]:
    return {o.kind: o.record for o in mapped.outputs}


# -- identity ------------------------------------------------------------------------------------

@pytest.mark.parametrize("user_id,anonymous_id,contact,anon", [
    ("u-1", None, "u-1", None),
    ("u-1", "a-1", "u-1", "a-1"),
    (None, "a-1", "anon:a-1", "a-1"),
    (42, None, "42", None),                     # Segment allows integer ids
    ("  ", "a-1", "anon:a-1", "a-1"),           # a blank userId is no userId
])
def test_the_contact_id_contract(user_id, anonymous_id, contact, anon):
    ev = records(one({"type": "track", "event": "Demo Requested", "userId": user_id, "anonymousId": anonymous_id}))
    assert ev["events"]["contact_id"] == contact and ev["events"]["anonymous_id"] == anon
    assert one({"type": "track", "event": "Demo Requested", "userId": user_id,
                "anonymousId": anonymous_id}).outputs[0].key == contact  # the Kafka key


@pytest.mark.parametrize("msg,field", [
    ({"type": "track", "event": "Demo Requested"}, "userId"),
    ({"type": "track", "event": "Demo Requested", "userId": "anon:x"}, "userId"),
    ({"type": "track", "event": "Demo Requested", "userId": True}, "userId"),
    ({"type": "track", "event": "Demo Requested", "userId": "u" * 300}, "userId"),
    ({"type": "track", "event": "Demo Requested", "anonymousId": {"a": 1}}, "anonymousId"),
    ({"type": "alias", "previousId": "a-1"}, "userId"),
    ({"type": "alias", "userId": "u-1"}, "previousId"),
    ({"type": "group", "userId": "u-1"}, "groupId"),
    ({"type": "track", "userId": "u-1"}, "event"),
    ({"type": "track", "userId": "u-1", "event": "  "}, "event"),
    ({"type": "launch", "userId": "u-1"}, "type"),
    ({"userId": "u-1"}, "type"),
    ({"type": "track", "event": "Demo Requested", "userId": "u", "timestamp": "yesterday"}, "timestamp"),
    ({"type": "track", "event": "Demo Requested", "userId": "u", "timestamp": 1765000000}, "timestamp"),
    ({"type": "track", "event": "Demo Requested", "userId": "u", "properties": [1, 2]}, "properties"),
    ({"type": "track", "event": "Demo Requested", "userId": "u", "properties": {"x": "\ud800"}}, "properties.x"),
    ({"type": "identify", "userId": "u", "traits": {"email": "not-an-address"}}, "traits.email"),
    ({"type": "identify", "userId": "u", "traits": {"employees": "many"}}, "traits.employees"),
    ({"type": "identify", "userId": "u", "traits": {"company": {"employee_count": 2**40}}},
     "traits.company.employee_count"),
    ({"type": "identify", "userId": "u", "traits": "vip"}, "traits"),
    ({"type": "page", "userId": "u", "context": {"page": "home"}}, "context.page"),
    ({"type": "track", "event": "Demo Requested", "userId": "u", "integrations": ["x"]}, "integrations"),
])
def test_invalid_messages_name_the_field(msg, field):
    with pytest.raises(InvalidMessage) as exc:
        one(msg)
    assert exc.value.field == field and exc.value.reason


def test_a_message_of_another_type_on_a_single_call_endpoint_is_refused():
    with pytest.raises(InvalidMessage) as exc:
        one({"type": "page", "userId": "u"}, endpoint="track")
    assert exc.value.field == "type"
    assert records(one({"userId": "u", "event": "Demo Requested"}, endpoint="track"))["events"]


# -- track -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,event_type", [
    ("Demo Requested", "demo_request"),
    ("demo requested", "demo_request"),
    ("DEMO_REQUESTED", "demo_request"),
    ("Webinar Registered", "webinar_signup"),
    ("webinar_attended", "webinar_attended"),      # a leadpulse type maps to itself
    ("Free Trial Signup", "free_trial_signup"),
])
def test_track_names_map_to_event_types(name, event_type):
    assert records(one({"type": "track", "event": name, "userId": "u"}))["events"]["event_type"] == event_type


def test_track_properties_are_kept_as_strings_with_the_event_name():
    ev = records(one({"type": "track", "event": "Whitepaper Downloaded", "userId": "u", "messageId": "m-1",
                      "properties": {"asset_type": "whitepaper", "pages": 12, "ratio": 0.5, "gated": True,
                                     "tags": ["a", "b"], "meta": {"k": "v"}, "nothing": None}}))["events"]
    assert ev["properties"] == {"asset_type": "whitepaper", "pages": "12", "ratio": "0.5", "gated": "true",
                                "tags": '["a","b"]', "meta": '{"k":"v"}', "event": "Whitepaper Downloaded"}
    assert ev["event_id"] == "website:m-1" and ev["source"] == "website"


def test_unmapped_track_events_are_ignored_or_dead_lettered_as_configured():
    msg = {"type": "track", "event": "Button Clicked", "userId": "u"}
    mapped = one(msg)
    assert mapped.ignored and not mapped.outputs and "Button Clicked" in mapped.note
    strict = parse_mapping({"version": "t", "unmapped_track": "dead_letter"})
    with pytest.raises(UnmappedEvent) as exc:
        one(msg, cfg=strict)
    assert exc.value.field == "event"


@pytest.mark.parametrize("integrations,ignored", [
    (None, False), ({}, False), ({"All": False}, True), ({"all": False, "leadpulse": True}, False),
    ({"leadpulse": False}, True), ({"Salesforce": False}, False),
])
def test_integrations_can_keep_a_message_away(integrations, ignored):
    msg = {"type": "track", "event": "Demo Requested", "userId": "u", "integrations": integrations}
    assert one(msg).ignored is ignored


# -- time --------------------------------------------------------------------------------------------

def iso(ms: int) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")


@pytest.mark.parametrize("timestamp,sent_at,expected", [
    (None, None, NOW),                                   # no timestamp: receivedAt
    (NOW - 60_000, None, NOW - 60_000),                  # no sentAt: the client's timestamp
    (NOW - 60_000, NOW - 50_000, NOW - 10_000),          # a client clock 50 s behind: corrected
    (NOW + 3_600_000, NOW + 3_600_500, NOW - 500),       # a client clock an hour ahead: corrected
    (NOW + 60_000, None, NOW),                           # ahead with no sentAt: never in our future
])
def test_clock_skew_is_corrected_as_segment_does(timestamp, sent_at, expected):
    msg = {"type": "track", "event": "Demo Requested", "userId": "u"}
    if timestamp is not None:
        msg["timestamp"] = iso(timestamp)
    if sent_at is not None:
        msg["sentAt"] = iso(sent_at)
    assert records(one(msg))["events"]["occurred_at"] == expected


def test_the_batch_sent_at_applies_and_zones_parse():
    body = {"sentAt": iso(NOW - 50_000), "batch": [
        {"type": "track", "event": "Demo Requested", "userId": "u", "timestamp": "2025-12-06T05:45:50.000+00:00"},
        {"type": "track", "event": "Demo Requested", "userId": "u", "originalTimestamp": "2025-12-06T05:45:50Z"},
        {"type": "track", "event": "Demo Requested", "userId": "u", "timestamp": "2025-12-06T06:45:50+01:00"},
        {"type": "track", "event": "Demo Requested", "userId": "u", "timestamp": "2025-12-06T05:45:50"},
    ]}
    results = map_request(body, None, "website", NOW, CFG, 32_768)
    times = {r.outcome.outputs[0].record["occurred_at"] for r in results}
    assert times == {1_764_999_950_000 + 50_000}


# -- page, identify, group, alias -----------------------------------------------------------------

def test_a_page_call_is_a_page_view_with_the_page_from_properties_or_context():
    ev = records(one({"type": "page", "anonymousId": "a-7", "name": "Pricing",
                      "properties": {"url": "https://acme.example/pricing?x=1"},
                      "context": {"page": {"path": "/pricing", "title": "Pricing", "url": "ignored",
                                           "referrer": "https://search.example/"}, "ip": "203.0.113.9"}}))["events"]
    assert ev["event_type"] == "page_view" and ev["contact_id"] == ANONYMOUS_PREFIX + "a-7"
    assert ev["properties"] == {"url": "https://acme.example/pricing?x=1", "path": "/pricing", "title": "Pricing",
                                "referrer": "https://search.example/", "name": "Pricing"}
    assert "203.0.113.9" not in json.dumps(ev)  # context.ip is never stored


def test_identify_gives_a_profile_and_a_link():
    got = records(one({"type": "identify", "userId": "u-1", "anonymousId": "a-1", "messageId": "m-9",
                       "timestamp": iso(NOW - 1000),
                       "traits": {"email": "ada@acme.example", "title": "VP Marketing",
                                  "company": {"name": "Acme", "employee_count": 250, "industry": "software"},
                                  "address": {"country": "France"}, "firstName": "Ada"}}))
    assert got["profiles"] == {"contact_id": "u-1", "email": "ada@acme.example", "job_title": "VP Marketing",
                               "company": "Acme", "company_size": 250, "industry": "software", "country": "FR",
                               "updated_at": NOW - 1000}
    assert got["identities"] == {"link_id": "website:m-9:link", "anonymous_id": "a-1", "contact_id": "u-1",
                                 "linked_at": NOW - 1000, "source": "website"}


@pytest.mark.parametrize("traits,fields", [
    ({"employees": "51-200"}, {"company_size": 51}),
    ({"employees": "1,000"}, {"company_size": 1000}),
    ({"company_size": 12.0}, {"company_size": 12}),
    ({"country": "de"}, {"country": "DE"}),
    ({"country": "Narnia"}, {}),                       # an unknown country name is left out
    ({"company": "Acme"}, {"company": "Acme"}),
    ({"jobTitle": "CTO"}, {"job_title": "CTO"}),
])
def test_profile_traits(traits, fields):
    mapped = one({"type": "identify", "userId": "u", "traits": traits})
    profile = records(mapped).get("profiles")
    if not fields:
        assert profile is None and mapped.ignored
        return
    assert {k: profile[k] for k in fields} == fields


def test_identify_traits_of_an_anonymous_visitor_and_without_fit_traits():
    anon = records(one({"type": "identify", "anonymousId": "a-2", "traits": {"email": "x@acme.example"}}))
    assert anon["profiles"]["contact_id"] == "anon:a-2" and "identities" not in anon
    nothing = one({"type": "identify", "userId": "u", "traits": {"firstName": "Ada"}})
    assert nothing.ignored and not nothing.outputs  # no profile wiped by traits leadpulse does not score


def test_group_gives_an_account_membership():
    acc = records(one({"type": "group", "userId": "u-1", "groupId": "acme-42", "messageId": "m-3",
                       "traits": {"name": "Acme", "website": "https://www.Acme.example/about", "employees": 420,
                                  "industry": "software", "address": {"country": "FR"}}}))["accounts"]
    assert acc == {"membership_id": "website:m-3:membership", "contact_id": "u-1", "account_id": "acme-42",
                   "account_domain": "acme.example", "account_name": "Acme", "account_industry": "software",
                   "account_size": 420, "account_country": "FR", "active": True, "updated_at": NOW,
                   "source": "website"}


def test_alias_is_a_link_or_a_merge_as_configured():
    msg = {"type": "alias", "userId": "u-1", "previousId": "a-1", "messageId": "m-4"}
    assert records(one(msg))["identities"] == {"link_id": "website:m-4:link", "anonymous_id": "a-1",
                                               "contact_id": "u-1", "linked_at": NOW, "source": "website"}
    merges = parse_mapping({"version": "t", "alias": {"as": "contact_merge"}})
    assert records(one(msg, cfg=merges))["merges"] == {"merge_id": "website:m-4:merge", "winner": "u-1",
                                                       "loser": "a-1", "merged_at": NOW, "source": "website"}
    assert one({"type": "alias", "userId": "u-1", "previousId": "u-1"}).ignored


# -- message ids and whole requests -----------------------------------------------------------------

def test_a_message_without_message_id_gets_one_from_its_content():
    a = {"type": "track", "event": "Demo Requested", "userId": "u", "properties": {"a": 1, "b": 2}}
    b = {"properties": {"b": 2, "a": 1}, "userId": "u", "event": "Demo Requested", "type": "track"}
    assert message_id_of(a) == message_id_of(b) != message_id_of({**a, "userId": "v"})
    assert message_id_of({**a, "messageId": "m-1"}) == "m-1"


@pytest.mark.parametrize("body,field", [
    ([], None), ("x", None), ({"batch": {}}, "batch"), ({"batch": []}, "batch"), ({}, "batch"),
    ({"batch": [{}], "sentAt": "later"}, "sentAt"),
])
def test_unusable_batch_requests(body, field):
    with pytest.raises(InvalidRequest) as exc:
        map_request(body, None, "website", NOW, CFG, 32_768)
    assert exc.value.field == field


def test_a_batch_maps_message_by_message_with_shared_context():
    body = {"context": {"page": {"url": "https://acme.example/pricing"}}, "batch": [
        {"type": "page", "userId": "u", "messageId": "p-1"},
        {"type": "track", "userId": "u", "messageId": "t-1"},
        {"type": "track", "userId": "u", "event": "Demo Requested", "messageId": "t-2",
         "properties": {"blob": "x" * 40_000}},
    ]}
    ok, bad, big = map_request(body, None, "website", NOW, CFG, 32_768)
    assert ok.outcome.outputs[0].record["properties"]["url"] == "https://acme.example/pricing"
    assert isinstance(bad.outcome, InvalidMessage) and bad.message_id == "t-1"
    assert isinstance(big.outcome, MessageTooLarge) and json.loads(bad.raw)["messageId"] == "t-1"


@pytest.mark.parametrize("value,expected", [(250, 250), ("250", 250), ("51-200", 51), ("10 000+", 10000),
                                            (0, 0), (3.0, 3)])
def test_sizes(value, expected):
    assert size_value(value, "f") == expected


# -- any JSON -----------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**63) | st.floats(allow_nan=False,
    allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
KEYS = ["type", "event", "userId", "anonymousId", "messageId", "timestamp", "sentAt", "originalTimestamp",
        "properties", "traits", "context", "integrations", "groupId", "previousId", "name", "category"]
segmentish = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["track", "page", "screen", "identify", "group", "alias", "x"]) | json_values,
    "event": st.sampled_from(["Demo Requested", "Button Clicked", "webinar_signup"]) | json_values,
    "userId": st.text(max_size=10) | st.integers() | json_values,
    "anonymousId": st.text(max_size=10) | json_values,
    "messageId": st.text(max_size=10) | json_values,
    "timestamp": st.sampled_from(["2025-12-06T05:45:50.000Z", "2025-12-06T05:45:50+01:00", "0001-01-01T00:00:00",
                                  "9999-12-31T23:59:59Z", "garbage"]) | json_values,
    "sentAt": st.sampled_from(["2025-12-06T05:45:50.000Z", "1970-01-01T00:00:00Z"]) | json_values,
    "properties": st.dictionaries(st.text(max_size=8), json_values, max_size=4) | json_values,
    "traits": st.fixed_dictionaries({}, optional={
        "email": st.sampled_from(["a@b.example", "nope"]) | json_values, "title": json_values,
        "company": st.fixed_dictionaries({}, optional={"name": json_values, "employee_count": json_values}),
        "employees": json_values, "country": st.sampled_from(["FR", "France", "??"]) | json_values,
        "website": st.sampled_from(["https://www.acme.example", "acme", ""]) | json_values}) | json_values,
    "context": st.fixed_dictionaries({}, optional={"page": json_values, "traits": json_values}) | json_values,
    "integrations": json_values, "groupId": json_values, "previousId": json_values,
})


def check_any(msg) -> None:
    try:
        mapped = map_message(msg, CTX, CFG)
    except MappingError as exc:
        assert exc.reason and (exc.field is None or isinstance(exc.field, str))
        return
    assert isinstance(mapped, Mapped) and isinstance(mapped.message_id, str)
    for out in mapped.outputs:  # every record is a valid contract instance, round trip included
        assert codec.decode(out.record_name, codec.encode(out.record_name, out.record)) == out.record
        assert isinstance(out.key, str) and out.key


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segmentish)
def test_any_segment_like_message_maps_or_names_the_field(msg):
    check_any(msg)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_maps_or_names_the_field(value):
    check_any(value)
    try:
        map_request(value, None, "website", NOW, CFG, 32_768)
    except InvalidRequest:
        pass
