"""Avro on the wire, Confluent framing: magic byte 0, 4-byte big-endian schema id, Avro binary body.

Schema Registry producers and consumers interoperate with this framing. Schema ids come from a
Confluent-compatible registry when one is configured, otherwise from the built-in catalogue over
`schemas/` (see `schemas/catalogue.toml`). Decoding resolves the writer's schema (named by the id)
into the reader's, so a producer on an older schema version is still read.

The hot path does not walk the schema per call: records are written, and read when the writer's
schema is the reader's, by code compiled once per schema (`streams.avrofast`), byte for byte what
fastavro writes. fastavro stays for schema resolution, for schemas that code does not cover, and
for records with values it leaves to fastavro (an int for a double, say): its bytes or its error.

Everything that can go wrong with input bytes raises a subclass of `DecodeError`, and only that:
the worker dead-letters the record and the partition moves on. That includes a schema id naming a
JSON Schema or Protobuf schema, or one fastavro cannot parse (`UnsupportedSchemaError`). A registry
that cannot be used (down, 5xx, timing out, refusing our credentials) raises a `RegistryError`
instead, which is NOT a DecodeError: the record is not at fault, so it must not be dead-lettered;
the worker stops and its orchestrator restarts it.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import struct
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import fastavro
import fastavro.schema
from fastavro._read_common import SchemaResolutionError

from streams import avrofast

if TYPE_CHECKING:
    from streams.settings import Settings

MAGIC = 0
HEADER = struct.Struct(">bI")
SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"


class _FieldError(Exception):
    """One line, naming the field at fault when known (`field 'schema_id': ...`)."""

    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason if field is None else f"field {field!r}: {reason}")
        self.reason = reason
        self.field = field


class DecodeError(_FieldError):
    """Input bytes that cannot become a record; `field` names the part at fault when known."""


class WireFormatError(DecodeError):
    """Not Confluent-framed Avro: empty, too short, or a wrong magic byte."""


class UnknownSchemaError(DecodeError):
    """The schema id in the header is not known to the catalogue or the registry."""


class AvroBodyError(DecodeError):
    """The Avro body does not match its writer schema (truncated, corrupt, unresolvable)."""


class UnsupportedSchemaError(DecodeError):
    """The schema id names a schema leadpulse cannot read: JSON Schema, Protobuf, or anything fastavro
    cannot parse. The record is dead-lettered; the partition moves on."""

    def __init__(self, schema_id: int, schema_type: str, reason: str):
        super().__init__(_one_line(f"cannot read schema id {schema_id} ({schema_type}): {reason}"), "schema_id")
        self.schema_id, self.schema_type, self.detail = schema_id, schema_type, reason


class RegistryError(_FieldError):
    """The Schema Registry cannot be used: never the record's fault, so never a DecodeError (the
    record is not dead-lettered). It stops the worker, to be restarted once the registry is back."""


class RegistryUnavailable(RegistryError):
    """Down, timing out, answering 5xx or nonsense, for longer than the retry budget."""


class RegistryRefused(RegistryError):
    """A definite no that is not about the record: credentials refused (401/403), a registration
    refused (409 incompatible, 422 invalid), a URL that is not a Schema Registry API (404)."""


class SchemaSource(Protocol):
    def writer_id(self, name: str, topic: str | None = None) -> int: ...
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

    def writer_id(self, name: str, topic: str | None = None) -> int:
        return self._latest[name]  # one id per record, whatever the topic

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


def subject_name(strategy: str, topic: str | None, full_name: str) -> str:
    """The subject a record's schema is registered under, as Confluent's serializers name it:
    TopicNameStrategy `<topic>-value`, RecordNameStrategy `<full.name>`, TopicRecordNameStrategy
    `<topic>-<full.name>`."""
    if strategy == "record":
        return full_name
    if topic is None:
        raise ValueError(f"the {strategy!r} subject strategy needs the topic a {full_name} is written to")
    return f"{topic}-value" if strategy == "topic" else f"{topic}-{full_name}"


def _full_name(raw: dict) -> str:
    name = raw["name"]
    return name if "." in name or not raw.get("namespace") else f"{raw['namespace']}.{name}"


def _one_line(text: object, limit: int = 240) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class _Transient(Exception):
    """A registry answer worth asking again: no connection, a timeout, a 5xx, an unreadable body."""


class SchemaRegistry:
    """A Confluent-compatible Schema Registry (Confluent, Apicurio's /apis/ccompat/v7, Karapace,
    Redpanda).

    Our schemas are registered under the subject the strategy names for the record's topic, once
    per subject; ids we do not know are fetched once. What an id names is cached either way: an
    Avro schema, or the reason it cannot be read (JSON Schema, Protobuf, unparseable: a schema id
    never changes what it names), and for a while a 404. A registry that is down, times out or
    answers 5xx is asked again with a short backoff for `retry_s`, then `RegistryUnavailable`: that
    is not the record's fault, so it is never a DecodeError (never dead-lettered)."""

    NOT_FOUND_TTL_S = 60.0
    NOT_FOUND_MAX = 10_000

    def __init__(
        self, url: str, catalogue: Catalogue | None = None, *, strategy: str = "topic",
        user_info: Any = None, timeout: float = 5.0, retry_s: float = 10.0,
        default_topics: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
    ):
        self.url = url.rstrip("/")
        self.strategy = strategy
        self.timeout = timeout
        self.retry_s = retry_s
        self.default_topics = dict(default_topics or {})
        self._sleep, self._clock = sleep, clock
        self._headers = {"Content-Type": "application/vnd.schemaregistry.v1+json",
                         "Accept": "application/vnd.schemaregistry.v1+json, application/json"}
        if user_info is not None:  # a Secret or "user:password"; only the header ever holds it
            raw = user_info.reveal() if hasattr(user_info, "reveal") else str(user_info)
            self._headers["Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode()
        self._local = catalogue or Catalogue()
        self._by_id: dict[int, dict] = {}
        self._subject_ids: dict[str, int] = {}
        self._unsupported: dict[int, tuple[str, str]] = {}  # id -> (schema type, reason), for good
        self._not_found: dict[int, float] = {}  # id -> until when a 404 is believed
        # An id whose schema is one of ours, byte for byte on the wire, is read with our parsed
        # schema: for the current version that is the reader itself, and the compiled fast path.
        self._ours = {fastavro.schema.to_parsing_canonical_form(self._local.schema(i)): i for i in self._local.ids()}

    def __repr__(self) -> str:
        return f"SchemaRegistry({self.url!r}, strategy={self.strategy!r})"

    # -- HTTP -------------------------------------------------------------------------------------

    def _once(self, method: str, path: str, body: dict | None, timeout: float) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=self._headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read() or b""
            if status >= 500:
                raise _Transient(f"HTTP {status}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise _Transient(_one_line(f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException)
                                       else reason, 120)) from None
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            if status < 300:  # a 2xx that is not JSON: a proxy or a restarting registry
                raise _Transient(f"HTTP {status} with a body that is not JSON") from None
            return status, None

    def _request(self, method: str, path: str, what: str, body: dict | None = None) -> tuple[int, Any]:
        """(status, JSON body) of a 2xx or 4xx answer; RegistryUnavailable once `retry_s` is spent."""
        deadline = self._clock() + self.retry_s
        delay, tries = 0.1, 0
        while True:
            tries += 1
            try:
                return self._once(method, path, body, self.timeout)
            except _Transient as exc:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise RegistryUnavailable(
                        f"Schema Registry {self.url} unavailable for {what}: {exc} ({tries} tries in "
                        f"{self.retry_s:g} s, SCHEMA_REGISTRY_RETRY_S)",
                        "schema_id" if what.startswith("schema_id") else None) from None
                self._sleep(min(delay, remaining))
                delay = min(delay * 2, 2.0)

    def _refused(self, status: int, answer: Any, what: str) -> "RegistryRefused":
        message = answer.get("message") if isinstance(answer, dict) else None
        hint = {401: "check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", 403: "check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
                404: "is SCHEMA_REGISTRY_URL the API's base URL (Apicurio: .../apis/ccompat/v7)?"}.get(status)
        detail = "; ".join(_one_line(x) for x in (message, hint) if x)
        return RegistryRefused(f"Schema Registry {self.url} refused {what}: HTTP {status}"
                               + (f" ({detail})" if detail else ""),
                               "schema_id" if what.startswith("schema_id") else None)

    # -- writing: our schemas under the strategy's subjects ---------------------------------------

    def subject(self, name: str, topic: str | None = None) -> str:
        raw = self._local.raw(self._local.writer_id(name))
        return subject_name(self.strategy, topic or self.default_topics.get(name), _full_name(raw))

    def writer_id(self, name: str, topic: str | None = None) -> int:
        subject = self.subject(name, topic)
        schema_id = self._subject_ids.get(subject)
        if schema_id is None:
            local_id = self._local.writer_id(name)
            what = f"registering {name} under subject {subject!r}"
            status, answer = self._request("POST", f"/subjects/{urllib.parse.quote(subject, safe='')}/versions",
                                           what, {"schema": json.dumps(self._local.raw(local_id))})
            if status >= 300 or not isinstance(answer, dict) or not isinstance(answer.get("id"), int):
                raise self._refused(status, answer, what)
            schema_id = self._subject_ids[subject] = answer["id"]
            self._by_id.setdefault(schema_id, self._local.schema(local_id))
        return schema_id

    # -- reading: what an id names ----------------------------------------------------------------

    def schema(self, schema_id: int) -> dict:
        found = self._by_id.get(schema_id)
        if found is not None:
            return found
        if schema_id in self._unsupported:
            raise UnsupportedSchemaError(schema_id, *self._unsupported[schema_id])
        if self._not_found.get(schema_id, 0.0) > self._clock():
            raise UnknownSchemaError(f"unknown schema id {schema_id} (not in the registry)", "schema_id")
        what = f"schema_id {schema_id}"
        status, answer = self._request("GET", f"/schemas/ids/{schema_id}", what)
        if status == 404 and isinstance(answer, dict) and answer.get("error_code") == 40403:
            if len(self._not_found) >= self.NOT_FOUND_MAX:
                self._not_found.clear()
            self._not_found[schema_id] = self._clock() + self.NOT_FOUND_TTL_S
            raise UnknownSchemaError(f"unknown schema id {schema_id} (not in the registry)", "schema_id")
        if status >= 300:
            raise self._refused(status, answer, what)
        if not isinstance(answer, dict) or not isinstance(answer.get("schema"), str):
            raise RegistryUnavailable(f"Schema Registry {self.url} answered {what} without a schema", "schema_id")
        try:
            parsed = self._avro(answer)
        except UnsupportedSchemaError as exc:
            self._unsupported[schema_id] = (exc.schema_type, exc.detail)
            raise UnsupportedSchemaError(schema_id, exc.schema_type, exc.detail) from None
        self._by_id[schema_id] = parsed
        return parsed

    def _avro(self, answer: dict) -> dict:
        """The registry's answer as a parsed Avro record schema, else UnsupportedSchemaError (id 0:
        the caller names the id)."""
        declared = answer.get("schemaType") or "AVRO"
        if str(declared).upper() != "AVRO":
            raise UnsupportedSchemaError(0, str(declared), "leadpulse reads Avro only")
        if answer.get("references"):
            raise UnsupportedSchemaError(0, "AVRO", "it uses schema references, which leadpulse does not resolve")
        # Apicurio answers JSON Schema and Protobuf ids without their schemaType when they were
        # registered in a subject that already held Avro: then the content tells.
        guessed = "" if answer.get("schemaType") else " by its content; the registry gave no schemaType"
        try:
            raw = json.loads(answer["schema"])
        except ValueError:
            raise UnsupportedSchemaError(0, "PROTOBUF" + guessed, "not JSON, so not Avro") from None
        kind = "JSON" + guessed if isinstance(raw, dict) and ("$schema" in raw or raw.get("type") == "object") else "AVRO"
        try:
            parsed = parse(raw)
        except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds (UnknownType, SchemaParseException, ...)
            raise UnsupportedSchemaError(0, kind, f"fastavro cannot parse it ({type(exc).__name__}: {exc})") from None
        if not isinstance(parsed, dict) or parsed.get("type") != "record":
            raise UnsupportedSchemaError(0, kind, "not an Avro record schema")
        try:
            ours = self._ours.get(fastavro.schema.to_parsing_canonical_form(parsed))
        except Exception:  # noqa: BLE001 - only an optimisation: read it as it is
            ours = None
        return parsed if ours is None else self._local.schema(ours)

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
        # (record name, topic) -> (header, compiled encoder or None, parsed writer schema)
        self._writers: dict[tuple[str, str | None], tuple[bytes, Callable | None, dict]] = {}

    def encode(self, name: str, record: dict, topic: str | None = None) -> bytes:
        """`record` as framed Avro; `topic` (where it is written) picks the registry subject under
        the topic strategies. One dict look-up per call once (name, topic) has been seen."""
        writer = self._writers.get((name, topic))
        if writer is None:
            writer = self._writer(name, topic)
        header, fast, schema = writer
        if fast is not None:
            try:
                return fast(record, header)
            except Exception:  # noqa: BLE001 - a value the fast path leaves to fastavro: its bytes or its error
                pass
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, schema, record)
        return buf.getvalue()

    def _writer(self, name: str, topic: str | None) -> tuple[bytes, Callable | None, dict]:
        schema_id = self.source.writer_id(name, topic)  # registers it, with a registry
        schema = self.source.schema(schema_id)
        writer = self._writers[(name, topic)] = (HEADER.pack(MAGIC, schema_id), avrofast.encoder(schema), schema)
        return writer

    def writer_id(self, name: str, topic: str | None = None) -> int:
        """The schema id `encode(name, ..., topic)` writes (registered if need be)."""
        writer = self._writers.get((name, topic)) or self._writer(name, topic)
        return HEADER.unpack(writer[0])[1]

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


