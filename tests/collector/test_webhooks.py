"""The HubSpot and Mautic adapters on recorded payloads (tests/collector/payloads), and the two
platforms' signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from collector.config import load_mapping, parse_mapping
from collector.mapping import InvalidRequest
from collector.records import Mapped, MappingError
from collector.webhooks import (
    SignatureError, hubspot_signature, hubspot_uri, map_hubspot, map_mautic, mautic_signature, verify_hubspot,
    verify_mautic,
)
from streams.codec import AvroCodec

PAYLOADS = Path(__file__).parent / "payloads"
CFG = load_mapping()
codec = AvroCodec()


def load(name: str):
    return json.loads((PAYLOADS / name).read_text())


def outputs(results) -> list:
    outs = [o for r in results if isinstance(r.outcome, Mapped) for o in r.outcome.outputs]
    for o in outs:  # every record is a valid instance of its contract
        assert codec.decode(o.record_name, codec.encode(o.record_name, o.record)) == o.record
    return outs


# -- HubSpot ------------------------------------------------------------------------------------

def test_hubspot_events_map_to_the_contracts():
    results = map_hubspot(load("hubspot/contact_events.json"), CFG)
    assert [r.message_id for r in results][:2] == ["33:3816279340", "33:3816279341"]
    assert all(isinstance(r.outcome, Mapped) for r in results), [r.outcome for r in results]
    by_kind: dict[str, list] = {}
    for o in outputs(results):
        by_kind.setdefault(o.kind, []).append(o.record)
    form, unsub, click = by_kind["events"]
    assert form == {"event_id": "hubspot:33:3816279340", "contact_id": "hubspot:1246965", "anonymous_id": None,
                    "event_type": "form_submit", "occurred_at": 1764930000000, "source": "hubspot",
                    "properties": {"property": "recent_conversion_event_name",
                                   "value": "Request a demo - product page", "change_source": "FORM"}}
    assert (unsub["event_type"], unsub["contact_id"]) == ("unsubscribe", "hubspot:1246978")
    assert (click["event_type"], click["contact_id"]) == ("email_click", "hubspot:1247010")  # generic object.*
    assert by_kind["merges"] == [{"merge_id": "hubspot:33:3816279343:hubspot:1246999", "winner": "hubspot:1246965",
                                  "loser": "hubspot:1246999", "merged_at": 1764930180000, "source": "hubspot"}]
    assert by_kind["erasures"] == [{"request_id": "hubspot:33:3816279344", "contact_id": "hubspot:1247001",
                                    "requested_at": 1764930240000}]
    (acc,) = by_kind["accounts"]
    assert (acc["contact_id"], acc["account_id"], acc["active"]) == ("hubspot:1246965",
                                                                     "hubspot-company:5790939450", True)
    ignored = {r.message_id: r.outcome.note for r in results if r.outcome.ignored}
    assert set(ignored) == {"33:3816279341", "33:3816279346", "33:3816279348"}  # lifecyclestage, creation, a deal


def test_hubspot_bad_events_are_typed_errors_and_bodies_must_be_arrays():
    results = map_hubspot([{"subscriptionType": "contact.propertyChange", "portalId": 1, "eventId": 2,
                            "occurredAt": "yesterday", "objectId": 5, "propertyName": "x"},
                           {"portalId": 1, "eventId": 3}, "junk"], CFG)
    assert [(type(r.outcome).__name__, r.outcome.field) for r in results] == [
        ("InvalidMessage", "occurredAt"), ("InvalidMessage", "subscriptionType"), ("InvalidMessage", None)]
    for body in ({"events": []}, []):
        with pytest.raises(InvalidRequest):
            map_hubspot(body, CFG)


def test_hubspot_deletions_erase_only_when_configured():
    ev = [{"subscriptionType": "contact.deletion", "portalId": 1, "eventId": 9, "occurredAt": 5, "objectId": 7}]
    assert map_hubspot(ev, CFG)[0].outcome.ignored
    erase = parse_mapping({"version": "t", "hubspot": {"erase_on_delete": True}})
    assert outputs(map_hubspot(ev, erase))[0].record["contact_id"] == "hubspot:7"


SECRET = "hs-client-secret-0f9a8b7c"


def test_hubspot_v3_signature():
    body = b'[{"eventId":1}]'
    uri = "https://collector.example.com/webhooks/hubspot?portal=33&q=a%3Ab%40c"
    ts = "1764930000000"
    sig = hubspot_signature(SECRET, "POST", uri, body, ts)
    # HubSpot's definition, written out: base64(HMAC-SHA256(secret, method + decoded uri + body + timestamp))
    source = b"POST" + b"https://collector.example.com/webhooks/hubspot?portal=33&q=a:b@c" + body + ts.encode()
    assert sig == base64.b64encode(hmac.new(SECRET.encode(), source, hashlib.sha256).digest()).decode()
    verify_hubspot(SECRET, "POST", uri, body, ts, sig, now_ms=1764930000000 + 299_000)
    for bad in (dict(signature=sig[:-2] + "AA"), dict(body=body + b" "), dict(timestamp="1764930000001"),
                dict(now_ms=1764930000000 + 301_000), dict(signature=None), dict(timestamp="soon")):
        kwargs = dict(secret=SECRET, method="POST", uri=uri, body=body, timestamp=ts, signature=sig,
                      now_ms=1764930000000)
        kwargs.update(bad)
        with pytest.raises(SignatureError):
            verify_hubspot(**kwargs)


@pytest.mark.parametrize("raw,decoded", [
    ("https://h.example/p?a=%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B", "https://h.example/p?a=:/?@!$'()*,;"),
    ("https://h.example/p?a=%3a", "https://h.example/p?a=:"),
    ("https://h.example/p?a=%20%26", "https://h.example/p?a=%20%26"),  # not in HubSpot's table: kept
])
def test_hubspot_uri_decoding(raw, decoded):
    assert hubspot_uri(raw) == decoded


# -- Mautic -------------------------------------------------------------------------------------

def test_mautic_profile_from_a_contact_update():
    (r,) = map_mautic(load("mautic/lead_post_save_update.json"), CFG)
    (profile,) = outputs([r])
    assert profile.record == {"contact_id": "mautic:481", "email": "ada.sample@northwind.example.com",
                              "job_title": "VP Marketing", "company": "Northwind Traders", "company_size": 420,
                              "industry": "Software", "country": "FR", "updated_at": 1764926042000}


def test_mautic_behaviour_events():
    form = outputs(map_mautic(load("mautic/form_on_submit.json"), CFG))[0].record
    assert form == {"event_id": "mautic:form_on_submit:9103", "contact_id": "mautic:481", "anonymous_id": None,
                    "event_type": "demo_request", "occurred_at": 1764926038000, "source": "mautic",
                    "properties": {"form": "demorequest", "form_name": "Demo request",
                                   "url": "https://www.northwind.example.com/pricing#demo"}}
    hit = outputs(map_mautic(load("mautic/page_on_hit.json"), CFG))[0].record
    assert (hit["event_type"], hit["contact_id"], hit["properties"]["url"]) == (
        "page_view", "mautic:482", "https://www.leadpulse.example/pricing")
    opened = outputs(map_mautic(load("mautic/email_on_open.json"), CFG))[0].record
    assert (opened["event_type"], opened["event_id"]) == ("email_open", "mautic:email_on_open:6931fb2e0a5c7")
    unsub, resub = map_mautic(load("mautic/channel_subscription_changed.json"), CFG)
    assert outputs([unsub])[0].record["event_type"] == "unsubscribe" and resub.outcome.ignored


def test_mautic_company_change_is_an_account_membership():
    (acc,) = outputs(map_mautic(load("mautic/lead_company_change.json"), CFG))
    assert acc.record == {"membership_id": "mautic:" + acc.record["membership_id"].split(":", 1)[1],
                          "contact_id": "mautic:481", "account_id": "mautic-company:17",
                          "account_domain": "northwind.example.com", "account_name": "Northwind Traders",
                          "account_industry": "Software", "account_size": 420, "account_country": "FR",
                          "active": True, "updated_at": 1764926400000, "source": "mautic"}


def test_a_queued_mautic_delivery_maps_every_event_type():
    results = map_mautic(load("mautic/queued_batch.json"), CFG)
    assert [r.outcome.ignored for r in results] == [False, False, True, True]  # sends and points: not engagement
    assert [o.record["event_type"] for o in outputs(results)] == ["page_view", "demo_request"]
    assert results[2].outcome.note == "mautic.email_on_send is not mapped"


def test_mautic_errors_name_the_field():
    results = map_mautic({"mautic.form_on_submit": [{"submission": {"lead": {}, "dateSubmitted": "x"}}],
                          "mautic.page_on_hit": [{"hit": {"lead": {"id": 3}}}]}, CFG)
    assert [(type(r.outcome).__name__, r.outcome.field) for r in results] == [
        ("InvalidMessage", "submission.lead.id"), ("InvalidMessage", "hit.url")]
    assert all(isinstance(r.outcome, MappingError) for r in results)
    with pytest.raises(InvalidRequest):
        map_mautic([], CFG)


def test_mautic_signature():
    body = (PAYLOADS / "mautic/form_on_submit.json").read_bytes()
    sig = mautic_signature("mautic-secret", body)
    assert sig == base64.b64encode(hmac.new(b"mautic-secret", body, hashlib.sha256).digest()).decode()
    verify_mautic("mautic-secret", body, sig)
    for secret, data, signature in (("other", body, sig), ("mautic-secret", body + b"\n", sig),
                                    ("mautic-secret", body, None)):
        with pytest.raises(SignatureError):
            verify_mautic(secret, data, signature)


# -- any JSON -------------------------------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from tests.collector.test_mapping import json_values  # noqa: E402

hubspotish = st.fixed_dictionaries({}, optional={
    "subscriptionType": st.sampled_from(["contact.propertyChange", "contact.merge", "contact.privacyDeletion",
                                         "contact.associationChange", "object.propertyChange"]) | json_values,
    "portalId": st.integers(0, 99) | json_values, "eventId": st.integers(0, 99) | json_values,
    "occurredAt": st.integers(-5, 2**63) | json_values, "objectId": st.integers() | json_values,
    "objectTypeId": st.sampled_from(["0-1", "0-2"]) | json_values,
    "propertyName": st.sampled_from(["hs_email_optout", "recent_conversion_event_name"]) | json_values,
    "propertyValue": json_values, "primaryObjectId": json_values,
    "mergedObjectIds": st.lists(st.integers(0, 5) | json_values, max_size=3) | json_values,
    "associationType": st.sampled_from(["CONTACT_TO_COMPANY"]) | json_values, "fromObjectId": json_values,
    "toObjectId": json_values, "associationRemoved": json_values,
})
mautic_types = st.sampled_from(["mautic.lead_post_save_new", "mautic.form_on_submit", "mautic.page_on_hit",
                                "mautic.email_on_open", "mautic.lead_channel_subscription_changed",
                                "mautic.lead_company_change", "mautic.lead_post_delete"])


def only_typed(results) -> None:
    for r in results:
        assert isinstance(r.outcome, (Mapped, MappingError)) and isinstance(r.message_id, str)
    outputs(results)  # and every record encodes and decodes


@settings(max_examples=400, deadline=None)
@given(st.lists(hubspotish | json_values, min_size=1, max_size=4))
def test_any_hubspot_body_maps_or_names_the_field(body):
    only_typed(map_hubspot(body, CFG))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(mautic_types | st.text(max_size=10), st.lists(json_values, max_size=3) | json_values,
                       min_size=1, max_size=3))
def test_any_mautic_body_maps_or_names_the_field(body):
    try:
        only_typed(map_mautic(body, CFG))
    except InvalidRequest:
        pass


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _replace(obj, path, value):
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(obj) if isinstance(obj, dict) else list(obj)
    copy[head] = _replace(obj[head], rest, value)
    return copy


RECORDED = [("hubspot/contact_events.json", map_hubspot)] + [
    (f"mautic/{name}", map_mautic) for name in ("form_on_submit.json", "page_on_hit.json", "email_on_open.json",
                                               "lead_post_save_update.json", "lead_company_change.json",
                                               "channel_subscription_changed.json")]


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(RECORDED), st.data())
def test_recorded_payloads_with_one_value_changed_map_or_name_the_field(recorded, data):
    """Mutations of the real payloads reach deep into them, where random JSON never gets."""
    name, mapper = recorded
    body = load(name)
    paths = list(_paths(body))[1:]
    path = data.draw(st.sampled_from(paths))
    mutated = _replace(body, path, data.draw(json_values))
    try:
        only_typed(mapper(mutated, CFG))
    except InvalidRequest:
        pass


def test_a_mautic_channel_status_that_is_not_a_string_names_the_field():
    """Found by the property test above: a list as `new_status` used to raise TypeError."""
    body = load("mautic/channel_subscription_changed.json")
    body = _replace(body, ("mautic.lead_channel_subscription_changed", 0, "new_status"), [])
    results = map_mautic(body, CFG)
    assert isinstance(results[0].outcome, MappingError) and results[0].outcome.field == "new_status"
