"""Avro on the wire, Confluent framing: magic byte 0, 4-byte big-endian schema id, Avro binary body.

Schema Registry producers and consumers interoperate with this framing. Schema ids come from a
Confluent-compatible registry when one is configured, otherwise from the built-in catalogue over
`schemas/` (see `schemas/catalogue.toml`). Decoding resolves the writer's schema (named by the id)
into the reader's, so a producer on an older schema version is still read.

The hot path does not walk the schema per call: records are written, and read when the writer's
schema is the reader's, by code compiled once per schema (`streams.avrofast`), byte for byte what
fastavro writes. fastavro stays for schema resolution, for schemas that code does not cover, and
for records with values it leaves to fastavro (an int for a double, say): its bytes or its error.

Everything that can go wrong with input bytes raises a subclass of `DecodeError`, and only that.
"""

from __future__ import annotations

import io
import json
import struct
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import fastavro
from fastavro._read_common import SchemaResolutionError

from streams import avrofast

MAGIC = 0
HEADER = struct.Struct(">bI")
SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"


class DecodeError(Exception):
    """Input bytes that cannot become a record; `field` names the part at fault when known."""

    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason if field is None else f"field {field!r}: {reason}")
        self.reason = reason
        self.field = field


class WireFormatError(DecodeError):
    """Not Confluent-framed Avro: empty, too short, or a wrong magic byte."""


class UnknownSchemaError(DecodeError):
    """The schema id in the header is not known to the catalogue or the registry."""


class AvroBodyError(DecodeError):
    """The Avro body does not match its writer schema (truncated, corrupt, unresolvable)."""


class SchemaSource(Protocol):
    def writer_id(self, name: str) -> int: ...
    def schema(self, schema_id: int) -> dict: ...
    def reader_schema(self, name: str) -> dict: ...


