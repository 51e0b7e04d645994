"""streams.logs: one JSON object per line, extra fields on top, no personal data."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from streams import logs


@pytest.fixture
def capture():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("leadpulse.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_one_json_object_per_line_with_extra_fields(capture):
    log, lines = capture
    log.info("lifecycle contact=%s %s %s -> %s", "c-1", "temperature", "warm", "hot",
             extra={"contact_id": "c-1", "kind": "temperature", "from_value": "warm", "to_value": "hot"})
    log.warning("two\nlines")
    first, second = lines()
    assert first["level"] == "INFO" and first["logger"] == "leadpulse.test.logs"
    assert first["msg"] == "lifecycle contact=c-1 temperature warm -> hot"
    assert (first["contact_id"], first["kind"], first["from_value"], first["to_value"]) == ("c-1", "temperature", "warm", "hot")
    assert first["ts"].endswith("Z") and len(first["ts"]) == len("2025-01-01T00:00:00.000Z")
    assert second["msg"] == "two\nlines" and second["level"] == "WARNING"
    assert not {"args", "msecs", "pathname", "process"} & first.keys()


def test_no_personal_data(capture):
    log, lines = capture
    log.info("profile of %s", "Alice.Martin@acme-robotics.com",
             extra={"email": "alice@acme.com", "first_name": "Alice", "contact_id": "bob@globex.io",
                    "detail": {"email": "x@y.org", "note": "mail carol@initech.co.uk now"}})
    (line,) = lines()
    text = json.dumps(line)
    assert "@" not in text.replace("<email>", ""), text
    assert "Alice" not in text and "email" not in line and "first_name" not in line
    assert line["msg"] == "profile of <email>" and line["contact_id"] == "<email>"
    assert line["detail"] == {"note": "mail <email> now"}


def test_exceptions_are_one_line_too(capture):
    log, lines = capture
    try:
        raise ValueError("bad value for dave@example.com")
    except ValueError:
        log.exception("batch failed")
    (line,) = lines()
    assert line["msg"] == "batch failed" and "ValueError: bad value for <email>" in line["exc"]


def test_switch_and_dictconfig(capsys):
    assert logs.json_enabled({"LEADPULSE_LOG_FORMAT": "json"})
    assert logs.json_enabled({"LEADPULSE_LOG_FORMAT": " JSON "})
    assert not logs.json_enabled({})
    assert not logs.json_enabled({"LEADPULSE_LOG_FORMAT": "text"})
    assert logs.faust_settings("info", {}) == {}
    config = logs.faust_settings("info", {"LEADPULSE_LOG_FORMAT": "json"})["logging_config"]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logging.config.dictConfig(config)
        logging.getLogger("faust.test").info("hello %d", 42)
        out = capsys.readouterr().out.strip().splitlines()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert json.loads(out[-1])["msg"] == "hello 42"
