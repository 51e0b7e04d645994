"""The collector's HTTP behaviour without a broker (an in-memory sink): authentication, limits,
answers, per-message results, deduplication, dead letters, webhooks, health and metrics. What
needs the broker (acknowledgements, an outage) is in test_kafka.py."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from pathlib import Path

from collector.webhooks import hubspot_signature, mautic_signature
from tests.collector.conftest import HUBSPOT_SECRET, MAUTIC_SECRET, OTHER_KEY, WRITE_KEY, basic

PAYLOADS = Path(__file__).parent / "payloads"
TRACK = {"userId": "u-1", "event": "Demo Requested", "messageId": "m-1", "properties": {"plan": "pro"}}


async def test_a_track_call_is_published_and_acknowledged(client, sink):
    c = await client()
    resp = await c.post("/v1/track", json=TRACK, headers=basic(WRITE_KEY))
    assert resp.status == 200
    body = await resp.json()
    assert body == {"success": True, "accepted": 1, "duplicates": 0, "ignored": 0, "rejected": 0,
                    "results": [{"messageId": "m-1", "status": "accepted"}]}
    ((out, _),) = sink.records
    assert (out.kind, out.key) == ("events", "u-1")
    (event,) = sink.decoded("events")
    assert event["event_id"] == "website:m-1" and event["event_type"] == "demo_request"


async def test_the_short_paths_and_the_write_key_in_the_body(client, sink):
    c = await client()
    assert (await c.post("/v1/t", json={**TRACK, "messageId": "m-2"}, headers=basic(OTHER_KEY))).status == 200
    assert (await c.post("/v1/track", json={**TRACK, "messageId": "m-3", "writeKey": WRITE_KEY})).status == 200
    assert [e["source"] for e in sink.decoded("events")] == ["backend", "website"]


async def test_no_or_a_wrong_write_key_is_401_and_nothing_is_published(client, sink):
    c = await client()
    for headers in ({}, basic("wk-not-a-key-000000"), {"Authorization": "Bearer " + WRITE_KEY},
                    {"Authorization": "Basic !!!"}):
        resp = await c.post("/v1/batch", json={"batch": [TRACK]}, headers=headers)
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Basic")
        assert (await resp.json())["code"] == "unauthorized"
    assert (await c.post("/v1/track", json={**TRACK, "writeKey": "wk-not-a-key-000000"})).status == 401
    assert sink.records == [] and sink.calls == 0


async def test_bodies_over_the_limit_are_413(client, sink):
    c = await client(max_body_bytes=2000, max_message_bytes=1000)
    big = json.dumps({"batch": [TRACK] * 40}).encode()
    resp = await c.post("/v1/batch", data=big, headers=basic(WRITE_KEY))
    assert resp.status == 413 and (await resp.json())["code"] == "too_large"

    async def chunks():  # no Content-Length: the limit holds while reading
        for i in range(0, len(big), 500):
            yield big[i:i + 500]

    assert (await c.post("/v1/batch", data=chunks(), headers=basic(WRITE_KEY))).status == 413
    compressed = gzip.compress(big)  # the limit is on the decompressed body
    assert len(compressed) < 2000
    resp = await c.post("/v1/batch", data=compressed, headers={**basic(WRITE_KEY), "Content-Encoding": "gzip"})
    assert resp.status == 413 and sink.records == []


async def test_a_gzip_body_is_read(client, sink):
    c = await client()
    resp = await c.post("/v1/batch", data=gzip.compress(json.dumps({"batch": [{**TRACK, "type": "track"}]}).encode()),
                        headers={**basic(WRITE_KEY), "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert resp.status == 200 and len(sink.decoded("events")) == 1


async def test_an_unusable_request_is_400_and_dead_lettered(client, sink):
    c = await client()
    resp = await c.post("/v1/batch", data=b'{"batch": [', headers=basic(WRITE_KEY))
    assert resp.status == 400 and (await resp.json())["code"] == "invalid_request"
    resp = await c.post("/v1/track", json={"userId": "u-1"}, headers=basic(WRITE_KEY))  # no event name
    body = await resp.json()
    assert resp.status == 400 and body["field"] == "event"
    bad_json, no_event = sink.decoded("dlq")
    assert bad_json["original_value"] == b'{"batch": [' and bad_json["error_class"] == "InvalidRequest"
    assert no_event["field"] == "event" and json.loads(no_event["original_value"]) == {"userId": "u-1"}
    assert (no_event["source_topic"], no_event["source_partition"], no_event["original_key"]) == (
        "http:/v1/track", -1, b"website")
    assert sink.decoded("events") == []
    text = await (await c.get("/metrics")).text()
    assert 'leadpulse_collector_rejected_total{reason="InvalidRequest"} 1.0' in text
    assert 'leadpulse_collector_rejected_total{reason="InvalidMessage"} 1.0' in text
    assert 'leadpulse_collector_messages_total{outcome="rejected",source="website"} 1.0' in text


async def test_a_batch_answers_message_by_message_and_dead_letters_the_bad_ones(client, sink):
    c = await client()
    batch = {"batch": [
        {**TRACK, "type": "track"},
        {"type": "track", "event": "Button Clicked", "userId": "u-1", "messageId": "m-ign"},
        {"type": "identify", "userId": "u-1", "traits": {"employees": "lots"}, "messageId": "m-bad"},
        {"type": "page", "anonymousId": "a-1", "messageId": "m-page", "properties": {"url": "/pricing"}},
    ]}
    resp = await c.post("/v1/batch", json=batch, headers=basic(WRITE_KEY))
    body = await resp.json()
    assert resp.status == 200
    assert (body["accepted"], body["ignored"], body["rejected"], body["duplicates"]) == (2, 1, 1, 0)
    assert [r["status"] for r in body["results"]] == ["accepted", "ignored", "rejected", "accepted"]
    assert body["results"][2]["error"] == {"class": "InvalidMessage", "field": "traits.employees",
                                           "reason": "not a number of employees: 'lots'"}
    (letter,) = sink.decoded("dlq")
    assert json.loads(letter["original_value"])["messageId"] == "m-bad"
    assert (letter["error_class"], letter["field"]) == ("InvalidMessage", "traits.employees")
    assert [e["contact_id"] for e in sink.decoded("events")] == ["u-1", "anon:a-1"]


async def test_a_retried_request_is_answered_duplicate_and_not_published_again(client, sink):
    c = await client()
    batch = {"batch": [{**TRACK, "type": "track"}, {"type": "track", "userId": "u-1", "messageId": "m-bad"}]}
    await c.post("/v1/batch", json=batch, headers=basic(WRITE_KEY))
    published = len(sink.records)
    resp = await c.post("/v1/batch", json=batch, headers=basic(WRITE_KEY))
    body = await resp.json()
    assert resp.status == 200 and body["duplicates"] == 2 and body["accepted"] == 0
    assert len(sink.records) == published  # neither the event nor its dead letter twice
    # A corrected message with the id of a rejected one is not a duplicate of it.
    fixed = {"batch": [{"type": "track", "userId": "u-1", "messageId": "m-bad", "event": "Demo Requested"}]}
    assert (await (await c.post("/v1/batch", json=fixed, headers=basic(WRITE_KEY))).json())["accepted"] == 1
    # The same messageId from another source is another message.
    assert (await (await c.post("/v1/track", json=TRACK, headers=basic(OTHER_KEY))).json())["accepted"] == 1


async def test_concurrent_copies_of_a_message_are_published_once(client, sink):
    c = await client()
    sink.gate = asyncio.Event()
    first = asyncio.create_task(c.post("/v1/track", json=TRACK, headers=basic(WRITE_KEY)))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(c.post("/v1/batch", json={"batch": [{**TRACK, "type": "track"}] * 2},
                                        headers=basic(WRITE_KEY)))
    await asyncio.sleep(0.05)
    sink.gate.set()
    a, b = await first, await second
    assert (await a.json())["accepted"] == 1
    assert [r["status"] for r in (await b.json())["results"]] == ["duplicate", "duplicate"]
    assert len(sink.decoded("events")) == 1


async def test_not_acknowledged_is_503_never_200_and_the_retry_stores_it(client, sink):
    c = await client()
    sink.fail = True
    resp = await c.post("/v1/track", json=TRACK, headers=basic(WRITE_KEY))
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert (await resp.json())["code"] == "unavailable"
    sink.fail = False
    body = await (await c.post("/v1/track", json=TRACK, headers=basic(WRITE_KEY))).json()
    assert body["accepted"] == 1 and len(sink.decoded("events")) == 1  # not "duplicate": it was not stored


async def test_a_broker_that_is_not_ready_is_503_at_once_and_health_says_so(client, sink):
    c = await client()
    assert (await c.get("/health/ready")).status == 200
    sink.ready, sink.reason = False, "broker unreachable (KafkaConnectionError)"
    assert (await c.post("/v1/track", json=TRACK, headers=basic(WRITE_KEY))).status == 503
    assert sink.calls == 0
    resp = await c.get("/health/ready")
    assert resp.status == 503 and (await resp.json())["reason"].startswith("broker unreachable")
    assert (await c.get("/health/live")).status == 200 and (await c.get("/health")).status == 503
    assert (await c.post("/v1/track", json=TRACK)).status == 401  # authentication still comes first


async def test_the_rate_limit_is_per_source_with_retry_after(client, sink, clock):
    c = await client(rate_per_s=10.0, burst=20)
    batch = {"batch": [{**TRACK, "type": "track", "messageId": f"r-{i}"} for i in range(20)]}
    assert (await c.post("/v1/batch", json=batch, headers=basic(WRITE_KEY))).status == 200
    resp = await c.post("/v1/track", json={**TRACK, "messageId": "r-20"}, headers=basic(WRITE_KEY))
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"
    assert (await c.post("/v1/track", json={**TRACK, "messageId": "b-1"}, headers=basic(OTHER_KEY))).status == 200
    clock.t += 0.2  # 2 tokens back
    assert (await c.post("/v1/track", json={**TRACK, "messageId": "r-20"}, headers=basic(WRITE_KEY))).status == 200
    assert len(sink.decoded("events")) == 22


async def test_hubspot_webhook_signed_as_hubspot_does(client, sink, clock):
    c = await client(public_url="https://collector.example.com")
    body = (PAYLOADS / "hubspot/contact_events.json").read_bytes()
    ts = str(int(clock.t * 1000))
    uri = "https://collector.example.com/webhooks/hubspot"
    headers = {"X-HubSpot-Request-Timestamp": ts, "Content-Type": "application/json",
               "X-HubSpot-Signature-v3": hubspot_signature(HUBSPOT_SECRET, "POST", uri, body, ts)}
    resp = await c.post("/webhooks/hubspot", data=body, headers=headers)
    result = await resp.json()
    assert resp.status == 200 and (result["accepted"], result["ignored"]) == (6, 3)
    assert {out.kind for out, _ in sink.records} == {"events", "merges", "erasures", "accounts"}
    published = len(sink.records)
    wrong = {**headers, "X-HubSpot-Signature-v3": hubspot_signature("another-secret", "POST", uri, body, ts)}
    assert (await c.post("/webhooks/hubspot", data=body, headers=wrong)).status == 401
    stale = {**headers, "X-HubSpot-Request-Timestamp": str(int(clock.t * 1000) - 301_000)}
    assert (await c.post("/webhooks/hubspot", data=body, headers=stale)).status == 401
    assert (await (await c.post("/webhooks/hubspot", data=body, headers=headers)).json())["duplicates"] == 6
    assert len(sink.records) == published


async def test_mautic_webhook_signed_as_mautic_does(client, sink):
    c = await client()
    body = (PAYLOADS / "mautic/queued_batch.json").read_bytes()
    ok = {"Webhook-Signature": mautic_signature(MAUTIC_SECRET, body)}
    assert (await c.post("/webhooks/mautic", data=body, headers={"Webhook-Signature": "x"})).status == 401
    assert sink.records == []
    result = await (await c.post("/webhooks/mautic", data=body, headers=ok)).json()
    assert (result["accepted"], result["ignored"]) == (2, 2)
    assert [e["event_type"] for e in sink.decoded("events")] == ["page_view", "demo_request"]


async def test_webhooks_without_a_secret_are_disabled(client):
    c = await client(hubspot_secret=None, mautic_secret=None)
    assert (await c.post("/webhooks/hubspot", data=b"[]")).status == 404
    assert (await c.post("/webhooks/mautic", data=b"{}")).status == 404


async def test_metrics_count_outcomes_reasons_and_latency(client, sink):
    c = await client()
    await c.post("/v1/batch", json={"batch": [{**TRACK, "type": "track"}, {"type": "track", "userId": "u"}]},
                 headers=basic(WRITE_KEY))
    await c.post("/v1/track", json=TRACK)
    text = await (await c.get("/metrics")).text()
    for line in ('leadpulse_collector_messages_total{outcome="accepted",source="website"} 1.0',
                 'leadpulse_collector_messages_total{outcome="rejected",source="website"} 1.0',
                 'leadpulse_collector_messages_total{outcome="accepted",source="backend"} 0.0',
                 'leadpulse_collector_rejected_total{reason="InvalidMessage"} 1.0',
                 'leadpulse_collector_rejected_total{reason="Unauthorized"} 1.0',
                 'leadpulse_collector_requests_total{endpoint="batch",status="200"} 1.0',
                 'leadpulse_collector_requests_total{endpoint="track",status="401"} 1.0',
                 'leadpulse_collector_records_produced_total{output="events"} 1.0',
                 'leadpulse_collector_records_produced_total{output="dlq"} 1.0',
                 'leadpulse_collector_request_duration_seconds_count{endpoint="batch"} 1.0',
                 'leadpulse_collector_produce_duration_seconds_count 1.0',
                 "leadpulse_collector_requests_in_flight 0.0",
                 "leadpulse_collector_ready 1.0"):
        assert line in text, line


async def test_no_secret_shows_in_answers_logs_or_metrics(client, sink, caplog):
    caplog.set_level(logging.DEBUG)
    c = await client()
    seen = []
    for path, data, headers in (("/v1/track", json.dumps(TRACK), basic(WRITE_KEY)),
                                ("/v1/track", json.dumps(TRACK), basic(WRITE_KEY[:-1] + "x")),
                                ("/webhooks/hubspot", "[]", {"X-HubSpot-Signature-v3": "x",
                                                             "X-HubSpot-Request-Timestamp": "1"}),
                                ("/webhooks/mautic", "{}", {"Webhook-Signature": "x"})):
        seen.append(await (await c.post(path, data=data, headers=headers)).text())
    seen.append(await (await c.get("/metrics")).text())
    seen.append(caplog.text)
    seen.append(repr(c.server.app))
    for secret in (WRITE_KEY, OTHER_KEY, HUBSPOT_SECRET, MAUTIC_SECRET):
        assert not any(secret in s for s in seen), secret
