"""Segment tracking-spec messages (track, page, screen, identify, group, alias) → leadpulse records.

Pure: a message (any JSON value), the instant it was received and the mapping give either a
`Mapped` (records, or nothing with a reason) or a `MappingError` naming the field. Nothing else
escapes, whatever the JSON (tests/collector/test_mapping.py checks it with hypothesis).

What Segment's spec says, and what this does with it:
* identity: `userId` and/or `anonymousId` (a string or an integer); one of them is required
  (alias: `userId` and `previousId`). The contact id follows `collector.records.contact_of`.
* `messageId`: the dedup key. Missing, it is derived from the message's content, so the same
  body retried is the same message.
* time: `timestamp` (or `originalTimestamp`) is the client's clock. With a `sentAt` (on the
  message or on the batch) the collector corrects the client's clock skew as Segment does:
  timestamp + (receivedAt - sentAt). Without a timestamp the event happened at receivedAt.
  A result later than receivedAt is taken as receivedAt (a client clock ahead of ours).
* `integrations`: `{"leadpulse": false}`, or `{"All": false}` without `"leadpulse": true`, keeps
  the message away from leadpulse (accepted, ignored).
* `context`: only `context.page` (url, path, title, referrer, search) of page calls and
  `context.traits` of identify calls are read; the rest (ip, user agent...) is never stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from collector.config import MappingConfig
from collector.records import (
    ACCOUNTS, EVENTS, IDENTITIES, MERGES, PROFILES, InvalidMessage, Mapped, MappingError, Output, UnmappedEvent,
    contact_of, content_id, dig, domain_of, identifier, json_type, parse_time, property_value, required_id,
    string_properties, text,
)

TYPES = ("track", "page", "screen", "identify", "group", "alias")
PAGE_FIELDS = ("url", "path", "title", "referrer", "search")
INTEGRATION = "leadpulse"


@dataclass(frozen=True, slots=True)
class Received:
    """How a message arrived: the write key's source name, the collector's clock when the request
    came in (Segment's receivedAt), and the batch's sentAt if it had one (epoch ms)."""

    source: str
    received_at: int
    sent_at: int | None = None


def message_id_of(msg: Any) -> str:
    """The message's messageId, or one derived from its content. Never raises."""
    if isinstance(msg, dict):
        mid = msg.get("messageId")
        try:
            value = identifier(mid, "messageId")
        except MappingError:
            value = None
        if value is not None:
            return value
    try:
        return content_id(msg)
    except (TypeError, ValueError):
        return content_id(repr(msg))


def event_time(msg: dict, ctx: Received) -> int:
    """When it happened, on the collector's clock (module doc: Segment's clock-skew correction)."""
    raw = msg.get("timestamp")
    name = "timestamp"
    if raw is None:
        raw, name = msg.get("originalTimestamp"), "originalTimestamp"
    if raw is None:
        return ctx.received_at
    client = parse_time(raw, name)
    sent_at = parse_time(msg["sentAt"], "sentAt") if msg.get("sentAt") is not None else ctx.sent_at
    at = client if sent_at is None else client + (ctx.received_at - sent_at)
    if at <= 0:
        raise InvalidMessage(name, "before 1970 once corrected for the client's clock (sentAt)")
    return min(at, ctx.received_at)


def _excluded(integrations: Any) -> bool:
    if integrations is None:
        return False
    if not isinstance(integrations, dict):
        raise InvalidMessage("integrations", f"expected an object, got {json_type(integrations)}")
    flags = {str(k).lower(): v for k, v in integrations.items()}
    own = flags.get(INTEGRATION)
    if own is not None:
        return own is False
    return flags.get("all") is False


def _first(obj: Any, paths: tuple[str, ...]) -> tuple[Any, str | None]:
    """The first path holding a value (an object or array there is not a value: `company` may be
    Segment's company object, whose name is `company.name`)."""
    for path in paths:
        value = dig(obj, path)
        if value is not None and value != "" and not isinstance(value, (dict, list)):
            return value, path
    return None, None


def size_value(value: Any, field: str) -> int:
    """An employee count: an integer, or a string starting with one ("250", "51-200" → 51,
    "1,000" → 1000). Avro int: at most 2^31 - 1."""
    if isinstance(value, bool):
        raise InvalidMessage(field, "expected a number of employees, got a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        m = re.match(r"\s*(\d[\d,. _]*)", value)
        digits = re.sub(r"[,. _]", "", m.group(1)) if m else ""
        if not digits:
            raise InvalidMessage(field, f"not a number of employees: {value[:40]!r}")
        value = int(digits)
    if not isinstance(value, int):
        raise InvalidMessage(field, f"expected a number of employees, got {json_type(value)}")
    if not 0 <= value < 2**31:
        raise InvalidMessage(field, f"{value} employees is out of range")
    return value


def _optional_text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = property_value(value, field)
    out = text(value, field)
    return out if out.strip() else None


def _found(obj: Any, paths_by_field: dict[str, tuple[str, ...]], field: str) -> dict[str, tuple[Any, str]]:
    """{profile or account field: (value, where)} from the first present path of each field."""
    found = {}
    for name, paths in paths_by_field.items():
        value, path = _first(obj, paths)
        if value is not None:
            found[name] = (value, f"{field}.{path}")
    return found


def coerce_profile(found: dict[str, tuple[Any, str]], cfg: MappingConfig) -> dict[str, Any]:
    """ContactProfile fields from raw values (`_found`): sizes as integers, countries as ISO codes
    (an unknown country name is left out), an e-mail that is not one refused."""
    out: dict[str, Any] = {}
    for name, (value, where) in found.items():
        if name == "company_size":
            out[name] = size_value(value, where)
        elif name == "country":
            out[name] = cfg.country_code(_optional_text(value, where))
        elif name == "email":
            email = _optional_text(value, where)
            if email is not None and ("@" not in email or email.startswith("@") or email.endswith("@")):
                raise InvalidMessage(where, "not an e-mail address")
            out[name] = email
        else:
            out[name] = _optional_text(value, where)
    return {k: v for k, v in out.items() if v is not None}


def coerce_account(found: dict[str, tuple[Any, str]], cfg: MappingConfig) -> dict[str, Any]:
    """AccountMembership account_* fields from raw values (`_found`)."""
    out: dict[str, Any] = {}
    for name, (value, where) in found.items():
        if name == "size":
            out["account_size"] = size_value(value, where)
        elif name == "domain":
            out["account_domain"] = domain_of(_optional_text(value, where))
        elif name == "country":
            out["account_country"] = cfg.country_code(_optional_text(value, where))
        else:
            out[f"account_{name}"] = _optional_text(value, where)
    return out


def membership(membership_id: str, contact_id: str, account_id: str, account: dict, at: int, source: str,
               active: bool = True) -> Output:
    record = {"membership_id": membership_id, "contact_id": contact_id, "account_id": account_id,
              "account_domain": None, "account_name": None, "account_industry": None, "account_size": None,
              "account_country": None, "active": active, "updated_at": at, "source": source}
    record.update(account)
    return Output(ACCOUNTS, contact_id, record)


def profile(contact_id: str, fields: dict, at: int) -> Output:
    record = {"contact_id": contact_id, "email": None, "job_title": None, "company": None, "company_size": None,
              "industry": None, "country": None, "updated_at": at}
    record.update(fields)
    return Output(PROFILES, contact_id, record)


def behaviour(event_id: str, contact_id: str, anonymous_id: str | None, event_type: str, at: int, source: str,
              properties: dict[str, str]) -> Output:
    return Output(EVENTS, contact_id, {
        "event_id": event_id, "contact_id": contact_id, "anonymous_id": anonymous_id, "event_type": event_type,
        "occurred_at": at, "source": source, "properties": properties})


def link(link_id: str, anonymous_id: str, contact_id: str, at: int, source: str) -> Output:
    return Output(IDENTITIES, contact_id, {"link_id": link_id, "anonymous_id": anonymous_id,
                                           "contact_id": contact_id, "linked_at": at, "source": source})


def merge(merge_id: str, winner: str, loser: str, at: int, source: str) -> Output:
    return Output(MERGES, winner, {"merge_id": merge_id, "winner": winner, "loser": loser, "merged_at": at,
                                   "source": source})


def map_message(msg: Any, ctx: Received, cfg: MappingConfig, endpoint_type: str | None = None) -> Mapped:
    """One Segment message → what leadpulse makes of it (module doc). `endpoint_type` is the call
    a single-message endpoint (`/v1/track`) stands for; the message's `type` may be left out."""
    if not isinstance(msg, dict):
        raise InvalidMessage(None, f"a message is a JSON object, got {json_type(msg)}")
    mtype = msg.get("type", endpoint_type)
    if mtype is None:
        raise InvalidMessage("type", f"missing (one of {', '.join(TYPES)})")
    if not isinstance(mtype, str) or mtype not in TYPES:
        raise InvalidMessage("type", f"{str(mtype)[:40]!r} is not one of {', '.join(TYPES)}")
    if endpoint_type is not None and mtype != endpoint_type:
        raise InvalidMessage("type", f"a {mtype!r} message sent to the {endpoint_type} endpoint")
    mid = message_id_of(msg)
    if _excluded(msg.get("integrations")):
        return Mapped(mid, (), ignored=True, note="integrations exclude leadpulse")
    at = event_time(msg, ctx)
    base = f"{ctx.source}:{mid}"
    if mtype == "alias":
        return _alias(msg, mid, base, at, ctx, cfg)
    user_id = identifier(msg.get("userId"), "userId")
    anonymous_id = identifier(msg.get("anonymousId"), "anonymousId")
    contact_id = contact_of(user_id, anonymous_id)
    if mtype == "track":
        return _track(msg, mid, base, contact_id, anonymous_id, at, ctx, cfg)
    if mtype in ("page", "screen"):
        return _page(msg, mtype, mid, base, contact_id, anonymous_id, at, ctx, cfg)
    if mtype == "identify":
        traits = msg.get("traits")
        if traits is None:
            traits = dig(msg, "context.traits")
        field = "traits" if msg.get("traits") is not None else "context.traits"
        if traits is not None and not isinstance(traits, dict):
            raise InvalidMessage(field, f"expected an object, got {json_type(traits)}")
        fields = coerce_profile(_found(traits or {}, cfg.identify, field), cfg)
        outputs = []
        if fields:
            outputs.append(profile(contact_id, fields, at))
        if user_id is not None and anonymous_id is not None:
            outputs.append(link(f"{base}:link", anonymous_id, user_id, at, ctx.source))
        note = "" if outputs else "no profile trait and no anonymousId to link"
        return Mapped(mid, tuple(outputs), ignored=not outputs, note=note)
    # group
    group_id = required_id(msg.get("groupId"), "groupId", "a group call needs a groupId")
    traits = msg.get("traits")
    if traits is not None and not isinstance(traits, dict):
        raise InvalidMessage("traits", f"expected an object, got {json_type(traits)}")
    account = coerce_account(_found(traits or {}, cfg.group, "traits"), cfg)
    return Mapped(mid, (membership(f"{base}:membership", contact_id, group_id, account, at, ctx.source),))


def _track(msg, mid, base, contact_id, anonymous_id, at, ctx, cfg) -> Mapped:
    name = msg.get("event")
    if name is None:
        raise InvalidMessage("event", "a track call needs an event name")
    name = text(name, "event", 512)
    if not name.strip():
        raise InvalidMessage("event", "empty event name")
    props = string_properties(msg.get("properties"), "properties")
    event_type = cfg.event_type_of(name)
    if event_type is None:
        if cfg.unmapped_track == "dead_letter":
            raise UnmappedEvent("event", f"no mapping for track event {name[:80]!r} (add it to [track])")
        return Mapped(mid, (), ignored=True, note=f"no mapping for track event {name[:80]!r}")
    props.setdefault("event", name)
    return Mapped(mid, (behaviour(base, contact_id, anonymous_id, event_type, at, ctx.source, props),))


def _page(msg, mtype, mid, base, contact_id, anonymous_id, at, ctx, cfg) -> Mapped:
    props = string_properties(msg.get("properties"), "properties")
    context_page = dig(msg, "context.page")
    if context_page is not None and not isinstance(context_page, dict):
        raise InvalidMessage("context.page", f"expected an object, got {json_type(context_page)}")
    for key in PAGE_FIELDS:
        if key not in props and context_page and context_page.get(key) is not None:
            value = property_value(context_page[key], f"context.page.{key}")
            if value is not None:
                props[key] = value
    for key in ("name", "category"):
        if msg.get(key) is not None and key not in props:
            props[key] = text(msg[key], key, 512)
    event_type = cfg.page_event_type if mtype == "page" else cfg.screen_event_type
    return Mapped(mid, (behaviour(base, contact_id, anonymous_id, event_type, at, ctx.source, props),))


def _alias(msg, mid, base, at, ctx, cfg) -> Mapped:
    user_id = required_id(msg.get("userId"), "userId", "an alias call needs a userId")
    previous = required_id(msg.get("previousId"), "previousId", "an alias call needs a previousId")
    contact_id = contact_of(user_id, None)
    if previous == user_id:
        return Mapped(mid, (), ignored=True, note="previousId is the userId")
    if cfg.alias_as == "contact_merge":
        loser = contact_of(previous, None, "previousId")
        return Mapped(mid, (merge(f"{base}:merge", contact_id, loser, at, ctx.source),))
    return Mapped(mid, (link(f"{base}:link", previous, contact_id, at, ctx.source),))


# -- a whole request --------------------------------------------------------------------------------

class InvalidRequest(MappingError):
    """The request itself is unusable (not an object, no batch array...): HTTP 400."""


@dataclass(frozen=True, slots=True)
class Result:
    """One message of a request: its position, messageId, raw JSON (for a dead letter) and what it
    became (`Mapped`) or why not (`MappingError`)."""

    index: int
    message_id: str
    raw: bytes
    outcome: Mapped | MappingError


def messages_of(body: Any, endpoint_type: str | None) -> tuple[list, Any]:
    """The messages of a request body and the batch's sentAt (unparsed). A single-call endpoint
    (`endpoint_type` set) carries one message; /v1/batch an object with a `batch` array, whose
    `context` and `integrations` apply to the messages without their own."""
    if not isinstance(body, dict):
        raise InvalidRequest(None, f"the body must be a JSON object, got {json_type(body)}")
    if endpoint_type is not None:
        return [body], body.get("sentAt")
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise InvalidRequest("batch", "a batch request needs a `batch` array of messages")
    if not batch:
        raise InvalidRequest("batch", "empty batch")
    shared = {k: body[k] for k in ("context", "integrations") if body.get(k) is not None}
    if shared:
        batch = [({**shared, **m} if isinstance(m, dict) else m) for m in batch]
    return batch, body.get("sentAt")


def map_request(body: Any, endpoint_type: str | None, source: str, received_at: int, cfg: MappingConfig,
                max_message_bytes: int) -> list[Result]:
    """Every message of a request, mapped or refused one by one (InvalidRequest: the whole request)."""
    from collector.records import MessageTooLarge, canonical_json

    messages, raw_sent_at = messages_of(body, endpoint_type)
    sent_at = None
    if raw_sent_at is not None:
        try:
            sent_at = parse_time(raw_sent_at, "sentAt")
        except MappingError as exc:
            if endpoint_type is None:  # a batch's sentAt concerns every message
                raise InvalidRequest("sentAt", exc.reason) from None
    ctx = Received(source, received_at, sent_at)
    results = []
    for i, msg in enumerate(messages):
        raw = canonical_json(msg)
        mid = message_id_of(msg)
        try:
            if len(raw) > max_message_bytes:
                raise MessageTooLarge(None, f"{len(raw)} bytes, at most {max_message_bytes} per message")
            outcome: Mapped | MappingError = map_message(msg, ctx, cfg, endpoint_type)
        except MappingError as exc:
            outcome = exc
        results.append(Result(i, mid, raw, outcome))
    return results
