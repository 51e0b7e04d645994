"""The codec against the reference implementation (avro-python3), both ways, and its error contract."""

import io
import json
import struct
from datetime import datetime

import avro.io
import avro.schema
import pytest
from hypothesis import given, settings, strategies as st

from streams.codec import (
    SCHEMAS_DIR, AvroBodyError, AvroCodec, Catalogue, DecodeError, UnknownSchemaError, WireFormatError,
)

codec = AvroCodec()
cat = Catalogue()

EVENT = {
    "event_id": "e-1", "contact_id": "c-42", "anonymous_id": None, "event_type": "webinar_attended",
    "occurred_at": 1_764_000_000_123, "source": "hubspot", "properties": {"webinar": "q4-roadmap"},
}


def reference_schema(schema_id: int):
    return avro.schema.parse(json.dumps(cat.raw(schema_id)))


def reference_encode(schema_id: int, record: dict) -> bytes:
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id))
    avro.io.DatumWriter(reference_schema(schema_id)).write(record, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def reference_decode(data: bytes) -> dict:
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    buf = io.BytesIO(data[5:])
    return avro.io.DatumReader(reference_schema(schema_id)).read(avro.io.BinaryDecoder(buf))


def millis(value) -> int:
    """avro-python3 1.10 reads timestamp-millis as a plain long; later versions give a datetime."""
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else value


def test_reference_reads_what_we_write():
    decoded = reference_decode(codec.encode("BehaviourEvent", EVENT))
    assert millis(decoded.pop("occurred_at")) == EVENT["occurred_at"]
    assert decoded == {k: v for k, v in EVENT.items() if k != "occurred_at"}


def test_we_read_what_the_reference_writes():
    data = reference_encode(cat.writer_id("BehaviourEvent"), EVENT)
    assert codec.decode("BehaviourEvent", data) == EVENT


def test_older_writer_schema_is_resolved_into_the_current_reader():
    v1 = {k: v for k, v in EVENT.items() if k not in ("anonymous_id", "source")}
    data = reference_encode(1, v1)  # schema id 1 = BehaviourEvent v1
    got = codec.decode("BehaviourEvent", data)
    assert got == dict(EVENT, anonymous_id=None, source="")


def test_every_catalogued_schema_documents_every_field():
    for schema_id in cat.ids():
        for f in cat.raw(schema_id)["fields"]:
            assert f.get("doc"), f"schema {schema_id} field {f['name']} has no doc"


@pytest.mark.parametrize(
    "name,record",
    [
        ("ContactProfile", {"contact_id": "c", "email": "a@b.io", "job_title": "CTO", "company": "B",
                            "company_size": 250, "industry": "software", "country": "FR", "updated_at": 5}),
        ("QualificationUpdate", {"update_id": "u", "contact_id": "c", "action": "criteria", "framework": "BANT",
                                 "criteria": {"budget": True}, "occurred_at": 7, "reason": ""}),
        ("DeadLetter", {"source_topic": "t", "source_partition": 1, "source_offset": 9, "original_key": b"k",
                        "original_value": b"\x00\x01", "error_class": "X", "field": None, "reason": "r",
                        "failed_at": 3}),
    ],
)
def test_round_trip_through_the_reference(name, record):
    data = codec.encode(name, record)
    ref = reference_decode(data)
    for k, v in ref.items():
        ref[k] = millis(v)
    assert ref == record
    assert codec.decode(name, data) == record


@pytest.mark.parametrize(
    "data,error,field",
    [
        (b"", WireFormatError, "value"),
        (b"\x00\x00", WireFormatError, "value"),
        (b"\x01\x00\x00\x00\x02abc", WireFormatError, "magic"),
        (b"\x00\x00\x00\x03\xe7abc", UnknownSchemaError, "schema_id"),
        (b"\x00\x00\x00\x00\x28abc", UnknownSchemaError, "schema_id"),  # a LifecycleChange id
    ],
)
def test_bad_framing_is_a_typed_error_naming_the_field(data, error, field):
    with pytest.raises(error) as exc:
        codec.decode("BehaviourEvent", data)
    assert exc.value.field == field


def test_truncated_and_trailing_bytes_are_body_errors():
    good = codec.encode("BehaviourEvent", EVENT)
    with pytest.raises(AvroBodyError):
        codec.decode("BehaviourEvent", good[:-4])
    with pytest.raises(AvroBodyError):
        codec.decode("BehaviourEvent", good + b"\x00")


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=200))
def test_only_decode_errors_escape_on_arbitrary_bytes(data):
    try:
        codec.decode("BehaviourEvent", data)
    except DecodeError:
        pass


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=120))
def test_only_decode_errors_escape_on_framed_garbage(body):
    try:
        codec.decode("BehaviourEvent", b"\x00\x00\x00\x00\x02" + body)
    except DecodeError:
        pass


def test_schemas_dir_is_the_repository_one():
    assert (SCHEMAS_DIR / "catalogue.toml").exists()
