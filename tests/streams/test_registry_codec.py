"""The codec's registry client against a spec-faithful TEST DOUBLE (tests/streams/registry_double.py):
subject strategies, what an answer it cannot use becomes, negative caching, outages and retries,
credentials. The same behaviour against the real registry: tests/streams/test_registry_interop.py."""

from __future__ import annotations

import base64
import io
import json
import socket
import struct

import fastavro

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from streams.codec import (
    AvroCodec, Catalogue, DecodeError, RegistryError, RegistryRefused, RegistryUnavailable, SchemaRegistry,
    UnknownSchemaError, UnsupportedSchemaError, subject_name,
)
from streams.settings import Secret
from tests.streams.registry_double import Answer, RegistryDouble

cat = Catalogue()
EVENT = {"event_id": "e-1", "contact_id": "c-42", "anonymous_id": None, "event_type": "webinar_attended",
         "occurred_at": 1_764_000_000_123, "source": "hubspot", "properties": {"webinar": "q4-roadmap"}}
V2 = json.dumps(cat.raw(cat.writer_id("BehaviourEvent")))


class FakeTime:
    """sleep() moves the clock: retry budgets are checked without waiting for them."""

    def __init__(self):
        self.now, self.slept = 1000.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


@pytest.fixture
def double():
    d = RegistryDouble()
    yield d
    d.close()


def registry(double: RegistryDouble, **kw) -> SchemaRegistry:
    kw.setdefault("retry_s", 2.0)
    return SchemaRegistry(double.url, **kw)


def framed(schema_id: int, body: bytes = b"") -> bytes:
    return struct.pack(">bI", 0, schema_id) + body


def gets(double: RegistryDouble, schema_id: int) -> int:
    return sum(1 for r in double.requests if r.method == "GET" and r.path == f"/schemas/ids/{schema_id}")


# -- subject name strategies -------------------------------------------------------------------


@pytest.mark.parametrize("strategy,topic,expected", [
    ("topic", "lead-events", "lead-events-value"),
    ("record", "lead-events", "io.leadpulse.BehaviourEvent"),
    ("record", None, "io.leadpulse.BehaviourEvent"),
    ("topic_record", "lead-events", "lead-events-io.leadpulse.BehaviourEvent"),
])
def test_encode_registers_under_the_strategys_subject(double, strategy, topic, expected):
    codec = AvroCodec(registry(double, strategy=strategy))
    data = codec.encode("BehaviourEvent", EVENT, topic=topic)
    assert list(double.subjects) == [expected]
    (schema_id,) = double.subjects[expected]
    assert struct.unpack(">bI", data[:5]) == (0, schema_id)
    assert json.loads(double.schemas[schema_id]["schema"]) == cat.raw(cat.writer_id("BehaviourEvent"))
    assert codec.decode("BehaviourEvent", data) == EVENT


@given(topic=st.text(st.characters(codec="ascii", categories=["L", "N"], include_characters="._-"),
                     min_size=1, max_size=40),
       name=st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8}){0,3}\.[A-Z][A-Za-z]{0,10}", fullmatch=True))
def test_subject_names_are_confluents(topic, name):
    assert subject_name("topic", topic, name) == topic + "-value"
    assert subject_name("record", topic, name) == name
    assert subject_name("topic_record", topic, name) == f"{topic}-{name}"


def test_without_a_topic_the_record_s_home_topic_names_the_subject(double):
    codec = AvroCodec(registry(double, default_topics={"LifecycleChange": "crm-lifecycle"}))
    codec.writer_id("LifecycleChange")
    assert list(double.subjects) == ["crm-lifecycle-value"]
    with pytest.raises(ValueError, match="needs the topic"):
        codec.encode("BehaviourEvent", EVENT)  # no home topic given for it


def test_a_subject_is_registered_once_and_each_topic_gets_its_own(double):
    codec = AvroCodec(registry(double))
    for _ in range(50):
        codec.encode("BehaviourEvent", EVENT, topic="a")
    codec.encode("BehaviourEvent", EVENT, topic="b")
    posts = [r.path for r in double.requests if r.method == "POST"]
    assert posts == ["/subjects/a-value/versions", "/subjects/b-value/versions"]
    assert double.subjects["a-value"] == double.subjects["b-value"]  # same schema, same id


