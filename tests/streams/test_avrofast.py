"""The compiled Avro encoders and decoders against fastavro (byte for byte, record for record) and
against the reference implementation (avro-python3), on every schema of the catalogue.

On corrupt bodies the contract is: whatever the compiled decoder accepts, fastavro accepts as the
same record; whatever fastavro rejects, it rejects. Where fastavro accepts a body that is not Avro
by accident (a negative enum or union index, a boolean byte other than 0 or 1, a varint beyond 64
bits), we reject it: a dead letter is better than a guessed record (see `streams.avrofast`).
"""

import functools
import io
import json
import random
import struct

import avro.io
import avro.schema
import fastavro
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from streams import avrofast
from streams.codec import AvroBodyError, AvroCodec, Catalogue, DecodeError, _plain, parse

codec = AvroCodec()
cat = Catalogue()
LATEST = {name: cat.writer_id(name) for name in {cat.schema(i)["name"].rsplit(".", 1)[-1] for i in cat.ids()}}
NAME_OF = {schema_id: name for name, schema_id in LATEST.items()}
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Deliberate rejections of bodies fastavro reads by accident: the reasons our decoder gives.
NOT_AVRO = ("boolean byte", "enum index -", "union index -", "varint", "block of")

LEVELS = [f"level_{i}" for i in range(70)]  # more than 64 symbols: two-byte indexes
EVERYTHING = parse({
    "type": "record", "name": "Everything", "namespace": "test",
    "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "nothing", "type": "null"},
        {"name": "small", "type": "int"},
        {"name": "ratio", "type": "float"},
        {"name": "precise", "type": "double"},
        {"name": "blob", "type": "bytes"},
        {"name": "text", "type": "string"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "counts", "type": {"type": "map", "values": "long"}},
        {"name": "levels", "type": {"type": "array", "items": {"type": "enum", "name": "Level", "symbols": LEVELS}}},
        {"name": "weights", "type": {"type": "array", "items": "float"}},
        {"name": "inner", "type": {"type": "record", "name": "Inner",
                                   "fields": [{"name": "at", "type": "long"}, {"name": "level", "type": "Level"}]}},
        {"name": "inners", "type": {"type": "array", "items": "Inner"}},
        {"name": "by_level", "type": {"type": "map", "values": "Level"}},
        {"name": "maybe_int", "type": ["null", "int"]},
        {"name": "maybe_long", "type": ["long", "null"]},
        {"name": "maybe_double", "type": ["null", "double"]},
        {"name": "maybe_float", "type": ["null", "float"]},
        {"name": "maybe_bool", "type": ["null", "boolean"]},
        {"name": "maybe_bytes", "type": ["null", "bytes"]},
        {"name": "maybe_level", "type": ["null", "Level"]},
    ],
})
EVERYTHING_ENCODE, EVERYTHING_DECODE = avrofast.encoder(EVERYTHING), avrofast.decoder(EVERYTHING)


def values(schema, named: dict) -> st.SearchStrategy:
    """Valid Python values of a parsed schema; records omit fields that have a default, sometimes."""
    if isinstance(schema, str) and schema in named:
        return values(named[schema], named)
    if isinstance(schema, list):
        return st.one_of([values(branch, named) for branch in schema])
    kind = schema["type"] if isinstance(schema, dict) else schema
    if isinstance(schema, dict) and "name" in schema:
        named[schema["name"]] = schema
    return {
        "null": lambda: st.none(),
        "boolean": st.booleans,
        "int": lambda: st.integers(-(2**31), 2**31 - 1),
        "long": lambda: st.integers(-(2**63), 2**63 - 1),
        "float": lambda: st.floats(width=32, allow_nan=False),
        "double": lambda: st.floats(allow_nan=False),
        "bytes": lambda: st.binary(max_size=300),
        "string": lambda: st.text(max_size=80),
        "enum": lambda: st.sampled_from(schema["symbols"]),
        "array": lambda: st.lists(values(schema["items"], named), max_size=4),
        "map": lambda: st.dictionaries(st.text(max_size=12), values(schema["values"], named), max_size=4),
        "record": lambda: st.fixed_dictionaries(
            {f["name"]: values(f["type"], named) for f in schema["fields"] if "default" not in f},
            optional={f["name"]: values(f["type"], named) for f in schema["fields"] if "default" in f},
        ),
    }[kind]()


