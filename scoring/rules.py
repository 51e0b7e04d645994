"""Scoring rules: what marketing-ops configure, loaded from TOML and validated strictly.

Strictness is deliberate: a typo in a production rules file must fail loudly with the key
path ("rules.temperature.hot: must be > warm"), never be ignored.  ``Rules`` is immutable and
its ``version`` is stamped on every output so a score can always be traced to its rules.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from hashlib import blake2b
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import RulesError
from .events import DAY_MS, EVENT_TYPES

GRADES = ("A", "B", "C", "D")
RESERVED_NAMES = frozenset(EVENT_TYPES) | {"fit"}
#: Bound on late_tolerance / half_life so decay weights stay far from float overflow.
MAX_TOLERANCE_HALF_LIVES = 200
# The exact decay keeps its sums in a reference frame that is rebased once per event-time day, so a
# day must span few enough half-lives for 2**(day / half-life) to stay a finite float.
MIN_HALF_LIFE_DAYS = 0.01  # ~14 minutes
_WINDOW_RE = re.compile(r"^([1-9][0-9]*)([mhd])$")
_WINDOW_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": DAY_MS}


def rule_key(name: str) -> int:
    """Stable 32-bit id of a rule or event type, used in the persisted state.

    Names (not list positions) identify rules so a state survives rules being reordered,
    added or removed.
    """
    return int.from_bytes(blake2b(name.encode(), digest_size=4).digest(), "little")


@dataclass(frozen=True, slots=True)
class Cap:
    """At most ``points`` (in magnitude) per window of ``window_ms``, windows aligned on the epoch."""

    points: float
    window_ms: int


@dataclass(frozen=True, slots=True)
class PropertyRule:
    """Points for events of ``event_type`` whose properties match every regex of ``match``."""

    name: str
    event_type: str
    match: tuple[tuple[str, re.Pattern[str]], ...]
    points: float
    replace: bool = False
    cap: Cap | None = None
    description: str = ""

    def matches(self, properties: Mapping[str, str]) -> bool:
        for prop, rx in self.match:
            v = properties.get(prop)
            if v is None or rx.search(v) is None:
                return False
        return True


@dataclass(frozen=True, slots=True)
class TemperatureRules:
    warm: float
    hot: float
    hysteresis: float


@dataclass(frozen=True, slots=True)
class KeywordBand:
    """Job-title band: first band (in file order) with a keyword in the title wins."""

    label: str
    keywords: tuple[str, ...]
    points: float
    pattern: re.Pattern[str] = field(compare=False, repr=False, default=re.compile("(?!)"))


@dataclass(frozen=True, slots=True)
class SizeBand:
    min: int
    max: int | None  # None: open-ended
    points: float


@dataclass(frozen=True, slots=True)
class FitRules:
    professional_email_points: float
    free_mail_points: float
    competitor_points: float
    missing_email_points: float
    free_mail_domains: tuple[str, ...]
    competitor_domains: tuple[str, ...]
    seniority: tuple[KeywordBand, ...]
    function: tuple[KeywordBand, ...]
    company_size: tuple[SizeBand, ...]
    unknown_company_size_points: float
    target_industries: tuple[str, ...]
    industry_points: float
    other_industry_points: float
    target_countries: tuple[str, ...]
    country_points: float
    other_country_points: float
    grade_cutoffs: tuple[float, float, float]  # A, B, C
    free_mail_re: re.Pattern[str] = field(compare=False, repr=False, default=re.compile("(?!)"))
    competitor_re: re.Pattern[str] = field(compare=False, repr=False, default=re.compile("(?!)"))
    industry_re: re.Pattern[str] = field(compare=False, repr=False, default=re.compile("(?!)"))


@dataclass(frozen=True, slots=True)
class Framework:
    name: str
    criteria: tuple[str, ...]
    min_met: int


def _keyword_re(keywords: tuple[str, ...]) -> re.Pattern[str]:
    """Whole-word/phrase, case-insensitive alternation (applied to lower-cased text)."""
    if not keywords:
        return re.compile("(?!)")
    alts = "|".join(re.escape(k) for k in sorted(keywords, key=len, reverse=True))
    return re.compile(rf"(?<![\w])(?:{alts})(?![\w])")


@dataclass(frozen=True, slots=True)
class AccountRules:
    """Account-based scoring: when a contact counts as engaged, buying-group roles by job title,
    account temperature on the account's engagement, and the MQA bar."""

    engaged_min: float  # a contact's engagement from which it counts as an engaged member
    temperature: TemperatureRules  # on the account's engagement (sum over its contacts)
    roles: tuple[KeywordBand, ...]  # first band with a keyword in the job title wins
    mqa_min_engagement: float
    mqa_min_engaged_contacts: int
    mqa_min_roles: int  # distinct roles among the engaged contacts


