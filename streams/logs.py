"""Worker logs: text for humans (default), or one JSON object per line for log pipelines.

``LEADPULSE_LOG_FORMAT=json`` switches a worker to JSON lines::

    {"ts": "2025-11-26T11:40:02.123Z", "level": "INFO", "logger": "leadpulse.agents",
     "msg": "lifecycle contact=c-1 temperature warm -> hot", "contact_id": "c-1", ...}

``extra=`` fields of a log call become top-level keys (``contact_id``, ``kind``, ...). Exceptions
go to ``exc``. Personal data never reaches a log line: anything that looks like an email address is
masked in the message and in every string field, and extra fields named like personal data
(``email``, ``name``, ``first_name``, ``phone``, ...) are dropped. Log contact ids, never profiles.

Wiring (Faust): pass ``logging_config=logs.logging_config(level)`` to ``faust.App`` when
``logs.json_enabled()``; Faust's worker hands it to ``logging.config.dictConfig`` in place of its
coloured console handler (``faust_settings`` returns exactly that keyword, or nothing).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
from typing import Any

ENV = "LEADPULSE_LOG_FORMAT"

#: Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message", "asctime", "taskName",
}
#: Extra fields that would carry personal data: dropped, whatever their value.
PERSONAL_FIELDS = frozenset({
    "email", "email_address", "name", "first_name", "last_name", "full_name", "phone",
    "phone_number", "address", "ip", "ip_address",
})
EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
MASK = "<email>"


def json_enabled(env: dict[str, str] | None = None) -> bool:
    value = (env if env is not None else os.environ).get(ENV, "text").strip().lower()
    return value == "json"


def scrub(text: str) -> str:
    """Mask anything that looks like an email address."""
    return EMAIL.sub(MASK, text) if "@" in text else text


def _jsonable(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if str(k).lower() not in PERSONAL_FIELDS}
    if isinstance(value, bytes):
        return scrub(value.decode("utf-8", errors="replace"))
    return scrub(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ms), level, logger, msg, then the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad %-format must not lose the line
            msg = f"{record.msg!r} {record.args!r}"
        ts = _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc)
        doc: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": scrub(msg),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_") or key in doc:
                continue
            if key.lower() in PERSONAL_FIELDS:
                continue
            doc[key] = _jsonable(value)
        if record.exc_info:
            doc["exc"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            doc["exc"] = scrub(record.exc_text)
        if record.stack_info:
            doc["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(doc, ensure_ascii=False, default=str)


def logging_config(level: str | int = "INFO") -> dict:
    """A dictConfig: JSON lines on stdout for every logger (Faust, aiokafka, leadpulse)."""
    if isinstance(level, str):
        level = level.upper()
        if level == "WARN":
            level = "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "streams.logs.JsonFormatter"}},
        "handlers": {
            "json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        },
        "root": {"level": level, "handlers": ["json"]},
    }


def faust_settings(level: str | int = "INFO", env: dict[str, str] | None = None) -> dict:
    """Keyword arguments for ``faust.App``: ``{"logging_config": ...}`` in JSON mode, else ``{}``."""
    return {"logging_config": logging_config(level)} if json_enabled(env) else {}


def configure(level: str | int = "INFO") -> None:
    """For processes that are not Faust workers (CLI tools): the same choice, applied directly."""
    import logging.config

    if json_enabled():
        logging.config.dictConfig(logging_config(level))
    else:
        logging.basicConfig(level=level if isinstance(level, int) else level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