@functools.cache
def compiled(schema_id: int):
    return avrofast.encoder(cat.schema(schema_id)), avrofast.decoder(cat.schema(schema_id))


def records(schema: dict) -> st.SearchStrategy:
    return values(schema, dict(schema.get("__named_schemas", {})))


def with_defaults(schema: dict, record: dict) -> dict:
    return {f["name"]: record.get(f["name"], f.get("default")) for f in schema["fields"]}


def fastavro_bytes(schema, record) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def fastavro_read(schema, body: bytes):
    """fastavro's record of a body, or None when it raises or leaves bytes unread."""
    buf = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(buf, schema, None)
    except Exception:  # noqa: BLE001 - any kind is a rejection
        return None
    return record if buf.tell() == len(body) else None


def reference_read(schema_id: int, body: bytes):
    schema = avro.schema.parse(json.dumps(_plain(cat.raw(schema_id))))
    return avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(body)))


# -- valid records: byte for byte, record for record ---------------------------------------------

@pytest.mark.parametrize("schema_id", cat.ids())
def test_every_catalogued_schema_compiles(schema_id):
    assert avrofast.encoder(cat.schema(schema_id)) is not None
    assert avrofast.decoder(cat.schema(schema_id)) is not None


@pytest.mark.parametrize("schema_id", cat.ids())
@SETTINGS
@given(data=st.data())
def test_bytes_and_records_are_fastavros(schema_id, data):
    schema = cat.schema(schema_id)
    encode, decode = compiled(schema_id)
    record = data.draw(records(schema))
    expected = fastavro_bytes(schema, record)
    # The compiled encoder itself, not the codec's fallback to fastavro.
    assert encode(record) == expected
    assert encode(record, b"head") == b"head" + expected
    assert decode(expected) == (fastavro_read(schema, expected), len(expected))
    assert decode(b"\x00" + expected, 1) == (with_defaults(schema, record), len(expected) + 1)
    assert decode(memoryview(expected))[0] == with_defaults(schema, record)
    if NAME_OF.get(schema_id):
        framed = codec.encode(NAME_OF[schema_id], record)
        assert framed == struct.pack(">bI", 0, schema_id) + expected
        assert codec.decode(NAME_OF[schema_id], framed) == with_defaults(schema, record)


@pytest.mark.parametrize("schema_id", cat.ids())
@SETTINGS
@given(data=st.data())
def test_the_reference_implementation_reads_what_we_write(schema_id, data):
    schema = cat.schema(schema_id)
    record = data.draw(records(schema))
    assert reference_read(schema_id, compiled(schema_id)[0](record)) == with_defaults(schema, record)


@SETTINGS
@given(data=st.data())
def test_features_our_schemas_do_not_use_yet_match_fastavro_too(data):
    """Arrays, float, nested and referenced records, unions with null last, two-byte enum indexes."""
    record = data.draw(records(EVERYTHING))
    expected = fastavro_bytes(EVERYTHING, record)
    assert EVERYTHING_ENCODE(record) == expected
    assert EVERYTHING_DECODE(expected) == (fastavro_read(EVERYTHING, expected), len(expected))


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_a_record_missing_a_field_without_default_is_never_written(data):
    """fastavro's rule: a missing field is its default, or None when "null" is in its type."""
    record = data.draw(records(EVERYTHING))
    for field in EVERYTHING["fields"]:
        if "default" not in field and "null" not in field["type"]:
            partial = {k: v for k, v in record.items() if k != field["name"]}
            with pytest.raises(Exception):
                EVERYTHING_ENCODE(partial)
            with pytest.raises(ValueError, match="no value and no default"):
                fastavro_bytes(EVERYTHING, partial)


