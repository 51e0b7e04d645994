"""What the collector turns HTTP messages into: records for leadpulse's topics, with the identity
contract the scoring side relies on, and the typed error a message that cannot be mapped raises.

Pure: no I/O, no clock (the caller passes the instants), no Kafka.

The identity contract (README, "Collector"; schemas/identity_link.v1.avsc):
* a message with a userId belongs to contact `userId`; a userId starting with `anon:` is refused;
* a message with only an anonymousId belongs to contact `anon:<anonymousId>`
  (`ANONYMOUS_PREFIX + anonymousId`), and every BehaviourEvent carries the raw anonymousId in its
  `anonymous_id` field (also when the userId is known);
* an IdentityLink carries the raw anonymous id (no prefix) and the known contact id.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

#: Contact ids of anonymous visitors: `anon:<anonymousId>`. A contract with the identity merge
#: (issue 13), not a setting: every producer and consumer must agree on it.
ANONYMOUS_PREFIX = "anon:"

MAX_ID_CHARS = 256  # userId, anonymousId, messageId, groupId: longer is a client bug or an attack
MAX_TEXT_CHARS = 8192  # one property value or trait

# Output kinds: which topic a record goes to (the sink maps kinds to topic names from Settings).
EVENTS, PROFILES, IDENTITIES, ACCOUNTS, MERGES, ERASURES, DLQ = (
    "events", "profiles", "identities", "accounts", "merges", "erasures", "dlq")

RECORD_OF_KIND = {
    EVENTS: "BehaviourEvent", PROFILES: "ContactProfile", IDENTITIES: "IdentityLink",
    ACCOUNTS: "AccountMembership", MERGES: "ContactMerge", ERASURES: "EraseRequest", DLQ: "DeadLetter",
}


class MappingError(Exception):
    """A message that cannot become records; `field` names the part at fault (a dotted path into
    the message, e.g. `traits.company_size`), `reason` says why. Subclasses name the class of
    problem and are the `error_class` of the dead letter."""

    def __init__(self, field: str | None, reason: str):
        super().__init__(reason if field is None else f"field {field!r}: {reason}")
        self.field = field
        self.reason = reason

    @property
    def error_class(self) -> str:
        return type(self).__name__


class InvalidMessage(MappingError):
    """The message breaks the tracking spec (missing identity, wrong type, bad timestamp...)."""


class UnmappedEvent(MappingError):
    """A track event whose name the mapping does not know, with `unmapped = "dead_letter"`."""


class MessageTooLarge(MappingError):
    """One message over the per-message limit (Segment: 32 KB)."""


@dataclass(frozen=True, slots=True)
class Output:
    """One record to publish: its kind (topic), Kafka key (the contact id) and Avro record."""

    kind: str
    key: str
    record: dict

    @property
    def record_name(self) -> str:
        return RECORD_OF_KIND[self.kind]


@dataclass(frozen=True, slots=True)
class Mapped:
    """What one message became. `ignored` with no outputs: valid, but nothing for leadpulse
    (an unmapped track event, an integrations object that excludes leadpulse); `note` says why."""

    message_id: str
    outputs: tuple[Output, ...]
    ignored: bool = False
    note: str = ""


# -- small pure helpers shared by the Segment mapping and the webhook adapters -------------------

def text(value: Any, field: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """A string that Avro (UTF-8) can hold: JSON may carry lone surrogates (`"\\ud800"`)."""
    if not isinstance(value, str):
        raise InvalidMessage(field, f"expected a string, got {json_type(value)}")
    if len(value) > max_chars:
        raise InvalidMessage(field, f"{len(value)} characters, at most {max_chars}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage(field, "not valid Unicode (a lone surrogate)") from None
    return value


def identifier(value: Any, field: str) -> str | None:
    """An id as Segment allows it (a string or an integer); None when absent or blank."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidMessage(field, "expected a string or an integer, got a boolean")
    if isinstance(value, int):
        value = str(value)
    value = text(value, field, MAX_ID_CHARS)
    return value if value.strip() else None


def required_id(value: Any, field: str, what: str = "missing") -> str:
    """`identifier`, but absent is an error."""
    ident = identifier(value, field)
    if ident is None:
        raise InvalidMessage(field, what)
    return ident


def flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidMessage(field, "expected true or false")
    return value


def json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def parse_time(value: Any, field: str) -> int:
    """An ISO 8601 date-time (the tracking spec's only time format) as epoch milliseconds, UTC.
    No zone means UTC (Segment's rule). Mautic's `+00:00` offsets and a `Z` suffix both parse."""
    if not isinstance(value, str):
        raise InvalidMessage(field, f"expected an ISO 8601 date-time string, got {json_type(value)}")
    raw = value.strip()
    if raw.endswith(("z", "Z")):
        raw = raw[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidMessage(field, f"not an ISO 8601 date-time: {value[:40]!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        ms = math.floor(dt.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        raise InvalidMessage(field, f"out of range: {value[:40]!r}") from None
    if ms <= 0:
        raise InvalidMessage(field, f"before 1970: {value[:40]!r}")
    return ms


def epoch_ms(value: Any, field: str) -> int:
    """Epoch milliseconds as an integer (HubSpot's occurredAt), positive and in Avro's long."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMessage(field, f"expected epoch milliseconds (an integer), got {json_type(value)}")
    if not 0 < value < 2**62:
        raise InvalidMessage(field, "out of range for epoch milliseconds")
    return value


def property_value(value: Any, field: str) -> str | None:
    """A property as a string (BehaviourEvent properties are `map<string>`): strings as they are,
    numbers and booleans as JSON writes them, objects and arrays as compact JSON; null → absent."""
    if value is None:
        return None
    if isinstance(value, str):
        return text(value, field)
    if isinstance(value, bool):
        return "true" if value else "false"
    return text(json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False), field)


def string_properties(obj: Any, field: str) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InvalidMessage(field, f"expected an object, got {json_type(obj)}")
    out: dict[str, str] = {}
    for k, v in obj.items():
        key = text(k, f"{field}.<key>", MAX_ID_CHARS)
        sv = property_value(v, f"{field}.{key}")
        if sv is not None:
            out[key] = sv
    return out


def dig(obj: Any, path: str) -> Any:
    """`dig(traits, "company.name")`: the value at a dotted path, None when any step is missing."""
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def content_id(obj: Any) -> str:
    """A deterministic id for a message that came without one: the same JSON (keys in any
    order), the same id, so a client retrying the same body does not count twice."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return "h-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def canonical_json(obj: Any) -> bytes:
    """The bytes a dead letter keeps for one message of a batch (ASCII JSON: any string survives)."""
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    except ValueError:  # NaN / Infinity: Python's json reads them, JSON does not have them
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()


def contact_of(user_id: str | None, anonymous_id: str | None, field: str = "userId") -> str:
    """The contact id by the identity contract (module doc)."""
    if user_id is not None:
        if user_id.startswith(ANONYMOUS_PREFIX):
            raise InvalidMessage(field, f"a userId may not start with {ANONYMOUS_PREFIX!r} "
                                        f"(reserved for anonymous visitors)")
        return user_id
    if anonymous_id is not None:
        return ANONYMOUS_PREFIX + anonymous_id
    raise InvalidMessage("userId", "a message needs a userId or an anonymousId")


def domain_of(value: Any) -> str | None:
    """`https://www.Acme.example/about` → `acme.example`; None when there is no host."""
    if not isinstance(value, str) or not value.strip():
        return None
    raw = value.strip().lower()
    if "://" in raw:
        raw = raw.split("://", 1)[1]
    host = raw.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
    if host.startswith("www."):
        host = host[4:]
    host = host.strip(".")
    if not host or "." not in host:
        return None
    try:
        host.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return host[:253]


def dead_letter(source_topic: str, original_key: str | None, original_value: bytes, error_class: str,
                field: str | None, reason: str, failed_at: int) -> dict:
    """A DeadLetter for something received over HTTP: `source_topic` is `http:<path>`, the
    partition and offset are -1 (there are none), the key is the source (write-key name or
    platform), the value the message's JSON."""
    return {
        "source_topic": source_topic, "source_partition": -1, "source_offset": -1,
        "original_key": original_key.encode() if original_key is not None else None,
        "original_value": original_value, "error_class": error_class, "field": field,
        "reason": reason[:2000], "failed_at": failed_at,
    }
