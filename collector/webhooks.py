"""HubSpot and Mautic webhook payloads → the same records as the Segment mapping, and the two
platforms' request signatures. Pure: payloads in, `Result`s out; the HTTP shell checks the
signature (with these functions) before anything is parsed.

HubSpot (Webhooks API, app subscriptions): the body is a JSON array of events
`{eventId, subscriptionId, portalId, appId, occurredAt, subscriptionType, attemptNumber, objectId,
 propertyName, propertyValue, changeSource, ...}`. Signed with `X-HubSpot-Signature-v3`:
base64(HMAC-SHA256(app client secret, method + URI + body + X-HubSpot-Request-Timestamp)), the
URI with the percent-encodings HubSpot lists decoded; a timestamp older than 5 minutes is refused.

Mautic: the body is `{"<event type>": [payload, ...], ...}` (several types and payloads when
Mautic queues). Signed with `Webhook-Signature`: base64(HMAC-SHA256(webhook secret, raw body)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Callable

from collector.config import ACCOUNT_FIELDS, PROFILE_FIELDS, MappingConfig
from collector.mapping import (
    InvalidRequest, Result, behaviour, coerce_account, coerce_profile, membership, merge, profile,
)
from collector.records import (
    ERASURES, InvalidMessage, Mapped, MappingError, Output, canonical_json, content_id, dig, epoch_ms, flag,
    identifier, json_type, parse_time, property_value, required_id, text,
)

HUBSPOT_MAX_AGE_MS = 5 * 60 * 1000
HUBSPOT = "hubspot"
MAUTIC = "mautic"

# HubSpot: "decode any URL-encoded characters listed in the following table in the requestUri".
_HUBSPOT_DECODE = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
                   "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


class SignatureError(Exception):
    """A webhook that is not provably from the platform: HTTP 401, nothing parsed or stored."""


def _hmac_b64(secret: str, data: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), data, hashlib.sha256).digest()).decode()


def hubspot_uri(uri: str) -> str:
    out, i = [], 0
    while i < len(uri):
        code = uri[i:i + 3].upper()
        if uri[i] == "%" and code in _HUBSPOT_DECODE:
            out.append(_HUBSPOT_DECODE[code])
            i += 3
        else:
            out.append(uri[i])
            i += 1
    return "".join(out)


def hubspot_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """What HubSpot puts in X-HubSpot-Signature-v3 for this request."""
    return _hmac_b64(secret, method.upper().encode() + hubspot_uri(uri).encode() + body + timestamp.encode())


def verify_hubspot(secret: str, method: str, uri: str, body: bytes, timestamp: str | None, signature: str | None,
                   now_ms: int) -> None:
    if not signature or not timestamp:
        raise SignatureError("missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp")
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureError("X-HubSpot-Request-Timestamp is not epoch milliseconds") from None
    if abs(now_ms - ts) > HUBSPOT_MAX_AGE_MS:
        raise SignatureError("X-HubSpot-Request-Timestamp is more than 5 minutes away (a replay, or a clock off)")
    expected = hubspot_signature(secret, method, uri, body, timestamp)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise SignatureError("X-HubSpot-Signature-v3 does not match (wrong client secret, or the public URL "
                             "differs: set LEADPULSE_COLLECTOR_PUBLIC_URL)")


def mautic_signature(secret: str, body: bytes) -> str:
    """What Mautic puts in Webhook-Signature for this body."""
    return _hmac_b64(secret, body)


def verify_mautic(secret: str, body: bytes, signature: str | None) -> None:
    if not signature:
        raise SignatureError("missing Webhook-Signature")
    if not hmac.compare_digest(mautic_signature(secret, body).encode(), signature.strip().encode()):
        raise SignatureError("Webhook-Signature does not match (wrong webhook secret)")


def _each(items: list, ids: Callable[[Any], str], one: Callable[[Any, str], Mapped]) -> list[Result]:
    results = []
    for i, item in enumerate(items):
        mid = ids(item)
        try:
            outcome: Mapped | MappingError = one(item, mid)
        except MappingError as exc:
            outcome = exc
        results.append(Result(i, mid, canonical_json(item), outcome))
    return results


# == HubSpot ======================================================================================

CONTACT_TYPE = "0-1"  # HubSpot's objectTypeId of contacts (generic `object.*` subscriptions)


def _hubspot_id(event: Any) -> str:
    if isinstance(event, dict):
        try:
            portal, eid = identifier(event.get("portalId"), "portalId"), identifier(event.get("eventId"), "eventId")
        except MappingError:
            portal = eid = None
        if portal is not None and eid is not None:
            return f"{portal}:{eid}"
    return content_id(event)


def map_hubspot(body: Any, cfg: MappingConfig) -> list[Result]:
    """A HubSpot webhook body (a JSON array of events) → one Result per event."""
    if not isinstance(body, list):
        raise InvalidRequest(None, f"a HubSpot webhook body is a JSON array of events, got {json_type(body)}")
    if not body:
        raise InvalidRequest(None, "no events")
    return _each(body, _hubspot_id, lambda ev, mid: _hubspot_event(ev, mid, cfg))


def _hubspot_event(ev: Any, mid: str, cfg: MappingConfig) -> Mapped:
    if not isinstance(ev, dict):
        raise InvalidMessage(None, f"an event is a JSON object, got {json_type(ev)}")
    hs = cfg.hubspot
    kind = ev.get("subscriptionType")
    if not isinstance(kind, str) or not kind:
        raise InvalidMessage("subscriptionType", "missing")
    if kind.startswith("object."):  # generic subscriptions: only contacts concern leadpulse
        if str(ev.get("objectTypeId")) != CONTACT_TYPE:
            return Mapped(mid, (), ignored=True, note=f"{kind} of object type {ev.get('objectTypeId')!r}")
        kind = "contact." + kind.split(".", 1)[1]
    at = epoch_ms(ev.get("occurredAt"), "occurredAt")
    base = f"{HUBSPOT}:{mid}"

    def contact(field: str = "objectId") -> str:
        return hs.contact_id_prefix + required_id(ev.get(field), field)

    if kind == "contact.propertyChange":
        name = text(ev.get("propertyName"), "propertyName", 256)
        value = property_value(ev.get("propertyValue"), "propertyValue") or ""
        for rule in hs.property_events:
            if rule.property == name and (rule.match is None or rule.match.search(value)):
                props = {"property": name, "value": value}
                if isinstance(ev.get("changeSource"), str):
                    props["change_source"] = text(ev["changeSource"], "changeSource", 256)
                return Mapped(mid, (behaviour(base, contact(), None, rule.event_type, at, HUBSPOT, props),))
        return Mapped(mid, (), ignored=True, note=f"no mapping for property {name[:80]!r}")
    if kind == "contact.merge":
        winner = contact("primaryObjectId")
        merged = ev.get("mergedObjectIds")
        if not isinstance(merged, list) or not merged:
            raise InvalidMessage("mergedObjectIds", "expected a non-empty array of contact ids")
        losers = []
        for i, oid in enumerate(merged):
            loser = identifier(oid, f"mergedObjectIds[{i}]")
            if loser is not None and hs.contact_id_prefix + loser != winner:
                losers.append(hs.contact_id_prefix + loser)
        outs = tuple(merge(f"{base}:{loser}", winner, loser, at, HUBSPOT) for loser in dict.fromkeys(losers))
        return Mapped(mid, outs, ignored=not outs, note="" if outs else "nothing merged into another contact")
    if kind == "contact.privacyDeletion" or (kind == "contact.deletion" and hs.erase_on_delete):
        cid = contact()
        return Mapped(mid, (Output(ERASURES, cid, {"request_id": base, "contact_id": cid, "requested_at": at}),))
    if kind == "contact.associationChange":
        if ev.get("associationType") != "CONTACT_TO_COMPANY":
            return Mapped(mid, (), ignored=True, note=f"association {str(ev.get('associationType'))[:40]!r}")
        company = hs.company_id_prefix + required_id(ev.get("toObjectId"), "toObjectId")
        removed = flag(ev.get("associationRemoved", False), "associationRemoved")
        return Mapped(mid, (membership(f"{base}:membership", contact("fromObjectId"), company, {}, at, HUBSPOT,
                                       active=not removed),))
    return Mapped(mid, (), ignored=True, note=f"{kind[:60]} is not mapped")


# == Mautic =======================================================================================

def mautic_field(entity: Any, alias: str) -> tuple[Any, str] | None:
    """A contact's or company's field value by alias: Mautic groups fields (`fields.core.email.value`);
    a company also has some at the top level (`name`, `website`...)."""
    groups = entity.get("fields") if isinstance(entity, dict) else None
    if isinstance(groups, dict):
        for group, fields_ in groups.items():
            if isinstance(fields_, dict) and isinstance(fields_.get(alias), dict):
                value = fields_[alias].get("value")
                if value is not None and value != "":
                    return value, f"fields.{group}.{alias}.value"
    if isinstance(entity, dict) and entity.get(alias) not in (None, "") and not isinstance(entity[alias], (dict, list)):
        return entity[alias], alias
    return None


def _mautic_found(entity: Any, aliases: dict[str, str], names: tuple[str, ...], field: str) -> dict:
    found = {}
    for name in names:
        alias = aliases.get(name)
        hit = mautic_field(entity, alias) if alias else None
        if hit is not None:
            found[name] = (hit[0], f"{field}.{hit[1]}")
    return found


def _mautic_contact(entity: Any, field: str, cfg: MappingConfig) -> str:
    cid = required_id(entity.get("id") if isinstance(entity, dict) else None, f"{field}.id", "missing contact id")
    return cfg.mautic.contact_id_prefix + cid


def _mautic_time(payload: dict, *candidates: str) -> int:
    for path in candidates:
        value = dig(payload, path)
        if value is not None:
            return parse_time(value, path)
    raise InvalidMessage("timestamp", "missing")


_MAUTIC_IDS = {  # event type → where its payload's unique id is
    "mautic.form_on_submit": "submission.id",
    "mautic.page_on_hit": "hit.id",
    "mautic.email_on_open": "idHash",
}


def _mautic_id(item: Any) -> str:
    etype, payload = item
    path = _MAUTIC_IDS.get(etype)
    value = dig(payload, path) if path else None
    if etype == "mautic.email_on_open" and value is None:
        value = dig(payload, "stat.trackingHash") or dig(payload, "stat.id")
    try:
        ident = identifier(value, path or "id") if value is not None else None
    except MappingError:
        ident = None
    return f"{etype.removeprefix('mautic.')}:{ident}" if ident is not None else content_id([etype, payload])


def map_mautic(body: Any, cfg: MappingConfig) -> list[Result]:
    """A Mautic webhook body (`{event type: [payloads]}`) → one Result per payload."""
    if not isinstance(body, dict):
        raise InvalidRequest(None, f"a Mautic webhook body is a JSON object of event types, got {json_type(body)}")
    items = []
    for etype, payloads in body.items():
        if not isinstance(payloads, list):
            payloads = [payloads]
        items.extend((etype, p) for p in payloads)
    if not items:
        raise InvalidRequest(None, "no events")
    return _each(items, _mautic_id, lambda item, mid: _mautic_event(item[0], item[1], mid, cfg))


def _mautic_event(etype: str, p: Any, mid: str, cfg: MappingConfig) -> Mapped:
    if not isinstance(p, dict):
        raise InvalidMessage(None, f"a {etype} payload is a JSON object, got {json_type(p)}")
    mt = cfg.mautic
    base = f"{MAUTIC}:{mid}"
    if etype in ("mautic.lead_post_save_new", "mautic.lead_post_save_update"):
        c = p.get("contact", p.get("lead"))
        cid = _mautic_contact(c, "contact", cfg)
        fields_ = coerce_profile(_mautic_found(c, mt.profile_fields, PROFILE_FIELDS, "contact"), cfg)
        if not fields_:
            return Mapped(mid, (), ignored=True, note="no profile field")
        at = _mautic_time(p, "contact.dateModified", "contact.dateIdentified", "timestamp")
        return Mapped(mid, (profile(cid, fields_, at),))
    if etype == "mautic.form_on_submit":
        s = p.get("submission")
        if not isinstance(s, dict):
            raise InvalidMessage("submission", "missing")
        cid = _mautic_contact(s.get("lead"), "submission.lead", cfg)
        alias = dig(s, "form.alias")
        alias = text(alias, "submission.form.alias", 256) if alias is not None else ""
        props = {"form": alias}
        for key, path in (("form_name", "form.name"), ("url", "referer")):
            value = property_value(dig(s, path), f"submission.{path}")
            if value:
                props[key] = value
        at = _mautic_time(p, "submission.dateSubmitted", "timestamp")
        etype_ = mt.forms.get(alias, mt.form_event_type)
        return Mapped(mid, (behaviour(base, cid, None, etype_, at, MAUTIC, props),))
    if etype == "mautic.page_on_hit":
        h = p.get("hit")
        if not isinstance(h, dict):
            raise InvalidMessage("hit", "missing")
        cid = _mautic_contact(h.get("lead"), "hit.lead", cfg)
        props = {}
        for key, path in (("url", "url"), ("title", "urlTitle"), ("referrer", "referer"), ("source", "source")):
            value = property_value(h.get(path), f"hit.{path}")
            if value:
                props[key] = value
        if "url" not in props:
            raise InvalidMessage("hit.url", "missing")
        at = _mautic_time(p, "hit.dateHit", "timestamp")
        return Mapped(mid, (behaviour(base, cid, None, cfg.page_event_type, at, MAUTIC, props),))
    if etype == "mautic.email_on_open":
        c = p.get("contact") if isinstance(p.get("contact"), dict) else dig(p, "stat.lead")
        cid = _mautic_contact(c, "contact", cfg)
        props = {}
        for key, path in (("email", "email.name"), ("subject", "subject")):
            value = property_value(dig(p, path), path)
            if value:
                props[key] = value
        at = _mautic_time(p, "timestamp", "stat.dateRead")
        return Mapped(mid, (behaviour(base, cid, None, "email_open", at, MAUTIC, props),))
    if etype == "mautic.lead_channel_subscription_changed":
        cid = _mautic_contact(p.get("contact"), "contact", cfg)
        status = p.get("new_status")
        if status is not None and not isinstance(status, str):
            raise InvalidMessage("new_status", f"a string, got {json_type(status)}")
        event_type = {"unsubscribed": "unsubscribe", "bounced": "email_bounce"}.get(status)
        if event_type is None:
            return Mapped(mid, (), ignored=True, note=f"channel status {str(status)[:40]!r}")
        channel = property_value(p.get("channel"), "channel") or ""
        props = {"channel": channel, "status": status}
        if status == "bounced":
            props["bounce"] = "hard"  # Mautic marks a contact bounced on hard bounces (DNC reason 2)
        return Mapped(mid, (behaviour(base, cid, None, event_type, _mautic_time(p, "timestamp"), MAUTIC, props),))
    if etype == "mautic.lead_company_change":
        cid = _mautic_contact(p.get("contact"), "contact", cfg)
        company = p.get("company")
        if not isinstance(company, dict):
            raise InvalidMessage("company", "missing")
        company_id = required_id(company.get("id"), "company.id")
        added = flag(p.get("added", True), "added")
        account = coerce_account(_mautic_found(company, mt.company_fields, ACCOUNT_FIELDS, "company"), cfg)
        return Mapped(mid, (membership(f"{base}:membership", cid, mt.company_id_prefix + company_id, account,
                                       _mautic_time(p, "timestamp"), MAUTIC, active=added),))
    if etype == "mautic.lead_post_delete" and mt.erase_on_delete:
        contact_id = mt.contact_id_prefix + required_id(p.get("id"), "id", "missing contact id")
        return Mapped(mid, (Output(ERASURES, contact_id, {"request_id": base, "contact_id": contact_id,
                                                          "requested_at": _mautic_time(p, "timestamp")}),))
    return Mapped(mid, (), ignored=True, note=f"{str(etype)[:60]} is not mapped")