def test_what_is_not_compiled_is_left_to_fastavro():
    for unsupported in (
        {"type": "record", "name": "F", "fields": [{"name": "f", "type": {"type": "fixed", "name": "X", "size": 4}}]},
        {"type": "record", "name": "U", "fields": [{"name": "u", "type": ["null", "string", "long"]}]},
        {"type": "record", "name": "M", "fields": [{"name": "u", "type": ["null", {"type": "map", "values": "long"}]}]},
        {"type": "record", "name": "T",
         "fields": [{"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}]},
        {"type": "record", "name": "N", "fields": [{"name": "n", "type": {"type": "array", "items": "null"}}]},
        {"type": "record", "name": "L", "fields": [{"name": "next", "type": ["null", "L"]}]},
    ):
        schema = fastavro.parse_schema(unsupported)
        assert avrofast.encoder(schema) is None and avrofast.decoder(schema) is None, unsupported


# -- values fastavro is lenient with, and invalid records: its bytes, or its error ---------------

SNAPSHOT = {"contact_id": "c", "at": 1_764_000_000_123, "score": 1.5, "engagement": 1.0, "fit": 0.5, "grade": "B",
            "temperature": "warm", "stage": "mql", "explanation": {"fit": 0.5, "page_view": 1.0}, "rules_version": "v"}
DEAD = {"source_topic": "t", "source_partition": 1, "source_offset": 9, "original_key": b"k", "original_value": None,
        "error_class": "X", "field": None, "reason": "r", "failed_at": 3}


class Text(str):
    pass


@pytest.mark.parametrize("name,record", [
    ("ScoreSnapshot", dict(SNAPSHOT, score=2)),  # an int for a double: fastavro writes float(2)
    ("ScoreSnapshot", dict(SNAPSHOT, score="1.5")),  # fastavro's float() takes a numeric string
    ("ScoreSnapshot", dict(SNAPSHOT, explanation={"fit": 1})),  # ... and an int map value
    ("ScoreSnapshot", dict(SNAPSHOT, at=True)),  # a bool for a long is 1
    ("ScoreSnapshot", dict(SNAPSHOT, at=1.7)),  # fastavro truncates a float given for a long
    ("ScoreSnapshot", dict(SNAPSHOT, grade=Text("A"))),
    ("DeadLetter", dict(DEAD, original_key=bytearray(b"k"))),
    ("DeadLetter", dict(DEAD, field=("string", "x"))),  # fastavro's tuple notation for a union branch
    ("DeadLetter", dict(DEAD, source_partition=2**40)),  # an "int" wider than 32 bits: fastavro writes it
    ("LifecycleChange", {"change_id": "x", "contact_id": "c", "kind": "stage", "to_value": "sql", "at": 1,
                         "score": 1.0, "engagement": 1.0, "fit": 0.0, "grade": "A", "explanation": {},
                         "rules_version": "v"}),  # from_value and cause_event_id left out: their default
])
def test_lenient_values_get_fastavros_bytes(name, record):
    schema = cat.schema(cat.writer_id(name))
    assert codec.encode(name, record)[5:] == fastavro_bytes(schema, record)


@pytest.mark.parametrize("name,record", [
    ("ScoreSnapshot", {k: v for k, v in SNAPSHOT.items() if k != "grade"}),  # required field missing
    ("ScoreSnapshot", dict(SNAPSHOT, contact_id=None)),
    ("ScoreSnapshot", dict(SNAPSHOT, contact_id=b"c")),
    ("ScoreSnapshot", dict(SNAPSHOT, at=2**63)),
    ("ScoreSnapshot", dict(SNAPSHOT, at="1")),
    ("ScoreSnapshot", dict(SNAPSHOT, score=None)),
    ("ScoreSnapshot", dict(SNAPSHOT, explanation={"fit": "x"})),
    ("ScoreSnapshot", dict(SNAPSHOT, explanation={1: 1.0})),
    ("ScoreSnapshot", dict(SNAPSHOT, explanation=[("fit", 1.0)])),
    ("LifecycleChange", {"change_id": "x", "contact_id": "c", "kind": "colour", "to_value": "sql", "at": 1,
                         "score": 1.0, "engagement": 1.0, "fit": 0.0, "grade": "A", "explanation": {},
                         "rules_version": "v"}),  # not a symbol of the enum
    ("DeadLetter", dict(DEAD, field=5)),  # matches no branch of the union
    ("DeadLetter", dict(DEAD, original_key="k")),
    ("ContactProfile", {"contact_id": "c", "company_size": 2**40, "updated_at": 1}),  # beyond an int in a union
])
def test_invalid_records_raise_fastavros_error(name, record):
    schema = cat.schema(cat.writer_id(name))
    with pytest.raises(Exception) as ours:
        codec.encode(name, record)
    with pytest.raises(Exception) as theirs:
        fastavro_bytes(schema, record)
    assert type(ours.value) is type(theirs.value)
    assert isinstance(ours.value, (ValueError, TypeError, AttributeError, OverflowError))


def test_nan_and_infinities_are_written_bit_for_bit():
    schema = cat.schema(cat.writer_id("ScoreSnapshot"))
    nan = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]  # a NaN with a payload
    record = dict(SNAPSHOT, score=nan, engagement=float("inf"), fit=-0.0, explanation={"x": float("-inf"), "y": nan})
    assert avrofast.encoder(schema)(record) == fastavro_bytes(schema, record)


# -- varints ---------------------------------------------------------------------------------------

LONG = fastavro.parse_schema("long")


@pytest.mark.parametrize("value", [
    0, -1, 1, 63, -64, 64, -65, 8191, -8192, 8192, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1,
    1_764_000_000_123, -1_764_000_000_123, 2**41, 2**42, 2**55 - 1, 2**55, 2**56, -(2**56), 2**62,
    2**63 - 1, -(2**63),
])
def test_varints_are_fastavros_both_ways(value):
    wire = fastavro_bytes(LONG, value)
    assert avrofast.write_long(value) == wire
    assert avrofast.read_long(wire + b"\x99", 0) == (value, len(wire))
    assert avrofast.read_long(b"\x00" + wire, 1) == (value, len(wire) + 1)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, True, 1.0, "1", None])