def _plain(schema: Any) -> Any:
    """The schema with logical-type annotations dropped: identical on the wire, but timestamps stay
    epoch-millisecond ints in Python instead of datetimes (cheaper, and what the core works in)."""
    if isinstance(schema, dict):
        return {k: _plain(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_plain(v) for v in schema]
    return schema


def parse(raw: dict) -> dict:
    return fastavro.parse_schema(_plain(raw))


def _record_name(schema: dict) -> str:
    return schema["name"].rsplit(".", 1)[-1]


class Catalogue:
    """The built-in schema source: stable ids from `schemas/catalogue.toml`."""

    def __init__(self, directory: Path = SCHEMAS_DIR):
        with open(directory / "catalogue.toml", "rb") as fh:
            entries = tomllib.load(fh)["schema"]
        self._by_id: dict[int, dict] = {}
        self._raw: dict[int, dict] = {}
        self._latest: dict[str, int] = {}
        for entry in entries:
            raw = json.loads((directory / entry["file"]).read_text())
            self._raw[entry["id"]] = raw
            self._by_id[entry["id"]] = parse(raw)
            self._latest[_record_name(raw)] = entry["id"]

    def writer_id(self, name: str) -> int:
        return self._latest[name]

    def schema(self, schema_id: int) -> dict:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise UnknownSchemaError(f"unknown schema id {schema_id}", "schema_id") from None

    def reader_schema(self, name: str) -> dict:
        return self._by_id[self._latest[name]]

    def raw(self, schema_id: int) -> dict:
        """The schema as written in `schemas/`, logical types included (what a registry is given)."""
        return self._raw[schema_id]

    def ids(self) -> list[int]:
        return sorted(self._by_id)


class SchemaRegistry:
    """A Confluent-compatible Schema Registry: registers our schemas under `<record>-value` subjects
    (record-name strategy keeps one subject per record whatever the topic) and fetches unknown ids."""

    def __init__(self, url: str, catalogue: Catalogue | None = None, timeout: float = 5.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._local = catalogue or Catalogue()
        self._by_id: dict[int, dict] = {}
        self._writer_ids: dict[str, int] = {}

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read())

    def writer_id(self, name: str) -> int:
        if name not in self._writer_ids:
            local_id = self._local.writer_id(name)
            body = {"schema": json.dumps(self._local.raw(local_id))}
            answer = self._call("POST", f"/subjects/{name}-value/versions", body)
            self._writer_ids[name] = int(answer["id"])
            self._by_id[int(answer["id"])] = self._local.schema(local_id)
        return self._writer_ids[name]

    def schema(self, schema_id: int) -> dict:
        if schema_id not in self._by_id:
            try:
                answer = self._call("GET", f"/schemas/ids/{schema_id}")
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise UnknownSchemaError(f"unknown schema id {schema_id}", "schema_id") from None
                raise
            self._by_id[schema_id] = parse(json.loads(answer["schema"]))
        return self._by_id[schema_id]

    def reader_schema(self, name: str) -> dict:
        return self._local.reader_schema(name)


@dataclass
class _Resolution:
    writer: dict
    reader: dict | None  # None when writer and reader are the same schema
    fast: Callable | None = None  # the writer schema's compiled decoder, when there is nothing to resolve


class AvroCodec:
    """Encodes records to framed Avro and decodes framed Avro into the reader schema of a record."""

    def __init__(self, source: SchemaSource | None = None):
        self.source = source or Catalogue()
        self._resolutions: dict[tuple[int, str], _Resolution] = {}
        self._writers: dict[int, tuple[bytes, Callable | None]] = {}  # schema id -> (header, compiled encoder)

    def encode(self, name: str, record: dict) -> bytes:
        schema_id = self.source.writer_id(name)
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = self._writers[schema_id] = (
                HEADER.pack(MAGIC, schema_id), avrofast.encoder(self.source.schema(schema_id)))
        header, fast = writer
        if fast is not None:
            try:
                return fast(record, header)
            except Exception:  # noqa: BLE001 - a value the fast path leaves to fastavro: its bytes or its error
                pass
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, self.source.schema(schema_id), record)
        return buf.getvalue()

    def _resolution(self, schema_id: int, name: str) -> _Resolution:
        key = (schema_id, name)
        res = self._resolutions.get(key)
        if res is None:
            writer = self.source.schema(schema_id)
            reader = self.source.reader_schema(name)
            if _record_name(writer) != name:
                raise UnknownSchemaError(
                    f"schema id {schema_id} is a {_record_name(writer)}, expected a {name}", "schema_id"
                )
            res = _Resolution(writer, None if writer is reader else reader)
            if res.reader is None:
                res.fast = avrofast.decoder(writer)
            self._resolutions[key] = res
        return res

    def decode(self, name: str, data: bytes | None) -> dict:
        if not data:
            raise WireFormatError("empty message", "value")
        if len(data) < HEADER.size:
            raise WireFormatError(f"{len(data)} bytes is shorter than the 5-byte header", "value")
        magic, schema_id = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise WireFormatError(f"magic byte {magic} is not 0 (not Confluent-framed Avro)", "magic")
        res = self._resolutions.get((schema_id, name)) or self._resolution(schema_id, name)
        if res.fast is not None:
            try:
                record, end = res.fast(data, HEADER.size)
            except avrofast.Truncated as exc:
                raise AvroBodyError(f"truncated Avro body ({exc})", "value") from None
            except avrofast.BodyError as exc:
                raise AvroBodyError(f"corrupt Avro body: {exc}", "value") from None
            if end != len(data):
                raise AvroBodyError(f"{len(data) - end} trailing bytes after the Avro body", "value")
            return record
        buf = io.BytesIO(data)
        buf.seek(HEADER.size)
        try:
            record = fastavro.schemaless_reader(buf, res.writer, res.reader)
        except SchemaResolutionError as exc:
            raise AvroBodyError(f"cannot resolve writer schema {schema_id} into {name}: {exc}", "schema_id") from None
        except (EOFError, StopIteration) as exc:
            raise AvroBodyError(f"truncated Avro body ({exc or 'end of data'})", "value") from None
        except Exception as exc:  # fastavro raises many kinds on corrupt input
            raise AvroBodyError(f"corrupt Avro body: {type(exc).__name__}: {exc}", "value") from None
        if buf.tell() != len(data):
            raise AvroBodyError(f"{len(data) - buf.tell()} trailing bytes after the Avro body", "value")
        return record


def codec_from_env(schema_registry_url: str | None) -> AvroCodec:
    return AvroCodec(SchemaRegistry(schema_registry_url) if schema_registry_url else Catalogue())
