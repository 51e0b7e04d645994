"""The collector on the real broker, driven by clients nobody here wrote: Segment's Python library
(`segment-analytics-python`, `host=` the collector) sends the calls, a real worker process scores
them, and Confluent's consumer (`confluent-kafka`) reads what came out.

* Segment client → collector → worker → a lifecycle change, caused by the event id derived
  from Segment's messageId; an anonymous visitor scored under `anon:<anonymousId>`;
* identify / group / alias records on their topics, in the contracts, keyed by contact and
  co-partitioned with the contact's events; signed HubSpot and Mautic webhooks likewise;
* no write key, a wrong key, a bad signature: 401, and the topics' end offsets do not move.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from segment.analytics.client import Client
from segment.analytics.request import APIError

from collector.webhooks import hubspot_signature, mautic_signature
from tests.support import CollectorProcess, Worker, codec, topic_env

pytestmark = pytest.mark.kafka

WRITE_KEY = "wk-website-" + uuid.uuid4().hex
HUBSPOT_SECRET = "hs-" + uuid.uuid4().hex
MAUTIC_SECRET = "mt-" + uuid.uuid4().hex
PAYLOADS = Path(__file__).parent / "payloads"


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, tmp_path_factory):
    """One worker and one collector on their own topics, for the module."""
    suffix = "col-" + uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("collector-stack")
    worker = Worker(kafka_bootstrap, suffix, workdir).start()
    collector = CollectorProcess(kafka_bootstrap, suffix, workdir, write_keys={"website": WRITE_KEY}, extra_env={
        "LEADPULSE_HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET, "LEADPULSE_MAUTIC_WEBHOOK_SECRET": MAUTIC_SECRET,
        "LEADPULSE_COLLECTOR_PUBLIC_URL": "https://collector.example.com"}).start()
    try:
        collector.wait_ready(60)
        worker.wait_ready(90)
        yield kafka_bootstrap, topic_env(suffix), worker, collector
    finally:
        collector.stop()
        worker.stop()


def segment(collector, key: str = WRITE_KEY) -> Client:
    """Segment's client as a user would configure it for a self-hosted endpoint (no retries in
    sync mode: each call is one HTTP request, its error raised)."""
    return Client(key, host=collector.url, sync_mode=True, timeout=30)


def read(bootstrap: str, topic: str, name: str, until=lambda records: False, timeout: float = 60.0) -> list:
    """Everything on `topic` from the start, with Confluent's consumer, until `until(records)` or
    the timeout: (key, partition, record) with the Confluent-framed Avro decoded as `name`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t-" + uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    got: list = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(got):
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got.append((msg.key().decode(), msg.partition(), codec.decode(name, msg.value())))
    finally:
        consumer.close()
    return got