def test_write_long_leaves_what_is_not_a_64_bit_int(value):
    with pytest.raises(avrofast.Unsupported):
        avrofast.write_long(value)


@pytest.mark.parametrize("wire,value", [
    (b"\x80\x00", 0), (b"\x81\x80\x00", -1),
    (b"\xff" * 9 + b"\x01", -(2**63)), (b"\xfe" + b"\xff" * 8 + b"\x01", 2**63 - 1),
])
def test_overlong_and_extreme_varints_read_as_fastavro_reads_them(wire, value):
    assert avrofast.read_long(wire, 0) == (value, len(wire))
    assert fastavro.schemaless_reader(io.BytesIO(wire), LONG, None) == value


@pytest.mark.parametrize("wire", [b"\xff" * 9 + b"\x02", b"\xff" * 9 + b"\x7f", b"\x80" * 10 + b"\x00", b"\xff" * 11])
def test_varints_beyond_64_bits_are_rejected(wire):
    with pytest.raises(avrofast.BodyError, match="varint"):
        avrofast.read_long(wire, 0)


@pytest.mark.parametrize("wire", [b"", b"\x80", b"\xff\xff\xff\xff\xff", b"\xff" * 7])
def test_a_varint_cut_short_is_an_index_error(wire):
    with pytest.raises(IndexError):  # the decoders turn it into Truncated
        avrofast.read_long(wire, 0)


# -- corrupt bodies: AvroBodyError naming "value", and never more lenient than fastavro -------------

EVENT = {"event_id": "e-1", "contact_id": "c-42", "anonymous_id": None, "event_type": "webinar_attended",
         "occurred_at": 1_764_000_000_123, "source": "hubspot", "properties": {"webinar": "q4-roadmap"}}
EVENT_WIRE = codec.encode("BehaviourEvent", EVENT)


def body_error(name: str, data: bytes) -> AvroBodyError:
    with pytest.raises(AvroBodyError) as exc:
        codec.decode(name, data)
    assert exc.value.field == "value"
    return exc.value


def framed(name: str, body: bytes) -> bytes:
    return struct.pack(">bI", 0, LATEST[name]) + body


@pytest.mark.parametrize("name", sorted(LATEST))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_truncation_is_a_body_error(name, data):
    good = codec.encode(name, data.draw(records(cat.schema(LATEST[name]))))
    decode = compiled(LATEST[name])[1]
    for cut in range(5, len(good)):
        body_error(name, good[:cut])
        with pytest.raises(avrofast.BodyError):  # the decoder alone, without the codec's end check
            decode(good[:cut], 5)
    body_error(name, good + b"\x00")


@pytest.mark.parametrize("name", sorted(LATEST))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_bodies_decode_as_fastavro_does_or_are_rejected(name, data):
    schema = cat.schema(LATEST[name])
    body = bytearray(fastavro_bytes(schema, data.draw(records(schema))))
    rnd = random.Random(data.draw(st.integers(0, 2**32)))
    for _ in range(rnd.randrange(1, 4)):
        if not body:
            break
        at = rnd.randrange(len(body))
        body[at] = rnd.choice((rnd.randrange(256), body[at] ^ (1 << rnd.randrange(8)), 0x7F, 0xFF, 0x80, 0x01))
    expected = fastavro_read(schema, bytes(body))
    try:
        got = codec.decode(name, framed(name, bytes(body)))
    except AvroBodyError as exc:
        assert exc.field == "value"
        if expected is not None:  # fastavro read it: only by accident, and we say why we do not
            assert any(reason in exc.reason for reason in NOT_AVRO), (exc.reason, expected)
    else:
        assert repr(got) == repr(expected)  # repr: a NaN equals itself


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=120), st.sampled_from(sorted(LATEST)))
def test_only_decode_errors_escape_on_framed_garbage(body, name):
    try:
        got = codec.decode(name, framed(name, body))
    except DecodeError:
        return
    assert repr(got) == repr(fastavro_read(cat.schema(LATEST[name]), body))


