"""Helpers for the integration tests: the shared local runtime plus record builders."""

from __future__ import annotations

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