def test_records_written_by_others_with_our_schema_take_the_fast_path(double):
    """An id we did not register whose schema is ours, byte for byte on the wire, is read with our
    own parsed schema, so no resolution is needed (and v1 is still resolved into v2)."""
    mine = AvroCodec()  # the catalogue: same bytes after the header
    sid = double.add({"schema": V2})
    v1 = double.add({"schema": json.dumps(cat.raw(1))})
    codec = AvroCodec(registry(double))
    assert codec.decode("BehaviourEvent", framed(sid, mine.encode("BehaviourEvent", EVENT)[5:])) == EVENT
    assert codec._resolutions[(sid, "BehaviourEvent")].fast is not None
    old = {k: v for k, v in EVENT.items() if k not in ("anonymous_id", "source")}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, cat.schema(1), old)
    assert codec.decode("BehaviourEvent", framed(v1, buf.getvalue())) == dict(EVENT, anonymous_id=None, source="")


# -- answers leadpulse cannot read: dead letters, cached ---------------------------------------

PROTO_TEXT = 'syntax = "proto3";\npackage shop;\nmessage BehaviourEvent { string contact_id = 1; }\n'
PROTO_B64 = base64.b64encode(b"\n\x0eshop/ev.proto\x12\x04shop\"\x14\n\x0eBehaviourEvent").decode()
JSON_SCHEMA = json.dumps({"$schema": "http://json-schema.org/draft-07/schema#", "title": "BehaviourEvent",
                          "type": "object", "properties": {"contact_id": {"type": "string"}}})


@pytest.mark.parametrize("answer,kind", [
    ({"schema": JSON_SCHEMA, "schemaType": "JSON"}, "JSON"),
    ({"schema": PROTO_TEXT, "schemaType": "PROTOBUF"}, "PROTOBUF"),
    ({"schema": PROTO_B64, "schemaType": "PROTOBUF"}, "PROTOBUF"),
    ({"schema": V2, "schemaType": "XML"}, "XML"),
    # Apicurio leaves schemaType out when the subject already held Avro: judged by the content
    ({"schema": JSON_SCHEMA}, "JSON by its content; the registry gave no schemaType"),
    ({"schema": PROTO_TEXT}, "PROTOBUF by its content; the registry gave no schemaType"),
    ({"schema": PROTO_B64}, "PROTOBUF by its content; the registry gave no schemaType"),
    ({"schema": json.dumps({"type": "string"})}, "AVRO"),  # valid Avro, but not a record
    ({"schema": json.dumps({"type": "record", "name": "BehaviourEvent",
                            "fields": [{"name": "x", "type": "shop.Missing"}]})}, "AVRO"),  # UnknownType
    ({"schema": json.dumps({"type": "record", "name": "BehaviourEvent", "fields": "nope"})}, "AVRO"),
    ({"schema": V2, "references": [{"name": "x", "subject": "s", "version": 1}]}, "AVRO"),
])
def test_a_schema_leadpulse_cannot_read_is_an_unsupported_schema_error_cached_per_id(double, answer, kind):
    sid = double.add(answer)
    codec = AvroCodec(registry(double))
    for _ in range(3):
        with pytest.raises(UnsupportedSchemaError) as exc:
            codec.decode("BehaviourEvent", framed(sid, b"\x02\x00"))
        err = exc.value
        assert isinstance(err, DecodeError) and err.field == "schema_id"
        assert err.schema_id == sid and err.schema_type == kind
        assert f"cannot read schema id {sid} ({kind}): " in str(err) and "\n" not in str(err)
    assert gets(double, sid) == 1  # the negative answer is cached