def home_topics(s: "Settings") -> dict[str, str]:
    """The topic each of our records is written to: the subject under the topic strategies when a
    caller does not say (`encode(name, record)`)."""
    return {"BehaviourEvent": s.events_topic, "ContactProfile": s.profiles_topic,
            "QualificationUpdate": s.qualifications_topic, "EraseRequest": s.erasures_topic,
            "LifecycleChange": s.lifecycle_topic, "ScoreSnapshot": s.scores_topic, "DeadLetter": s.dlq_topic,
            "IdentityLink": s.identity_topic, "ContactMerge": s.merges_topic,
            "AccountMembership": s.accounts_input_topic, "AccountChange": s.accounts_topic}


def codec_from_settings(s: "Settings") -> AvroCodec:
    """The built-in catalogue, or the registry of SCHEMA_REGISTRY_URL with its strategy and credentials."""
    if not s.schema_registry_url:
        return AvroCodec(Catalogue())
    return AvroCodec(SchemaRegistry(s.schema_registry_url, strategy=s.schema_registry_subject_strategy,
                                    user_info=s.schema_registry_user_info, retry_s=s.schema_registry_retry_s,
                                    default_topics=home_topics(s)))


def codec_from_env(schema_registry_url: str | None = None) -> AvroCodec:
    """`codec_from_settings` of the environment's settings, with `schema_registry_url` for the URL
    (as callers passed it before there were other registry settings)."""
    from dataclasses import replace

    from streams.settings import Settings

    return codec_from_settings(replace(Settings.from_env(), schema_registry_url=schema_registry_url))
