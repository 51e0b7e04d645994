"""The collector's mapping file (TOML, `collector/default_mapping.toml`, commented for marketing
ops; another one with `LEADPULSE_COLLECTOR_MAPPING`), parsed into one frozen `MappingConfig`.

Strict, like the scoring rules: an unknown key, a wrong type or an unknown event type is a
`MappingConfigError` naming the key (`mapping.track."Demo Requested": unknown event type 'demo'`),
so a typo cannot silently stop a source from scoring. Parsing is pure; `load_mapping` reads a file.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scoring.events import EVENT_TYPES

DEFAULT_MAPPING = Path(__file__).resolve().parent / "default_mapping.toml"

PROFILE_FIELDS = ("email", "job_title", "company", "company_size", "industry", "country")
ACCOUNT_FIELDS = ("name", "domain", "industry", "size", "country")


class MappingConfigError(ValueError):
    """The mapping file cannot be used; the message names the key."""


def normalise_name(name: str) -> str:
    """How track event names are compared: case, spaces, `_` and `-` do not matter."""
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


@dataclass(frozen=True)
class PropertyEvent:
    """A HubSpot contact property change that is a behaviour event."""

    property: str
    event_type: str
    match: re.Pattern | None = None


@dataclass(frozen=True)
class HubSpotMapping:
    contact_id_prefix: str = "hubspot:"
    company_id_prefix: str = "hubspot-company:"
    erase_on_delete: bool = False
    property_events: tuple[PropertyEvent, ...] = ()


@dataclass(frozen=True)
class MauticMapping:
    contact_id_prefix: str = "mautic:"
    company_id_prefix: str = "mautic-company:"
    erase_on_delete: bool = False
    form_event_type: str = "form_submit"
    forms: dict[str, str] = field(default_factory=dict)
    profile_fields: dict[str, str] = field(default_factory=dict)
    company_fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MappingConfig:
    version: str
    track: dict[str, str]  # normalised event name → event type
    unmapped_track: str  # "ignore" | "dead_letter"
    page_event_type: str
    screen_event_type: str
    identify: dict[str, tuple[str, ...]]  # profile field → trait paths
    group: dict[str, tuple[str, ...]]  # account field → trait paths
    alias_as: str  # "identity_link" | "contact_merge"
    hubspot: HubSpotMapping
    mautic: MauticMapping
    countries: dict[str, str]  # lower-case name → ISO code

    def event_type_of(self, name: str) -> str | None:
        """The event type of a track event name, or None if the mapping does not know it."""
        key = normalise_name(name)
        mapped = self.track.get(key)
        if mapped is not None:
            return mapped
        as_type = key.replace(" ", "_")
        return as_type if as_type in EVENT_TYPES else None

    def country_code(self, value: str | None) -> str | None:
        """ISO 3166-1 alpha-2 for a code or a listed name; None for anything else."""
        if value is None:
            return None
        raw = value.strip()
        if len(raw) == 2 and raw.isascii() and raw.isalpha():
            return raw.upper()
        return self.countries.get(raw.lower())


# -- parsing --------------------------------------------------------------------------------------

def _table(doc: dict, key: str, where: str, allowed: set[str]) -> dict:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise MappingConfigError(f"{where}.{key}: expected a table")
    for k in value:
        if k not in allowed:
            raise MappingConfigError(f"{where}.{key}.{k}: unknown key (expected one of {', '.join(sorted(allowed))})")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise MappingConfigError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise MappingConfigError(f"{where}: expected true or false")
    return value


def _event_type(value: Any, where: str) -> str:
    value = _str(value, where)
    if value not in EVENT_TYPES:
        raise MappingConfigError(f"{where}: unknown event type {value!r} (expected one of {', '.join(EVENT_TYPES)})")
    return value


def _choice(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    value = _str(value, where)
    if value not in allowed:
        raise MappingConfigError(f"{where}: {value!r}, expected one of {', '.join(allowed)}")
    return value


def _paths(doc: dict, key: str, fields_: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    table = _table(doc, key, "mapping", set(fields_))
    out: dict[str, tuple[str, ...]] = {}
    for name in fields_:
        raw = table.get(name, [])
        where = f"mapping.{key}.{name}"
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(p, str) and p.strip() for p in raw):
            raise MappingConfigError(f"{where}: expected a list of trait names")
        out[name] = tuple(raw)
    return out


def _str_table(doc: dict, key: str, where: str, allowed: tuple[str, ...] | None = None) -> dict[str, str]:
    table = doc.get(key, {})
    if not isinstance(table, dict):
        raise MappingConfigError(f"{where}.{key}: expected a table")
    out = {}
    for k, v in table.items():
        if allowed is not None and k not in allowed:
            raise MappingConfigError(f"{where}.{key}.{k}: unknown key (expected one of {', '.join(allowed)})")
        out[k] = _str(v, f"{where}.{key}.{k}")
    return out


def parse_mapping(doc: dict) -> MappingConfig:
    top = {"version", "unmapped_track", "track", "page", "screen", "identify", "group", "alias", "hubspot",
           "mautic", "countries"}
    for k in doc:
        if k not in top:
            raise MappingConfigError(f"mapping.{k}: unknown key (expected one of {', '.join(sorted(top))})")
    version = _str(doc.get("version", ""), "mapping.version")
    if not version.strip():
        raise MappingConfigError("mapping.version: required (stamp every change of the file)")

    raw_track = doc.get("track", {})
    if not isinstance(raw_track, dict):
        raise MappingConfigError("mapping.track: expected a table of event name = event type")
    track: dict[str, str] = {}
    for name, etype in raw_track.items():
        where = f"mapping.track.{name!r}"
        key = normalise_name(name)
        if not key:
            raise MappingConfigError(f"{where}: an empty event name")
        if key in track:
            raise MappingConfigError(f"{where}: the same name as another entry (names match without regard to "
                                     f"case, spaces, '_' and '-')")
        track[key] = _event_type(etype, where)

    page = _table(doc, "page", "mapping", {"event_type"})
    screen = _table(doc, "screen", "mapping", {"event_type"})
    alias = _table(doc, "alias", "mapping", {"as"})

    hs = _table(doc, "hubspot", "mapping", {"contact_id_prefix", "company_id_prefix", "erase_on_delete",
                                             "property_events"})
    events = hs.get("property_events", [])
    if not isinstance(events, list):
        raise MappingConfigError("mapping.hubspot.property_events: expected an array of tables ([[...]])")
    property_events = []
    for i, ev in enumerate(events):
        where = f"mapping.hubspot.property_events[{i}]"
        if not isinstance(ev, dict):
            raise MappingConfigError(f"{where}: expected a table")
        for k in ev:
            if k not in ("property", "event_type", "match"):
                raise MappingConfigError(f"{where}.{k}: unknown key (expected property, event_type, match)")
        if "property" not in ev or "event_type" not in ev:
            raise MappingConfigError(f"{where}: needs property and event_type")
        match = None
        if "match" in ev:
            try:
                match = re.compile(_str(ev["match"], f"{where}.match"))
            except re.error as exc:
                raise MappingConfigError(f"{where}.match: not a regular expression ({exc})") from None
        property_events.append(PropertyEvent(_str(ev["property"], f"{where}.property"),
                                             _event_type(ev["event_type"], f"{where}.event_type"), match))

    mt = _table(doc, "mautic", "mapping", {"contact_id_prefix", "company_id_prefix", "erase_on_delete",
                                            "form_event_type", "forms", "profile_fields", "company_fields"})
    forms = {alias_: _event_type(et, f"mapping.mautic.forms.{alias_}")
             for alias_, et in _str_table(mt, "forms", "mapping.mautic").items()}

    countries = {}
    for name, code in _str_table(doc, "countries", "mapping").items():
        if not re.fullmatch(r"[A-Z]{2}", code):
            raise MappingConfigError(f"mapping.countries.{name!r}: {code!r} is not an ISO 3166-1 alpha-2 code")
        countries[name.strip().lower()] = code

    return MappingConfig(
        version=version,
        track=track,
        unmapped_track=_choice(doc.get("unmapped_track", "ignore"), "mapping.unmapped_track",
                               ("ignore", "dead_letter")),
        page_event_type=_event_type(page.get("event_type", "page_view"), "mapping.page.event_type"),
        screen_event_type=_event_type(screen.get("event_type", "page_view"), "mapping.screen.event_type"),
        identify=_paths(doc, "identify", PROFILE_FIELDS),
        group=_paths(doc, "group", ACCOUNT_FIELDS),
        alias_as=_choice(alias.get("as", "identity_link"), "mapping.alias.as", ("identity_link", "contact_merge")),
        hubspot=HubSpotMapping(
            contact_id_prefix=_str(hs.get("contact_id_prefix", "hubspot:"), "mapping.hubspot.contact_id_prefix"),
            company_id_prefix=_str(hs.get("company_id_prefix", "hubspot-company:"),
                                   "mapping.hubspot.company_id_prefix"),
            erase_on_delete=_bool(hs.get("erase_on_delete", False), "mapping.hubspot.erase_on_delete"),
            property_events=tuple(property_events),
        ),
        mautic=MauticMapping(
            contact_id_prefix=_str(mt.get("contact_id_prefix", "mautic:"), "mapping.mautic.contact_id_prefix"),
            company_id_prefix=_str(mt.get("company_id_prefix", "mautic-company:"),
                                   "mapping.mautic.company_id_prefix"),
            erase_on_delete=_bool(mt.get("erase_on_delete", False), "mapping.mautic.erase_on_delete"),
            form_event_type=_event_type(mt.get("form_event_type", "form_submit"), "mapping.mautic.form_event_type"),
            forms=forms,
            profile_fields=_str_table(mt, "profile_fields", "mapping.mautic", PROFILE_FIELDS),
            company_fields=_str_table(mt, "company_fields", "mapping.mautic", ACCOUNT_FIELDS),
        ),
        countries=countries,
    )


def load_mapping(path: str | Path | None = None) -> MappingConfig:
    """The mapping of `path` (the shipped default when None); MappingConfigError names the file."""
    target = Path(path) if path else DEFAULT_MAPPING
    try:
        with open(target, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise MappingConfigError(f"mapping file {target}: cannot read it ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingConfigError(f"mapping file {target}: not valid TOML ({exc})") from None
    try:
        return parse_mapping(doc)
    except MappingConfigError as exc:
        raise MappingConfigError(f"mapping file {target}: {exc}") from None
