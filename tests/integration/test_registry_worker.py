"""A worker with SCHEMA_REGISTRY_URL set, on a real broker and a real Schema Registry (Apicurio),
fed records made by confluent-kafka's own serializers: Avro is scored; JSON Schema and Protobuf
records are dead-lettered and the next event of the same contact is scored; the worker registers its
output schemas under the configured strategy; a registry outage dead-letters nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import urllib.request
import uuid

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient, record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from scoring import BehaviourEvent, ContactProfile, ScoringModel, default_rules
from streams.codec import Catalogue
from streams.localregistry import LocalRegistry
from tests.integration.test_pipeline import wait_for
from streams.watchdog import EXIT_FATAL
from tests.support import Worker, consume, json_record, produce, proto_record, topic_env

pytestmark = [pytest.mark.kafka, pytest.mark.registry]
HOUR = 3_600_000
cat = Catalogue()
model = ScoringModel(default_rules())


def now_ms() -> int:
    return int(time.time() * 1000)


def serializer(client: SchemaRegistryClient, name: str) -> AvroSerializer:
    """confluent-kafka's Avro serializer with our published schema, default (topic) strategy."""
    return AvroSerializer(client, json.dumps(cat.raw(cat.writer_id(name))))


def behaviour(cid: str, eid: str, event_type: str, at: int, **props: str) -> dict:
    return {"event_id": eid, "contact_id": cid, "anonymous_id": None, "event_type": event_type,
            "occurred_at": at, "source": "crm", "properties": props}


def subjects(url: str) -> set[str]:
    with urllib.request.urlopen(f"{url}/subjects", timeout=10) as resp:
        return set(json.loads(resp.read()))


def deserialize_all(client: SchemaRegistryClient, messages) -> list[dict]:
    read = AvroDeserializer(client)
    return [read(m.value, SerializationContext(m.topic, MessageField.VALUE)) for m in messages]


@pytest.fixture
def names(unique):
    return topic_env(unique)


async def test_a_worker_on_a_registry_scores_avro_and_dead_letters_json_schema_and_protobuf(
        kafka_bootstrap, schema_registry_url, unique, names, tmp_path):
    client = SchemaRegistryClient({"url": schema_registry_url})
    worker = Worker(kafka_bootstrap, unique, tmp_path, extra_env={"SCHEMA_REGISTRY_URL": schema_registry_url}).start()
    try:
        worker.wait_ready()
        # its outputs' schemas, under TopicNameStrategy (the default) for its output topics
        for topic in ("LEADPULSE_LIFECYCLE_TOPIC", "LEADPULSE_SCORES_TOPIC", "LEADPULSE_DLQ_TOPIC",
                      "LEADPULSE_ACCOUNTS_TOPIC"):
            assert f"{names[topic]}-value" in subjects(schema_registry_url)

        events_topic, profiles_topic = names["LEADPULSE_EVENTS_TOPIC"], names["LEADPULSE_PROFILES_TOPIC"]
        ctx = SerializationContext(events_topic, MessageField.VALUE)
        cid, t0 = f"reg-{unique}", now_ms() - 2 * HOUR
        prof = dict(contact_id=cid, email="ana@acme-robotics.com", job_title="VP Marketing", company="Acme",
                    company_size=800, industry="software", country="FR", updated_at=t0)
        first = [behaviour(cid, "r-1", "content_download", t0 + 1000, asset_type="whitepaper"),
                 behaviour(cid, "r-2", "webinar_signup", t0 + 2000)]
        avro = serializer(client, "BehaviourEvent")
        await produce(kafka_bootstrap, profiles_topic, [(cid.encode(), serializer(client, "ContactProfile")(
            prof, SerializationContext(profiles_topic, MessageField.VALUE)))])
        await asyncio.sleep(1.0)  # the profile first, as a CRM sync would do
        await produce(kafka_bootstrap, events_topic, [(cid.encode(), avro(e, ctx)) for e in first])

        # a lifecycle change, readable by confluent-kafka's deserializer through the registry
        state, expected = None, []
        state, changes = model.apply_profile(state, ContactProfile(**prof))
        expected += changes
        state, changes = model.apply_events(state, [BehaviourEvent(**e) for e in first])
        expected += changes
        assert expected, "the inputs must change something, or this test proves nothing"
        got = await consume(kafka_bootstrap, names["LEADPULSE_LIFECYCLE_TOPIC"], lambda g: len(g) >= len(expected))
        changes_read = deserialize_all(client, got)
        assert [(c["kind"], c["from_value"], c["to_value"]) for c in changes_read] == \
            [(c.kind, c.from_value, c.to_value) for c in expected]

        # a JSON Schema record and a Protobuf one for the same contact, then a normal event
        client.set_compatibility(f"{events_topic}-value", "NONE")  # let them into the topic's subject too
        poison = [json_record(client, events_topic, record_subject_name_strategy),
                  proto_record(client, events_topic, record_subject_name_strategy)]
        after = behaviour(cid, "r-3", "demo_request", t0 + 3000)
        await produce(kafka_bootstrap, events_topic, [(cid.encode(), p) for p in poison] + [(cid.encode(), avro(after, ctx))])
        letters = deserialize_all(client, await consume(kafka_bootstrap, names["LEADPULSE_DLQ_TOPIC"],
                                                         lambda g: len(g) >= 2))
        assert [(d["error_class"], d["field"]) for d in letters] == [("UnsupportedSchemaError", "schema_id")] * 2
        assert [d["original_value"] for d in letters] == poison  # nothing lost, byte for byte
        assert all(f"schema id {int.from_bytes(p[1:5], 'big')}" in d["reason"] for d, p in zip(letters, poison))

        state, _ = model.apply_events(state, [BehaviourEvent(**after)])
        want = model.snapshot(state).score
        status, body = await wait_for(lambda: (r := worker.get_json(f"/contacts/{cid}"))[0] == 200
                                      and abs(r[1]["score"] - want) < 1e-6 and r)
        assert body["score"] == pytest.approx(want, abs=1e-6)
        assert worker.proc.poll() is None, "the worker must live on"
    finally:
        worker.stop()