def test_a_huge_length_is_rejected_without_allocating_it():
    wire = framed("BehaviourEvent", avrofast.write_long(2**62) + b"abc")
    assert "length 4611686018427387904 with 3 bytes left" in body_error("BehaviourEvent", wire).reason
    huge_map = EVENT_WIRE[:-21] + avrofast.write_long(2**40) + b"\x02a"  # properties: 2**40 entries claimed
    assert "cannot fit" in body_error("BehaviourEvent", huge_map).reason


@pytest.mark.parametrize("body,reason", [
    (b"\x01", "negative length -1"),  # event_id
    (b"\x02\xff", "invalid UTF-8"),
    (b"\x02a\x06\xed\xa0\x80", "invalid UTF-8"),  # contact_id: an encoded surrogate
    (b"\x02a\x02b\x04", "union index 2 out of range"),  # anonymous_id
    (b"\x02a\x02b\x01", "union index -1 out of range"),  # fastavro reads -1 as the last branch
    (b"\x02a\x02b\x00\x22", "enum index 17 out of range"),  # event_type
    (b"\x02a\x02b\x00\x01", "enum index -1 out of range"),  # fastavro reads -1 as the last symbol
    (b"\x02a\x02b\x00\x80\x01", "enum index 64 out of range"),
])
def test_corrupt_fields_are_body_errors_with_the_reason(body, reason):
    assert reason in body_error("BehaviourEvent", framed("BehaviourEvent", body)).reason


def test_trailing_bytes_are_a_body_error():
    assert "1 trailing bytes" in body_error("BehaviourEvent", EVENT_WIRE + b"\x00").reason


def test_a_boolean_byte_other_than_0_or_1_is_rejected_though_fastavro_reads_true():
    schema = cat.schema(LATEST["QualificationUpdate"])
    good = fastavro_bytes(schema, {"update_id": "u", "contact_id": "c", "action": "criteria", "framework": "BANT",
                                   "criteria": {"budget": True}, "occurred_at": 7, "reason": ""})
    bad = good.replace(b"budget\x01", b"budget\x02")
    assert fastavro_read(schema, bad)["criteria"] == {"budget": True}
    assert "boolean byte 2" in body_error("QualificationUpdate", framed("QualificationUpdate", bad)).reason


def test_overlong_indexes_and_blocks_with_a_byte_size_are_avro_and_read():
    """Valid Avro that our writer never produces: an overlong varint, and a map block with a
    negative count followed by its size in bytes (the Java writer's buffered blocks)."""
    schema = cat.schema(LATEST["BehaviourEvent"])
    body = (b"\x02a" + b"\x82\x00b" + b"\x80\x00" + b"\x80\x00" + avrofast.write_long(EVENT["occurred_at"])
            + b"\x00" + b"\x01\x08\x02k\x02v" + b"\x00")  # source "", then 1 entry of 4 bytes
    expected = {"event_id": "a", "contact_id": "b", "anonymous_id": None, "event_type": "page_view",
                "occurred_at": EVENT["occurred_at"], "source": "", "properties": {"k": "v"}}
    assert fastavro_read(schema, body) == expected
    assert codec.decode("BehaviourEvent", framed("BehaviourEvent", body)) == expected


def test_an_older_writer_still_goes_through_schema_resolution():
    v1 = {k: v for k, v in EVENT.items() if k not in ("anonymous_id", "source")}
    data = struct.pack(">bI", 0, 1) + fastavro_bytes(cat.schema(1), v1)
    assert codec.decode("BehaviourEvent", data) == dict(EVENT, anonymous_id=None, source="")
    assert codec._resolutions[(1, "BehaviourEvent")].fast is None
    assert codec._resolutions[(LATEST["BehaviourEvent"], "BehaviourEvent")].fast is not None