@dataclass(frozen=True, slots=True)
class Rules:
    version: str
    half_life_days: float
    late_tolerance_days: float
    total_cap: float
    points: Mapping[str, float]
    caps: Mapping[str, Cap]
    rules: tuple[PropertyRule, ...]
    temperature: TemperatureRules
    fit: FitRules
    mql_min_score: float
    mql_min_grade: str
    frameworks: Mapping[str, Framework]
    accounts: AccountRules
    source: str = field(default="", compare=False)

    @property
    def half_life_ms(self) -> float:
        return self.half_life_days * DAY_MS

    @property
    def late_tolerance_ms(self) -> int:
        return int(round(self.late_tolerance_days * DAY_MS))

    def framework_criteria(self) -> Mapping[str, tuple[str, ...]]:
        """Framework name -> criterion names, for ``validate_qualification``."""
        return {n: f.criteria for n, f in self.frameworks.items()}

    def rule_names(self) -> dict[int, str]:
        """rule_key -> name for every event type and property rule (used by explanations)."""
        names = {rule_key(t): t for t in EVENT_TYPES}
        names.update((rule_key(r.name), r.name) for r in self.rules)
        return names


# --------------------------------------------------------------------------- loading


@lru_cache(maxsize=1)
def _default_accounts() -> Mapping[str, Any]:
    """The [accounts] table of the built-in rules file: the value of every key a file leaves out."""
    return tomllib.loads(resources.files("scoring").joinpath("default_rules.toml").read_text(encoding="utf-8"))["accounts"]


