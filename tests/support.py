"""Helpers for the integration tests: the shared local runtime plus record builders."""

from __future__ import annotations

import json
import uuid

from streams.codec import AvroCodec
from tools.runtime import CollectorProcess, Worker, consume, free_port, produce, topic_env, wait_group_stable  # noqa: F401

codec = AvroCodec()


def event(contact_id: str, event_id: str, event_type: str, at_ms: int, **properties: str) -> tuple[bytes, bytes]:
    value = codec.encode(
        "BehaviourEvent",
        {"event_id": event_id, "contact_id": contact_id, "anonymous_id": None, "event_type": event_type,
         "occurred_at": at_ms, "source": "test", "properties": properties},
    )
    return contact_id.encode(), value


def decoder(name: str):
    """For `consume(decode=...)`: the record of a message, or None for a tombstone."""
    return lambda m: None if m.value is None else codec.decode(name, m.value)


# -- records made by confluent-kafka's own serializers (a client nobody here wrote) ---------------


def json_record(client, topic: str, strategy) -> bytes:
    """A JSON-Schema-registered behaviour event, as confluent-kafka's JSONSerializer writes it."""
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "BehaviourEvent", "type": "object",
              "properties": {"contact_id": {"type": "string"}, "event_type": {"type": "string"}}}
    serialize = JSONSerializer(json.dumps(schema), client, conf={"subject.name.strategy": strategy})
    return serialize({"contact_id": "c-42", "event_type": "page_view"}, SerializationContext(topic, MessageField.VALUE))


def proto_record(client, topic: str, strategy) -> bytes:
    """A Protobuf one, as confluent-kafka's ProtobufSerializer writes it; the message class is built
    with the descriptor API at test time (no generated code)."""
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    package = f"shop{uuid.uuid4().hex[:6]}"
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}/behaviour.proto", package=package, syntax="proto3")
    msg = fdp.message_type.add(name="BehaviourEvent")
    for number, name in enumerate(("contact_id", "event_type"), 1):
        msg.field.add(name=name, number=number, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.BehaviourEvent"))
    serialize = ProtobufSerializer(cls, client, {"use.deprecated.format": False, "subject.name.strategy": strategy})
    return serialize(cls(contact_id="c-42", event_type="page_view"), SerializationContext(topic, MessageField.VALUE))


def start_workers(bootstrap: str, suffix: str, workdir, names: tuple[str, ...], env: dict | None = None) -> list:
    """Workers started, ready, and in a group that has stopped rebalancing (stopped again if not)."""
    workers = [Worker(bootstrap, suffix, workdir, name=n, extra_env=dict(env or {})) for n in names]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.wait_ready()
        wait_group_stable(workers)
    except BaseException:
        for w in workers:
            w.stop()
        raise
    return workers
