"""leadpulse's codec and a REAL Confluent-compatible Schema Registry (the `schema_registry_url`
fixture: the local Apicurio Registry, or SCHEMA_REGISTRY_URL), checked with confluent-kafka's own
serializers and deserializers, clients nobody here wrote. No broker: serializers run without one."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import uuid

import pytest
from confluent_kafka.schema_registry import (
    Schema, SchemaRegistryClient, record_subject_name_strategy, topic_record_subject_name_strategy,
    topic_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from streams.codec import AvroBodyError, AvroCodec, Catalogue, SchemaRegistry, UnsupportedSchemaError
from tests.support import json_record, proto_record

pytestmark = pytest.mark.registry

cat = Catalogue()
V2 = json.dumps(cat.raw(cat.writer_id("BehaviourEvent")))
EVENT = {"event_id": "e-1", "contact_id": "c-42", "anonymous_id": None, "event_type": "webinar_attended",
         "occurred_at": 1_764_000_000_123, "source": "hubspot", "properties": {"webinar": "q4-roadmap"}}
STRATEGIES = {"topic": topic_subject_name_strategy, "record": record_subject_name_strategy,
              "topic_record": topic_record_subject_name_strategy}


@pytest.fixture
def topic() -> str:
    return f"lead-events-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(schema_registry_url) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": schema_registry_url})


def with_datetimes(record: dict) -> dict:
    """confluent-kafka reads timestamp-millis as an aware datetime; leadpulse keeps epoch ms."""
    out = dict(record)
    out["occurred_at"] = int(out["occurred_at"].timestamp() * 1000)
    return out


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_what_we_register_and_write_confluents_deserializer_reads(schema_registry_url, client, topic, strategy):
    codec = AvroCodec(SchemaRegistry(schema_registry_url, strategy=strategy))
    data = codec.encode("BehaviourEvent", EVENT, topic=topic)
    expected_subject = {"topic": f"{topic}-value", "record": "io.leadpulse.BehaviourEvent",
                        "topic_record": f"{topic}-io.leadpulse.BehaviourEvent"}[strategy]
    assert expected_subject in client.get_subjects()
    latest = client.get_latest_version(expected_subject)
    assert latest.schema_id == int.from_bytes(data[1:5], "big")
    # the reader schema is the subject's: what a consumer configured with the same strategy uses
    reader = AvroDeserializer(client, latest.schema.schema_str,
                              conf={"subject.name.strategy": STRATEGIES[strategy]} if strategy != "topic" else None)
    assert with_datetimes(reader(data, SerializationContext(topic, MessageField.VALUE))) == EVENT
    assert with_datetimes(AvroDeserializer(client)(data, SerializationContext(topic, MessageField.VALUE))) == EVENT


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_what_confluents_serializer_writes_we_decode(schema_registry_url, client, topic, strategy):
    serialize = AvroSerializer(client, V2, conf={"subject.name.strategy": STRATEGIES[strategy]})
    data = serialize(EVENT, SerializationContext(topic, MessageField.VALUE))
    codec = AvroCodec(SchemaRegistry(schema_registry_url, strategy=strategy))
    assert codec.decode("BehaviourEvent", data) == EVENT
    # our own schema, registered by someone else: read through the compiled path, no resolution
    assert codec._resolutions[(int.from_bytes(data[1:5], "big"), "BehaviourEvent")].fast is not None
    # and registering ours under the same strategy finds the same schema: the same id
    assert codec.writer_id("BehaviourEvent", topic) == int.from_bytes(data[1:5], "big")


def test_an_older_producer_schema_is_resolved_into_ours(schema_registry_url, client, topic):
    v1 = {k: v for k, v in EVENT.items() if k not in ("anonymous_id", "source")}
    data = AvroSerializer(client, json.dumps(cat.raw(1)))(v1, SerializationContext(topic, MessageField.VALUE))
    got = AvroCodec(SchemaRegistry(schema_registry_url)).decode("BehaviourEvent", data)
    assert got == dict(EVENT, anonymous_id=None, source="")


@pytest.mark.parametrize("make", [json_record, proto_record], ids=["json-schema", "protobuf"])
@pytest.mark.parametrize("shared_subject", [False, True], ids=["own-subject", "subject-already-avro"])
def test_json_schema_and_protobuf_records_are_unsupported_schema_errors(
        schema_registry_url, client, topic, make, shared_subject):
    """In its own subject the registry says schemaType JSON/PROTOBUF; in a subject that already
    held Avro (the topic strategy, a topic with Avro producers) Apicurio answers without a
    schemaType, and the codec tells by the content. Either way: a dead letter, never a crash."""
    if shared_subject:
        AvroSerializer(client, V2)(EVENT, SerializationContext(topic, MessageField.VALUE))
        client.set_compatibility(f"{topic}-value", "NONE")  # a registry that lets anything in
    data = make(client, topic, topic_subject_name_strategy if shared_subject else record_subject_name_strategy)
    schema_id = int.from_bytes(data[1:5], "big")
    codec = AvroCodec(SchemaRegistry(schema_registry_url))
    with pytest.raises(UnsupportedSchemaError) as exc:
        codec.decode("BehaviourEvent", data)
    assert exc.value.schema_id == schema_id and exc.value.field == "schema_id"
    assert exc.value.schema_type.startswith("JSON" if make is json_record else "PROTOBUF")


def _set_compatibility(url: str, subject: str, level: str) -> None:
    req = urllib.request.Request(f"{url}/config/{urllib.parse.quote(subject, safe='')}", method="PUT",
                                 data=json.dumps({"compatibility": level}).encode(),
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    urllib.request.urlopen(req, timeout=10).read()


@pytest.mark.parametrize("level,accepted", [("BACKWARD", True), ("FORWARD", False), ("FULL", False)])
def test_only_forward_compatibility_keeps_producers_readable_by_the_worker(
        schema_registry_url, client, topic, level, accepted):
    """The worker reads with its own (older) schema. A producer that drops `event_id` (required in
    our reader) passes BACKWARD: the registry accepts it, and then every event it writes is
    unreadable for the worker. FORWARD (and FULL) refuse that schema at registration."""
    subject = f"{topic}-value"
    AvroCodec(SchemaRegistry(schema_registry_url)).encode("BehaviourEvent", EVENT, topic=topic)
    _set_compatibility(schema_registry_url, subject, level)
    v3 = json.loads(V2)
    v3["fields"] = [f for f in v3["fields"] if f["name"] != "event_id"]
    if not accepted:
        with pytest.raises(SchemaRegistryError) as exc:
            client.register_schema(subject, Schema(json.dumps(v3), "AVRO"))
        assert exc.value.http_status_code == 409
        return
    client.register_schema(subject, Schema(json.dumps(v3), "AVRO"))
    data = AvroSerializer(client, json.dumps(v3), conf={"auto.register.schemas": False, "use.latest.version": True})(
        {k: v for k, v in EVENT.items() if k != "event_id"}, SerializationContext(topic, MessageField.VALUE))
    with pytest.raises(AvroBodyError, match="cannot resolve"):
        AvroCodec(SchemaRegistry(schema_registry_url)).decode("BehaviourEvent", data)