def test_an_unknown_id_is_an_unknown_schema_error_cached_for_a_while(double):
    t = FakeTime()
    codec = AvroCodec(registry(double, clock=t.clock, sleep=t.sleep))
    for _ in range(3):
        with pytest.raises(UnknownSchemaError) as exc:
            codec.decode("BehaviourEvent", framed(777, b"\x00"))
        assert exc.value.field == "schema_id"
    assert gets(double, 777) == 1
    t.now += SchemaRegistry.NOT_FOUND_TTL_S + 1
    sid = double.add({"schema": V2})  # registered meanwhile: the next id (1) ...
    double.schemas[777] = double.schemas.pop(sid)  # ... now under 777
    assert codec.decode("BehaviourEvent", framed(777, AvroCodec().encode("BehaviourEvent", EVENT)[5:])) == EVENT


def test_an_id_of_another_record_is_an_unknown_schema_error(double):
    sid = double.add({"schema": json.dumps(cat.raw(cat.writer_id("ContactProfile")))})
    with pytest.raises(UnknownSchemaError, match="is a ContactProfile, expected a BehaviourEvent"):
        AvroCodec(registry(double)).decode("BehaviourEvent", framed(sid, b"\x00"))


ANSWERS = st.one_of(
    st.builds(lambda s, t: {"schema": s, **({"schemaType": t} if t else {})},
              st.one_of(st.text(max_size=80), st.just(V2), st.just(JSON_SCHEMA),
                        st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                                     lambda kids: st.lists(kids, max_size=3)
                                     | st.dictionaries(st.sampled_from(["type", "name", "fields", "items",
                                                                        "values", "symbols"]), kids, max_size=4),
                                     max_leaves=12).map(json.dumps)),
              st.sampled_from([None, "AVRO", "JSON", "PROTOBUF", "avro", ""])),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
    st.binary(max_size=40),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=ANSWERS, body=st.binary(max_size=30))
def test_whatever_a_registry_answers_only_decode_or_registry_errors_escape(double, answer, body):
    double.answer_with(lambda asked: Answer(200, answer) if asked.method == "GET" else None)
    codec = AvroCodec(registry(double, retry_s=0))
    try:
        codec.decode("BehaviourEvent", framed(5, body))
    except (DecodeError, RegistryError):
        pass


# -- a registry that cannot be used: not the record's fault ------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_with_backoff_then_registry_unavailable_not_a_decode_error(double, status):
    t = FakeTime()
    double.answer_with(lambda asked: Answer(status, {"error_code": 50001, "message": "storage down"}))
    codec = AvroCodec(registry(double, retry_s=3.0, clock=t.clock, sleep=t.sleep))
    with pytest.raises(RegistryUnavailable) as exc:
        codec.decode("BehaviourEvent", framed(9, b"\x00"))
    assert not isinstance(exc.value, DecodeError)
    assert exc.value.field == "schema_id" and f"HTTP {status}" in str(exc.value) and "\n" not in str(exc.value)
    assert gets(double, 9) == len(t.slept) + 1 >= 4
    assert t.slept == sorted(t.slept) and sum(t.slept) == pytest.approx(3.0)


def test_a_registry_that_comes_back_within_the_budget_is_not_an_error(double):
    t = FakeTime()
    sid = double.add({"schema": V2})
    calls = iter([Answer(503), Answer(503, b"<html>proxy</html>"), None])
    double.answer_with(lambda asked: next(calls))
    codec = AvroCodec(registry(double, retry_s=5.0, clock=t.clock, sleep=t.sleep))
    assert codec.decode("BehaviourEvent", framed(sid, AvroCodec().encode("BehaviourEvent", EVENT)[5:])) == EVENT
    assert gets(double, sid) == 3


def test_a_registry_that_does_not_answer_in_time_is_unavailable(double):
    double.answer_with(lambda asked: Answer(200, {"schema": V2}, delay_s=1.5))
    reg = registry(double, retry_s=0.6, timeout=0.5)
    with pytest.raises(RegistryUnavailable, match="timed out|TimeoutError"):
        AvroCodec(reg).decode("BehaviourEvent", framed(3, b"\x00"))