def end_offsets(bootstrap: str, topics: list[str]) -> dict:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t-" + uuid.uuid4().hex})
    try:
        out = {}
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            for p in meta.partitions:
                out[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        return out
    finally:
        consumer.close()


def test_segment_calls_are_scored_by_the_worker_into_lifecycle_changes(stack):
    bootstrap, names, worker, collector = stack
    run = uuid.uuid4().hex[:6]
    user, anon, visitor = f"lead-{run}", f"cookie-{run}", f"visitor-{run}"
    client = segment(collector)
    client.identify(user_id=user, anonymous_id=anon, traits={
        "email": f"vp-{run}@northwind.example.com", "title": "VP Marketing", "industry": "software",
        "company": {"name": "Northwind", "employee_count": 250}, "address": {"country": "FR"}})
    client.group(user_id=user, group_id=f"northwind-{run}", traits={
        "name": "Northwind", "website": "https://www.northwind.example.com", "employees": 250, "industry": "software"})
    client.alias(previous_id=f"old-cookie-{run}", user_id=user)
    sent = []
    for event, props in (("Webinar Attended", {"webinar": "q4-roadmap"}), ("Demo Requested", {"plan": "pro"}),
                         ("Pricing Viewed", {"url": "/pricing"})):
        ok, msg = client.track(user_id=user, anonymous_id=anon, event=event, properties=props)
        assert ok
        sent.append(f"website:{msg['messageId']}")
    ok, msg = client.track(anonymous_id=visitor, event="Demo Requested")  # an anonymous visitor
    anon_event = f"website:{msg['messageId']}"

    def changes_for_both(records):
        return (any(k == user and c["to_value"] == "hot" for k, _, c in records)
                and any(k == f"anon:{visitor}" for k, _, c in records))

    got = read(bootstrap, names["LEADPULSE_LIFECYCLE_TOPIC"], "LifecycleChange", changes_for_both)
    assert changes_for_both(got), f"{got}\n{worker.log_text()[-3000:]}\n{collector.log_text()[-2000:]}"
    changes = [c for _, _, c in got]
    hot = next(c for c in changes if c["contact_id"] == user and c["to_value"] == "hot")
    assert hot["cause_event_id"] in sent  # the deterministic id derived from Segment's messageId
    assert hot["fit"] > 0 and hot["grade"] in ("A", "B")  # the identify's traits made the profile
    warm = next(c for c in changes if c["contact_id"] == f"anon:{visitor}")
    assert (warm["to_value"], warm["cause_event_id"]) == ("warm", anon_event)

    # The identity and account records: in their contracts, keyed by the contact, on the partition
    # of the contact's events (co-partitioned, as the identity merge of issue 13 needs).
    events = read(bootstrap, names["LEADPULSE_EVENTS_TOPIC"], "BehaviourEvent",
                  lambda r: sum(k == user for k, _, _ in r) >= 3)
    partition = {p for k, p, _ in events if k == user}
    assert len(partition) == 1
    assert {e["event_id"] for k, _, e in events if k == user} == set(sent)
    assert all(e["anonymous_id"] == anon for k, _, e in events if k == user)
    links = read(bootstrap, names["LEADPULSE_IDENTITY_TOPIC"], "IdentityLink",
                 lambda r: sum(k == user for k, _, _ in r) >= 2)
    mine = sorted((l["anonymous_id"], p) for k, p, l in links if k == user)
    assert mine == sorted([(anon, *partition), (f"old-cookie-{run}", *partition)])
    (member,) = [(p, m) for k, p, m in read(bootstrap, names["LEADPULSE_ACCOUNTS_INPUT_TOPIC"], "AccountMembership",
                                             lambda r: any(k == user for k, _, _ in r)) if k == user]
    assert member[0] in partition
    assert (member[1]["account_id"], member[1]["account_domain"], member[1]["account_size"]) == (
        f"northwind-{run}", "northwind.example.com", 250)
    # The lookup API shows the profile the identify made.
    status, snapshot = worker.get_json(f"/contacts/{user}")
    assert status == 200 and snapshot["fit"] > 0


def test_a_retried_message_is_stored_once_and_scored_once(stack):
    bootstrap, names, worker, collector = stack
    user = f"retry-{uuid.uuid4().hex[:6]}"
    body = {"batch": [{"type": "track", "userId": user, "event": "Demo Requested", "messageId": f"m-{user}"}]}
    answers = [post(collector, "/v1/batch", body) for _ in range(3)]
    assert [a["accepted"] for _, a in answers] == [1, 0, 0] and answers[2][1]["duplicates"] == 1
    assert read(bootstrap, names["LEADPULSE_EVENTS_TOPIC"], "BehaviourEvent", lambda r: any(k == user for k, *_ in r))
    everything = read(bootstrap, names["LEADPULSE_EVENTS_TOPIC"], "BehaviourEvent", timeout=4)  # all there is
    assert [e["event_id"] for k, _, e in everything if k == user] == [f"website:m-{user}"]


def post(collector, path: str, body, headers: dict | None = None, key: str | None = WRITE_KEY) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        h["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    req = urllib.request.Request(collector.url + path, data=data, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_unauthenticated_requests_get_401_and_nothing_is_produced(stack):
    bootstrap, names, worker, collector = stack
    topics = [names[k] for k in ("LEADPULSE_EVENTS_TOPIC", "LEADPULSE_PROFILES_TOPIC", "LEADPULSE_IDENTITY_TOPIC",
                                 "LEADPULSE_ACCOUNTS_INPUT_TOPIC", "LEADPULSE_MERGES_TOPIC",
                                 "LEADPULSE_ERASURES_TOPIC", "LEADPULSE_DLQ_TOPIC")]
    before = end_offsets(bootstrap, topics)
    for key in ("wk-not-a-key-" + uuid.uuid4().hex, WRITE_KEY[:-1]):
        with pytest.raises(APIError) as exc:
            segment(collector, key).track(user_id="intruder", event="Demo Requested")
        assert exc.value.status == 401
        with pytest.raises(APIError) as exc:
            segment(collector, key).identify(user_id="intruder", traits={"email": "x@y.example"})
        assert exc.value.status == 401
    assert post(collector, "/v1/batch", {"batch": [{"type": "track", "userId": "x", "event": "Demo Requested"}]},
                key=None)[0] == 401
    hubspot = (PAYLOADS / "hubspot/contact_events.json").read_bytes()
    ts = str(int(time.time() * 1000))
    forged = hubspot_signature("not-the-secret", "POST", "https://collector.example.com/webhooks/hubspot", hubspot, ts)
    assert post(collector, "/webhooks/hubspot", hubspot, {"X-HubSpot-Signature-v3": forged,
                                                          "X-HubSpot-Request-Timestamp": ts}, key=None)[0] == 401
    mautic = (PAYLOADS / "mautic/queued_batch.json").read_bytes()
    assert post(collector, "/webhooks/mautic", mautic, {"Webhook-Signature": "Zm9yZ2Vk"}, key=None)[0] == 401
    time.sleep(1.0)  # anything wrongly produced would be there by now
    assert end_offsets(bootstrap, topics) == before
    # The same calls, authenticated, do move them: the check above could fail.
    assert segment(collector).track(user_id="insider", event="Demo Requested")[0]
    after = end_offsets(bootstrap, topics)
    assert sum(after.values()) == sum(before.values()) + 1


def test_signed_webhooks_land_on_their_topics(stack):
    bootstrap, names, worker, collector = stack
    hubspot = (PAYLOADS / "hubspot/contact_events.json").read_bytes()
    ts = str(int(time.time() * 1000))
    sig = hubspot_signature(HUBSPOT_SECRET, "POST", "https://collector.example.com/webhooks/hubspot", hubspot, ts)
    status, answer = post(collector, "/webhooks/hubspot", hubspot,
                          {"X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": ts}, key=None)
    assert status == 200 and answer["accepted"] + answer["duplicates"] == 6
    mautic = (PAYLOADS / "mautic/lead_company_change.json").read_bytes()
    status, answer = post(collector, "/webhooks/mautic", mautic,
                          {"Webhook-Signature": mautic_signature(MAUTIC_SECRET, mautic)}, key=None)
    assert status == 200 and answer["accepted"] + answer["duplicates"] == 1
    merges = read(bootstrap, names["LEADPULSE_MERGES_TOPIC"], "ContactMerge", lambda r: len(r) >= 1)
    assert [(k, m["loser"]) for k, _, m in merges] == [("hubspot:1246965", "hubspot:1246999")]
    erasures = read(bootstrap, names["LEADPULSE_ERASURES_TOPIC"], "EraseRequest", lambda r: len(r) >= 1)
    assert [k for k, _, _ in erasures] == ["hubspot:1247001"]
    accounts = read(bootstrap, names["LEADPULSE_ACCOUNTS_INPUT_TOPIC"], "AccountMembership",
                    lambda r: sum(k.startswith(("hubspot:", "mautic:")) for k, _, _ in r) >= 2)
    assert {(k, a["account_id"]) for k, _, a in accounts if k.startswith(("hubspot:", "mautic:"))} == {
        ("hubspot:1246965", "hubspot-company:5790939450"), ("mautic:481", "mautic-company:17")}


def test_the_collector_over_tls_with_segments_client(kafka_bootstrap, tmp_path, monkeypatch):
    """LEADPULSE_COLLECTOR_TLS_CERT/_KEY: HTTPS, verified by Segment's client (requests, with the
    CA of this test); a plain-HTTP request to the TLS port gets nothing."""
    from streams.localkafka import make_tls_files

    tls = make_tls_files(tmp_path / "tls")
    suffix = "tls-" + uuid.uuid4().hex[:8]
    collector = CollectorProcess(kafka_bootstrap, suffix, tmp_path, write_keys={"website": WRITE_KEY}, ca=tls.ca,
                                 extra_env={"LEADPULSE_COLLECTOR_TLS_CERT": str(tls.keystore),
                                            "LEADPULSE_COLLECTOR_TLS_KEY": str(tls.keystore)}).start()
    try:
        collector.wait_ready(60)
        assert collector.url.startswith("https://")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca))  # how requests users trust a private CA
        ok, msg = segment(collector).track(user_id="tls-lead", event="Demo Requested")
        assert ok
        events = read(kafka_bootstrap, topic_env(suffix)["LEADPULSE_EVENTS_TOPIC"], "BehaviourEvent",
                      lambda r: len(r) >= 1)
        assert [e["event_id"] for _, _, e in events] == [f"website:{msg['messageId']}"]
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{collector.web_port}/health/live", timeout=5).read()
    finally:
        collector.stop()