def load_rules(path: str | Path) -> Rules:
    """Read and validate a TOML rules file."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError("rules", f"invalid TOML: {exc}", str(p)) from None
    except OSError as exc:
        raise RulesError("rules", f"cannot read file: {exc.strerror or exc}", str(p)) from None
    return parse_rules(data, source=str(p))


def default_rules() -> Rules:
    """The rules shipped with the package (``scoring/default_rules.toml``)."""
    text = resources.files(__package__).joinpath("default_rules.toml").read_text(encoding="utf-8")
    return parse_rules(tomllib.loads(text), source="scoring/default_rules.toml")


def parse_rules(data: Mapping[str, Any], source: str = "<dict>") -> Rules:
    """Validate an already-parsed TOML document (a dict) into ``Rules``."""
    try:
        return _Parser(source).rules(data)
    except RulesError:
        raise
    except (TypeError, AttributeError) as exc:  # defensive: malformed nesting we did not foresee
        raise RulesError("rules", f"malformed: {exc}", source) from None


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    # -- primitives ------------------------------------------------------------------------
    def err(self, path: str, reason: str) -> RulesError:
        return RulesError(path, reason, self.source)

    def table(self, v: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Mapping[str, Any]:
        if not isinstance(v, Mapping):
            raise self.err(path, f"expected a table, got {_tname(v)}")
        allowed = set(required) | set(optional)
        for k in v:
            if k not in allowed:
                raise self.err(f"{path}.{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for k in required:
            if k not in v:
                raise self.err(f"{path}.{k}", "missing")
        return v

    def num(self, v: Any, path: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.err(path, f"expected a number, got {_tname(v)}")
        if not math.isfinite(v):
            raise self.err(path, "must be finite")
        return float(v)

    def pos(self, v: Any, path: str) -> float:
        x = self.num(v, path)
        if x <= 0:
            raise self.err(path, f"must be > 0, got {v}")
        return x

    def int_(self, v: Any, path: str, minimum: int = 0) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err(path, f"expected an integer, got {_tname(v)}")
        if v < minimum:
            raise self.err(path, f"must be >= {minimum}, got {v}")
        return v

    def str_(self, v: Any, path: str, nonempty: bool = True) -> str:
        if not isinstance(v, str):
            raise self.err(path, f"expected a string, got {_tname(v)}")
        if nonempty and not v.strip():
            raise self.err(path, "must not be empty")
        return v

    def bool_(self, v: Any, path: str) -> bool:
        if not isinstance(v, bool):
            raise self.err(path, f"expected true or false, got {_tname(v)}")
        return v

    def strs(self, v: Any, path: str, nonempty: bool = False) -> tuple[str, ...]:
        if not isinstance(v, list):
            raise self.err(path, f"expected a list of strings, got {_tname(v)}")
        out = tuple(self.str_(x, f"{path}[{i}]") for i, x in enumerate(v))
        if nonempty and not out:
            raise self.err(path, "must not be empty")
        seen: set[str] = set()
        for i, s in enumerate(out):
            if s.lower() in seen:
                raise self.err(f"{path}[{i}]", f"duplicate {s!r}")
            seen.add(s.lower())
        return out

    def array_of_tables(self, v: Any, path: str) -> list[Mapping[str, Any]]:
        if not isinstance(v, list):
            raise self.err(path, f"expected an array of tables, got {_tname(v)}")
        return v

    def cap(self, v: Any, path: str) -> Cap:
        t = self.table(v, path, ("points", "window"))
        pts = self.pos(t["points"], f"{path}.points")
        w = self.str_(t["window"], f"{path}.window")
        m = _WINDOW_RE.match(w.strip())
        if m is None:
            raise self.err(f"{path}.window", f"expected a duration like '30m', '12h', '1d', got {w!r}")
        return Cap(pts, int(m.group(1)) * _WINDOW_UNIT_MS[m.group(2)])

    # -- sections --------------------------------------------------------------------------
    def rules(self, d: Mapping[str, Any]) -> Rules:
        top = self.table(
            d, "rules",
            ("version", "points", "temperature", "fit", "mql", "sql"),
            ("half_life_days", "late_tolerance_days", "total_cap", "caps", "rules", "accounts"),
        )
        version = self.str_(top["version"], "rules.version")
        half_life = self.pos(top.get("half_life_days", 30), "rules.half_life_days")
        if half_life < MIN_HALF_LIFE_DAYS:
            raise self.err("rules.half_life_days", f"must be >= {MIN_HALF_LIFE_DAYS} (about 14 minutes)")
        tolerance = self.pos(top.get("late_tolerance_days", 7), "rules.late_tolerance_days")
        if tolerance / half_life > MAX_TOLERANCE_HALF_LIVES:
            raise self.err("rules.late_tolerance_days", f"must be <= {MAX_TOLERANCE_HALF_LIVES} half-lives")
        total_cap = self.pos(top.get("total_cap", 150), "rules.total_cap")

        points = self.points(top["points"])
        caps_t = self.table(top.get("caps", {}), "rules.caps", (), EVENT_TYPES)
        caps = {et: self.cap(v, f"rules.caps.{et}") for et, v in caps_t.items()}
        prop_rules = self.prop_rules(top.get("rules", []))
        temperature = self.temperature(top["temperature"])
        fit = self.fit(top["fit"])
        mql = self.table(top["mql"], "rules.mql", ("min_score", "min_grade"))
        min_score = self.num(mql["min_score"], "rules.mql.min_score")
        min_grade = self.str_(mql["min_grade"], "rules.mql.min_grade")
        if min_grade not in GRADES:
            raise self.err("rules.mql.min_grade", f"must be one of {', '.join(GRADES)}, got {min_grade!r}")
        frameworks = self.sql(top["sql"])
        return Rules(
            version=version,
            half_life_days=half_life,
            late_tolerance_days=tolerance,
            total_cap=total_cap,
            points=MappingProxyType(points),
            caps=MappingProxyType(caps),
            rules=prop_rules,
            temperature=temperature,
            fit=fit,
            mql_min_score=min_score,
            mql_min_grade=min_grade,
            frameworks=MappingProxyType(frameworks),
            source=self.source,
            accounts=self.accounts(top.get("accounts", {})),
        )

    def points(self, v: Any) -> dict[str, float]:
        t = self.table(v, "rules.points", (), EVENT_TYPES)
        return {et: self.num(p, f"rules.points.{et}") for et, p in t.items()}

    def prop_rules(self, v: Any) -> tuple[PropertyRule, ...]:
        out: list[PropertyRule] = []
        names: dict[str, int] = {}
        keys = {rule_key(et): et for et in EVENT_TYPES}
        for i, r in enumerate(self.array_of_tables(v, "rules.rules")):
            path = f"rules.rules[{i}]"
            t = self.table(r, path, ("name", "event_type", "points"), ("match", "replace", "cap", "description"))
            name = self.str_(t["name"], f"{path}.name").strip()
            if name in RESERVED_NAMES:
                raise self.err(f"{path}.name", f"{name!r} is reserved (event type or 'fit')")
            if name.startswith("retired:"):
                raise self.err(f"{path}.name", "must not start with 'retired:'")
            if name in names:
                raise self.err(f"{path}.name", f"duplicate rule name {name!r} (also rules.rules[{names[name]}])")
            names[name] = i
            k = rule_key(name)
            if k in keys:  # 32-bit id collision: astronomically rare, but must not corrupt states
                raise self.err(f"{path}.name", f"name collides with {keys[k]!r} in the state encoding; rename it")
            keys[k] = name
            et = self.str_(t["event_type"], f"{path}.event_type")
            if et not in EVENT_TYPES:
                raise self.err(f"{path}.event_type", f"unknown event type {et!r}")
            match_t = self.table_any(t.get("match", {}), f"{path}.match")  # keys are property names
            match: list[tuple[str, re.Pattern[str]]] = []
            for prop, rx in match_t.items():
                rx_s = self.str_(rx, f"{path}.match.{prop}")
                try:
                    match.append((prop, re.compile(rx_s)))
                except re.error as exc:
                    raise self.err(f"{path}.match.{prop}", f"invalid regular expression: {exc}") from None
            out.append(
                PropertyRule(
                    name=name,
                    event_type=et,
                    match=tuple(match),
                    points=self.num(t["points"], f"{path}.points"),
                    replace=self.bool_(t.get("replace", False), f"{path}.replace"),
                    cap=self.cap(t["cap"], f"{path}.cap") if "cap" in t else None,
                    description=self.str_(t.get("description", ""), f"{path}.description", nonempty=False),
                )
            )
        return tuple(out)

    def table_any(self, v: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(v, Mapping):
            raise self.err(path, f"expected a table, got {_tname(v)}")
        return v

    def temperature(self, v: Any, path: str = "rules.temperature") -> TemperatureRules:
        t = self.table(v, path, ("warm", "hot"), ("hysteresis",))
        warm = self.pos(t["warm"], f"{path}.warm")
        hot = self.num(t["hot"], f"{path}.hot")
        if hot <= warm:
            raise self.err(f"{path}.hot", "must be > warm")
        hyst = self.num(t.get("hysteresis", 0), f"{path}.hysteresis")
        if hyst < 0:
            raise self.err(f"{path}.hysteresis", "must be >= 0")
        return TemperatureRules(warm, hot, hyst)

    def bands(self, v: Any, path: str, points: bool = True) -> tuple[KeywordBand, ...]:
        """Keyword bands; without `points` (buying-group roles) a band has a required label instead."""
        out = []
        for i, b in enumerate(self.array_of_tables(v, path)):
            p = f"{path}[{i}]"
            t = self.table(b, p, ("keywords", "points") if points else ("keywords", "label"), ("label",) if points else ())
            kws = tuple(k.strip().lower() for k in self.strs(t["keywords"], f"{p}.keywords", nonempty=True))
            label = self.str_(t.get("label", f"band{i}"), f"{p}.label")
            out.append(KeywordBand(label, kws, self.num(t["points"], f"{p}.points") if points else 0.0,
                                   _keyword_re(kws)))
        return tuple(out)

    def fit(self, v: Any) -> FitRules:
        path = "rules.fit"
        t = self.table(
            v, path, ("grades",),
            (
                "professional_email_points", "free_mail_points", "competitor_points", "missing_email_points",
                "free_mail_domains", "competitor_domains", "seniority", "function", "company_size",
                "unknown_company_size_points", "industry", "country",
            ),
        )
        num = lambda k: self.num(t.get(k, 0), f"{path}.{k}")  # noqa: E731
        free = tuple(s.strip().lower() for s in self.strs(t.get("free_mail_domains", []), f"{path}.free_mail_domains"))
        comp = tuple(s.strip().lower() for s in self.strs(t.get("competitor_domains", []), f"{path}.competitor_domains"))
        sizes: list[SizeBand] = []
        for i, b in enumerate(self.array_of_tables(t.get("company_size", []), f"{path}.company_size")):
            p = f"{path}.company_size[{i}]"
            bt = self.table(b, p, ("min", "points"), ("max",))
            lo = self.int_(bt["min"], f"{p}.min")
            hi = self.int_(bt["max"], f"{p}.max") if "max" in bt else None
            if hi is not None and hi < lo:
                raise self.err(f"{p}.max", "must be >= min")
            if sizes:
                prev = sizes[-1]
                if prev.max is None or lo <= prev.max:
                    raise self.err(f"{p}.min", "bands must be in increasing order and must not overlap")
            sizes.append(SizeBand(lo, hi, self.num(bt["points"], f"{p}.points")))
        ind = self.table(t.get("industry", {}), f"{path}.industry", (), ("target", "points", "other_points"))
        industries = tuple(s.strip().lower() for s in self.strs(ind.get("target", []), f"{path}.industry.target"))
        cty = self.table(t.get("country", {}), f"{path}.country", (), ("target", "points", "other_points"))
        countries = tuple(s.strip().upper() for s in self.strs(cty.get("target", []), f"{path}.country.target"))
        for i, c in enumerate(countries):
            if not re.fullmatch(r"[A-Z]{2}", c):
                raise self.err(f"{path}.country.target[{i}]", f"expected an ISO 3166-1 alpha-2 code, got {c!r}")
        g = self.table(t["grades"], f"{path}.grades", ("A", "B", "C"))
        a, b, c = (self.num(g[k], f"{path}.grades.{k}") for k in ("A", "B", "C"))
        if not b < a:
            raise self.err(f"{path}.grades.A", "must be > B")
        if not c < b:
            raise self.err(f"{path}.grades.B", "must be > C")
        return FitRules(
            professional_email_points=num("professional_email_points"),
            free_mail_points=num("free_mail_points"),
            competitor_points=num("competitor_points"),
            missing_email_points=num("missing_email_points"),
            free_mail_domains=free,
            competitor_domains=comp,
            seniority=self.bands(t.get("seniority", []), f"{path}.seniority"),
            function=self.bands(t.get("function", []), f"{path}.function"),
            company_size=tuple(sizes),
            unknown_company_size_points=num("unknown_company_size_points"),
            target_industries=industries,
            industry_points=self.num(ind.get("points", 0), f"{path}.industry.points"),
            other_industry_points=self.num(ind.get("other_points", 0), f"{path}.industry.other_points"),
            target_countries=countries,
            country_points=self.num(cty.get("points", 0), f"{path}.country.points"),
            other_country_points=self.num(cty.get("other_points", 0), f"{path}.country.other_points"),
            grade_cutoffs=(a, b, c),
            free_mail_re=_domain_re(free),
            competitor_re=_domain_re(comp),
            industry_re=_keyword_re(industries),
        )

    def accounts(self, v: Any) -> AccountRules:
        """[accounts]: every key optional; a missing one is the built-in file's (a rules file written
        before accounts existed keeps working)."""
        path = "rules.accounts"
        t = self.table(v, path, (), ("engaged_min_engagement", "temperature", "mqa", "roles"))
        mqa_keys = ("min_engagement", "min_engaged_contacts", "min_roles")
        mqa = self.table(t.get("mqa", {}), f"{path}.mqa", (), mqa_keys)
        d = _default_accounts()
        t = {**d, **t}
        mqa = {**d["mqa"], **mqa}
        roles = self.bands(t["roles"], f"{path}.roles", points=False)
        if len({b.label for b in roles}) != len(roles):
            raise self.err(f"{path}.roles", "role labels must be unique")
        return AccountRules(
            engaged_min=self.num(t["engaged_min_engagement"], f"{path}.engaged_min_engagement"),
            temperature=self.temperature(t["temperature"], f"{path}.temperature"), roles=roles,
            mqa_min_engagement=self.num(mqa["min_engagement"], f"{path}.mqa.min_engagement"),
            mqa_min_engaged_contacts=self.int_(mqa["min_engaged_contacts"], f"{path}.mqa.min_engaged_contacts"),
            mqa_min_roles=self.int_(mqa["min_roles"], f"{path}.mqa.min_roles"),
        )

    def sql(self, v: Any) -> dict[str, Framework]:
        t = self.table(v, "rules.sql", ("frameworks",))
        fw = self.table_any(t["frameworks"], "rules.sql.frameworks")
        if not fw:
            raise self.err("rules.sql.frameworks", "at least one framework is required")
        out = {}
        for name, f in fw.items():
            p = f"rules.sql.frameworks.{name}"
            ft = self.table(f, p, ("criteria",), ("min_met",))
            crit = tuple(s.strip() for s in self.strs(ft["criteria"], f"{p}.criteria", nonempty=True))
            if len(crit) > 16:
                raise self.err(f"{p}.criteria", "at most 16 criteria")
            min_met = self.int_(ft.get("min_met", len(crit)), f"{p}.min_met", minimum=1)
            if min_met > len(crit):
                raise self.err(f"{p}.min_met", f"must be <= the number of criteria ({len(crit)})")
            out[name] = Framework(name, crit, min_met)
        return out


def _tname(v: Any) -> str:
    return {dict: "table", list: "array", str: "string", bool: "boolean", int: "integer", float: "float"}.get(
        type(v), type(v).__name__
    )


def _domain_re(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """Glob domain patterns; a plain domain also matches its sub-domains."""
    if not patterns:
        return re.compile("(?!)")
    alts = "|".join(re.escape(p).replace(r"\*", "[^@]*") for p in patterns)
    return re.compile(rf"(?:.*\.)?(?:{alts})")