def test_no_registry_listening_is_unavailable_for_encode_too():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    codec = AvroCodec(SchemaRegistry(f"http://127.0.0.1:{port}", retry_s=0.3))
    with pytest.raises(RegistryUnavailable, match="registering BehaviourEvent under subject 'e-value'"):
        codec.encode("BehaviourEvent", EVENT, topic="e")
    with pytest.raises(RegistryUnavailable, match="Connection ?refused|ConnectionRefused"):
        codec.decode("BehaviourEvent", framed(1, b"\x00"))


@pytest.mark.parametrize("answer,hint", [
    (Answer(404, b"<html>Not Found</html>"), "ccompat/v7"),  # a web server, not the registry's API
    (Answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"}), "ccompat/v7"),
    (Answer(401, {"error_code": 401, "message": "Unauthorized"}), "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"),
    (Answer(403), "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"),
])
def test_a_refusal_that_is_not_about_the_record_is_registry_refused(double, answer, hint):
    double.answer_with(lambda asked: answer)
    with pytest.raises(RegistryRefused, match=hint) as exc:
        AvroCodec(registry(double)).decode("BehaviourEvent", framed(4, b"\x00"))
    assert not isinstance(exc.value, DecodeError)


def test_a_registration_refused_as_incompatible_names_the_subject(double):
    double.answer_with(lambda asked: Answer(409, {"error_code": 409, "message": "Schema being registered is "
                                                  "incompatible with an earlier schema"}) if asked.method == "POST" else None)
    with pytest.raises(RegistryRefused, match=r"'lead-dlq-value'.*HTTP 409 \(Schema being registered is incompatible"):
        AvroCodec(registry(double)).encode("DeadLetter", {}, topic="lead-dlq")


# -- credentials -------------------------------------------------------------------------------


def test_basic_auth_is_sent_and_never_shown(double):
    password = "s3cr3t-pw"
    double.answer_with(lambda asked: Answer(401, {"error_code": 40101, "message": "Unauthorized"}))
    reg = registry(double, user_info=Secret(f"leadpulse:{password}"))
    with pytest.raises(RegistryRefused) as exc:
        AvroCodec(reg).decode("BehaviourEvent", framed(4, b"\x00"))
    assert double.requests[0].authorization == "Basic " + base64.b64encode(f"leadpulse:{password}".encode()).decode()
    for text in (str(exc.value), repr(exc.value), repr(reg), str(vars(reg).get("url"))):
        assert password not in text and base64.b64encode(password.encode()).decode() not in text


def test_no_authorization_header_without_credentials(double):
    AvroCodec(registry(double)).encode("BehaviourEvent", EVENT, topic="t")
    assert double.requests[0].authorization is None


# -- the worker's start: its outputs registered, or one line ----------------------------------


def _settings(url: str, **kw):
    import dataclasses

    from streams.settings import Settings

    return dataclasses.replace(Settings.from_env(), schema_registry_url=url, lifecycle_topic="lc", scores_topic="sc",
                               dlq_topic="dl", accounts_topic="ac", schema_registry_retry_s=0.2, **kw)


def test_preflight_registers_the_outputs_for_their_topics(double):
    from streams.preflight import check_registry

    check_registry(_settings(double.url, schema_registry_subject_strategy="topic_record"))
    assert set(double.subjects) == {"lc-io.leadpulse.LifecycleChange", "sc-io.leadpulse.ScoreSnapshot",
                                    "dl-io.leadpulse.DeadLetter", "ac-io.leadpulse.AccountChange"}


@pytest.mark.parametrize("answer,words", [
    (Answer(409, {"error_code": 409, "message": "incompatible with an earlier schema"}), "HTTP 409 (incompatible"),
    (Answer(503), "unavailable for registering LifecycleChange under subject 'lc-value': HTTP 503"),
])
def test_preflight_turns_a_registry_problem_into_one_line(double, answer, words):
    from streams.preflight import PreflightError, check_registry

    double.answer_with(lambda asked: answer)
    with pytest.raises(PreflightError) as exc:
        check_registry(_settings(double.url))
    assert words in str(exc.value) and "\n" not in str(exc.value) and not str(exc.value).startswith("field")
