"""tools.avrofile, the fast container writer of `simulate`: byte for byte what fastavro writes."""

from __future__ import annotations

import io
import random

import fastavro
import pytest

from tools import avrofile
from tools.simulate import SimConfig, container_schema, simulate, write_file, write_file_fastavro

END_MS = 1_735_689_600_000


def fastavro_bytes(schema, datum) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), datum)
    return buf.getvalue()


def test_zigzag_matches_fastavro():
    r = random.Random(3)
    values = [0, 1, -1, 63, 64, -64, -65, 8191, 8192, 16383, 16384, -16385, 2**28, 2**42 + 5, -2**42, END_MS,
              2**62, -2**63, 2**63 - 1] + [r.randint(-2**63, 2**63 - 1) for _ in range(5000)] \
        + [r.randint(-100_000, 100_000) for _ in range(5000)]
    for v in values:
        assert avrofile.zigzag(v) == fastavro_bytes("long", v), v


def test_compiled_encoder_matches_fastavro():
    schema = {"type": "record", "name": "T", "namespace": "x", "fields": [
        {"name": "s", "type": "string"}, {"name": "i", "type": "int"}, {"name": "d", "type": "double"},
        {"name": "f", "type": "float"}, {"name": "b", "type": "boolean"}, {"name": "raw", "type": "bytes"},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["a", "b", "c"]}},
        {"name": "o", "type": ["null", "string"]}, {"name": "o2", "type": ["string", "null"]},
        {"name": "m", "type": {"type": "map", "values": "boolean"}},
        {"name": "arr", "type": {"type": "array", "items": "long"}},
        {"name": "again", "type": ["null", "E"]},
        {"name": "inner", "type": ["null", {"type": "record", "name": "I", "fields": [{"name": "n", "type": "long"}]}]},
    ]}
    enc = avrofile.compile_schema(schema)
    for datum in (
        {"s": "héllo", "i": -3, "d": 1.5, "f": 0.25, "b": True, "raw": b"\x00\xff", "e": "c", "o": None, "o2": "x",
         "m": {"k": True, "l": False}, "arr": [1, -2, 2**40], "again": "b", "inner": {"n": 7}},
        {"s": "", "i": 0, "d": -0.0, "f": 3.0, "b": False, "raw": b"", "e": "a", "o": "y" * 300, "o2": None,
         "m": {}, "arr": [], "again": None, "inner": None},
    ):
        assert enc(datum) == fastavro_bytes(schema, datum)
    with pytest.raises(ValueError, match="not a symbol"):
        enc({**datum, "e": "z"})


def test_unsupported_schemas_are_refused_at_compile_time():
    with pytest.raises(NotImplementedError):
        avrofile.compile_schema(["null", "string", "long"])
    with pytest.raises(NotImplementedError):
        avrofile.compile_schema({"type": "fixed", "name": "F", "size": 4})


@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_simulation_file_is_identical_to_fastavros(tmp_path, codec):
    cfg = SimConfig(contacts=400, seed=9, end_ms=END_MS)
    sim = simulate(cfg, show_progress=False)
    write_file(sim, cfg, tmp_path / "fast.avro", codec, show_progress=False)
    write_file_fastavro(sim, cfg, tmp_path / "ref.avro", codec)
    fast, ref = (tmp_path / "fast.avro").read_bytes(), (tmp_path / "ref.avro").read_bytes()
    assert len(fast) > 16_000 * 3  # several blocks
    assert fast == ref


def test_container_schema_embeds_the_wire_schemas():
    from streams.codec import Catalogue, _plain

    cat = Catalogue()
    schema = container_schema()
    assert [f["name"] for f in schema["fields"]] == ["kind", "behaviour", "profile", "qualification"]
    assert schema["fields"][0]["type"]["symbols"] == ["behaviour", "profile", "qualification"]
    for f, name in zip(schema["fields"][1:], ("BehaviourEvent", "ContactProfile", "QualificationUpdate")):
        assert f["type"] == ["null", _plain(cat.raw(cat.writer_id(name)))]
        assert f["default"] is None