def test_the_worker_registers_its_outputs_under_the_configured_strategy(schema_registry_url, unique):
    from streams.preflight import check_registry
    from streams.settings import Settings

    base = Settings.from_env()
    for strategy in ("topic", "record", "topic_record"):
        env = topic_env(f"{unique}-{strategy}")
        s = dataclasses.replace(base, schema_registry_url=schema_registry_url,
                                schema_registry_subject_strategy=strategy,
                                lifecycle_topic=env["LEADPULSE_LIFECYCLE_TOPIC"],
                                scores_topic=env["LEADPULSE_SCORES_TOPIC"], dlq_topic=env["LEADPULSE_DLQ_TOPIC"],
                                accounts_topic=env["LEADPULSE_ACCOUNTS_TOPIC"])
        check_registry(s)
        want = {(env[t], f"io.leadpulse.{r}") for t, r in (("LEADPULSE_LIFECYCLE_TOPIC", "LifecycleChange"),
                                                             ("LEADPULSE_SCORES_TOPIC", "ScoreSnapshot"),
                                                             ("LEADPULSE_DLQ_TOPIC", "DeadLetter"),
                                                             ("LEADPULSE_ACCOUNTS_TOPIC", "AccountChange"))}
        expected = {{"topic": f"{t}-value", "record": r, "topic_record": f"{t}-{r}"}[strategy] for t, r in want}
        assert expected <= subjects(schema_registry_url), strategy


@pytest.mark.slow
async def test_a_registry_outage_dead_letters_nothing_and_the_event_is_scored_once_it_is_back(
        kafka_bootstrap, unique, names, tmp_path):
    """Its own registry (persistent, so it comes back with its schemas), stopped under the worker."""
    registry = LocalRegistry(state_dir=tmp_path / "registry", persistent=True)
    url = registry.start()
    worker = Worker(kafka_bootstrap, unique, tmp_path,
                    extra_env={"SCHEMA_REGISTRY_URL": url, "SCHEMA_REGISTRY_RETRY_S": "2"}).start()
    try:
        worker.wait_ready()
        events_topic = names["LEADPULSE_EVENTS_TOPIC"]
        cid = f"outage-{uuid.uuid4().hex[:6]}"
        ev = behaviour(cid, "o-1", "demo_request", now_ms() - 1000)
        data = serializer(SchemaRegistryClient({"url": url}), "BehaviourEvent")(
            ev, SerializationContext(events_topic, MessageField.VALUE))  # an id the worker has not seen
        registry.stop()
        await produce(kafka_bootstrap, events_topic, [(cid.encode(), data)])
        assert await wait_for(lambda: "RegistryUnavailable" in worker.log_text(), timeout=30), worker.log_text()[-3000:]
        exited = await wait_for(lambda: worker.proc.poll() is not None, timeout=15)
        assert exited and worker.proc.returncode == EXIT_FATAL, worker.log_text()[-3000:]  # restart it: no stall
        assert await consume(kafka_bootstrap, names["LEADPULSE_DLQ_TOPIC"], lambda g: False, timeout=3) == []

        assert registry.start() == url  # the same URL, the same schemas
        worker = Worker(kafka_bootstrap, unique, tmp_path, name="w2",
                        extra_env={"SCHEMA_REGISTRY_URL": url, "SCHEMA_REGISTRY_RETRY_S": "2"}).start()
        worker.wait_ready()
        state, _ = model.apply_events(None, [BehaviourEvent(**ev)])
        status, body = await wait_for(lambda: (r := worker.get_json(f"/contacts/{cid}"))[0] == 200 and r)
        assert body["score"] == pytest.approx(model.snapshot(state).score, abs=1e-6)
    finally:
        worker.stop()
        registry.stop()
