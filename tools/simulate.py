"""`leadpulse simulate`: a realistic, deterministic synthetic B2B funnel.

Who: personas with fit profiles — decision makers at target companies, practitioners, small-business
owners, newsletter subscribers, students and job seekers on free-mail, competitors — and bots (many
page views, no profile).  What they do: sessions of behaviour events that walk the funnel (TOFU: page
views, newsletter, white papers; MOFU: webinars, case studies, e-mail clicks; BOFU: pricing, demo,
trial), each persona with its own appetite.  What sales does: the contacts that become MQLs (found by
running the scoring core over each candidate's records, in delivery order) are worked by sales a few
hours to days later — BANT/MEDDICC criteria, accept, reject, disqualify, won — so a backtest can
measure MQL→SQL conversion.  Noise: bots, duplicate deliveries and out-of-order deliveries at the
given rates.

Determinism: the same options (seed, end instant included) give byte-identical output.  The end
instant defaults to the current hour (now, rounded down to the hour, UTC), so every event lies in the
past and two runs within the same hour are identical; pass `--end` to pin it.

Output: Kafka (profiles, events and qualifications to their topics, keyed by contact, in delivery
order, at `--rate` records/s) or an Avro object container file (`--out`), one record per delivery, of
the container schema `SimulatedRecord` (see `container_schema()` and docs/cli.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path

from tools.common import DAY_MS, HOUR_MS, CliError, iso, progress

MIN_MS = 60_000
FORMAT = "leadpulse-simulation/1"
KINDS = ("behaviour", "profile", "qualification")
RECORD_NAMES = {"behaviour": "BehaviourEvent", "profile": "ContactProfile", "qualification": "QualificationUpdate"}
NAMESPACE = "io.leadpulse"


# ============================================================================ container schema

def container_schema() -> dict:
    """`io.leadpulse.sim.SimulatedRecord`: `kind` says which one of the three optional records is set.

    The embedded records are the wire schemas the worker reads (latest versions from
    `schemas/catalogue.toml`), with their `timestamp-millis` annotations left off: timestamps are
    plain epoch-millisecond longs, as the codec hands them to the core.
    """
    from streams.codec import Catalogue, _plain

    cat = Catalogue()
    fields = [{
        "name": "kind",
        "type": {"type": "enum", "name": "RecordKind", "symbols": list(KINDS),
                 "doc": "Which of the fields below holds the record (the others are null)."},
        "doc": "behaviour → lead-events topic, profile → lead-profiles, qualification → lead-qualifications.",
    }]
    for kind in KINDS:
        raw = _plain(cat.raw(cat.writer_id(RECORD_NAMES[kind])))
        fields.append({"name": kind, "type": ["null", raw], "default": None})
    return {
        "type": "record", "name": "SimulatedRecord", "namespace": "io.leadpulse.sim",
        "doc": "One delivery of a simulated (or exported) leadpulse input, in delivery order. "
               "Duplicate deliveries repeat a record; out-of-order deliveries come after later events.",
        "fields": fields,
    }


# ============================================================================ world data

SITE = "https://www.leadpulse.example"
FIRST = ["alex", "sam", "camille", "jordan", "marie", "lucas", "emma", "noah", "lea", "hugo", "sofia",
         "max", "nina", "paul", "ines", "tom", "clara", "jules", "anna", "leo", "chloe", "adam", "zoe",
         "ethan", "julia", "mila", "oscar", "lina", "victor", "eva", "felix", "rosa", "ivan", "maya"]
LAST = ["martin", "bernard", "dubois", "thomas", "robert", "richard", "petit", "durand", "leroy",
        "moreau", "simon", "laurent", "lefebvre", "michel", "garcia", "mueller", "schmidt", "smith",
        "jones", "brown", "taylor", "wilson", "davies", "evans", "janssens", "peeters", "rossi", "costa"]
ROOTS = ["acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne", "tyrell",
         "cyberdyne", "soylent", "wonka", "massive", "aperture", "oscorp", "dunder", "pied", "contoso",
         "fabrikam", "northwind", "tailspin", "litware", "proseware", "adatum", "wingtip", "lucerne"]
SUFFIXES = ["robotics", "analytics", "cloud", "labs", "systems", "digital", "software", "data",
            "commerce", "media", "partners", "group", "tech", "works", "io"]
TLDS = [".example", ".example", ".example", ".test"]
TARGET_INDUSTRIES = ["Software", "SaaS", "Information Technology", "Internet", "Fintech", "E-commerce",
                     "Marketing", "Advertising", "Consulting"]
OTHER_INDUSTRIES = ["Retail", "Manufacturing", "Healthcare", "Education", "Logistics", "Construction",
                    "Hospitality", "Public sector", "Energy"]
TARGET_COUNTRIES = ["FR", "FR", "DE", "GB", "US", "US", "NL", "BE", "CH", "CA", "IE"]
OTHER_COUNTRIES = ["BR", "IN", "ES", "IT", "PL", "MX", "JP", "AU", "ZA", "SG"]
FREE_MAIL = ["gmail.com", "gmail.com", "yahoo.fr", "hotmail.com", "outlook.com", "icloud.com",
             "gmx.de", "proton.me", "orange.fr"]
COMPETITORS = ["rivalscore.example", "leadhawk.example"]

TITLES = {
    "decision_maker": ["CMO", "VP Marketing", "Head of Growth", "Director of Demand Generation",
                       "Chief Revenue Officer", "VP Sales", "Directeur Marketing", "Head of Revenue Operations",
                       "Marketing Director", "Head of Sales", "VP Growth Marketing"],
    "practitioner": ["Marketing Manager", "Growth Marketer", "Marketing Operations Specialist",
                     "Demand Gen Manager", "Sales Development Representative", "Content Manager",
                     "Responsable Communication", "Data Analyst", "Software Engineer", "Product Manager",
                     "CRM Specialist", "Account Executive", "Marketing Automation Consultant"],
    "smb_owner": ["Founder", "CEO", "Owner", "Co-founder", "Managing Director", "Gérant"],
    "student": ["Student", "Marketing Intern", "Étudiant", "Alternant marketing", "MBA Student",
                "Stagiaire communication"],
    "job_seeker": ["Open to work", "Marketing professional", "Recruiter", "Talent Acquisition",
                   "Freelance marketer", "HR Assistant"],
    "competitor": ["Product Manager", "Product Marketing Manager", "Competitive Intelligence Analyst",
                   "Growth PM"],
}

# page pools
BLOG = [f"/blog/{s}" for s in ("lead-scoring-101", "mql-vs-sql", "bant-meddicc", "intent-data", "abm-playbook",
                               "email-benchmarks", "funnel-metrics", "predictive-scoring", "revops-guide",
                               "crm-hygiene", "webinar-tips", "b2b-seo")]
GENERAL = ["/", "/product", "/features", "/integrations", "/about", "/security", "/docs/getting-started",
           "/docs/api", "/partners", "/fr/", "/de/"]
CASES = ["/case-studies/acme", "/case-studies/globex", "/customers/initech", "/customers/hooli",
         "/references/contoso"]
PRICING = ["/pricing", "/pricing/enterprise", "/fr/tarifs", "/pricing#faq"]
COMPARE = ["/compare/rivalscore", "/vs-leadhawk", "/alternatives/rivalscore"]
CAREERS = ["/careers", "/jobs/growth-marketer", "/jobs/backend-engineer", "/careers/life-at-leadpulse",
           "/fr/recrutement"]
ALL_PAGES = BLOG + GENERAL + CASES + PRICING + COMPARE + CAREERS + [f"/tag/{i}" for i in range(40)]

SOURCE = {
    "page_view": "website", "pricing_page_view": "website", "case_study_view": "website",
    "content_download": "website", "form_submit": "website", "demo_request": "website",
    "free_trial_signup": "app", "newsletter_signup": "website", "email_open": "hubspot",
    "email_click": "hubspot", "unsubscribe": "hubspot", "email_bounce": "hubspot",
    "webinar_signup": "webinars", "webinar_attended": "webinars", "event_attended": "events",
    "social_engagement": "linkedin",
}
ONCE = frozenset({"newsletter_signup", "demo_request", "free_trial_signup"})
#: Events a visitor identifies with (a form): an anonymous visitor becomes the contact there.
IDENTIFYING = frozenset({"form_submit", "content_download", "webinar_signup", "newsletter_signup", "demo_request",
                         "free_trial_signup", "event_attended"})


def _pages(paths):
    return [{"url": SITE + p, "referrer": r} for p in paths for r in ("google", "direct", "linkedin")]


def _pool(kind: str) -> list[dict]:
    if kind == "blog":
        return _pages(BLOG)
    if kind == "general":
        return _pages(GENERAL)
    if kind == "cases":
        return _pages(CASES)
    if kind == "pricing":
        return _pages(PRICING)
    if kind == "compare":
        return _pages(COMPARE)
    if kind == "careers":
        return _pages(CAREERS)
    if kind == "email":
        return [{"campaign": f"newsletter-{i:02d}"} for i in range(24)]
    if kind == "nurture":
        return [{"campaign": f"nurture-{i:02d}", "link": link} for i in range(12) for link in ("cta", "blog", "case")]
    if kind == "ebook":
        return [{"asset_type": a, "asset": n} for a in ("ebook", "checklist", "template")
                for n in ("scoring-checklist", "funnel-template", "abm-ebook")]
    if kind == "whitepaper":
        return [{"asset_type": a, "asset": n} for a in ("whitepaper", "White paper", "livre blanc")
                for n in ("state-of-lead-scoring", "revops-benchmark")]
    if kind == "social":
        return [{"network": n, "action": a} for n in ("linkedin", "x") for a in ("like", "share", "comment")]
    if kind == "newsletter_form":
        return [{"form": "newsletter"}]
    if kind == "sales_form":
        return [{"form": f} for f in ("contact-sales", "quote", "contact_sales")]
    if kind == "webinar":
        return [{"webinar": w} for w in ("scoring-masterclass", "revops-live", "abm-in-practice", "demo-day")]
    if kind == "event":
        return [{"event": e} for e in ("saas-summit-paris", "martech-berlin", "roadshow-lyon")]
    if kind == "bounce":
        return [{"bounce": "soft"}, {"bounce": "soft"}, {"bounce": "hard"}]
    return [{}]


# (weight, event type, property pool) per funnel stage, and the persona-specific variants
TOFU = [(34, "page_view", "blog"), (14, "page_view", "general"), (14, "email_open", "email"),
        (5, "social_engagement", "social"), (4, "newsletter_signup", ""), (3, "content_download", "ebook"),
        (2, "content_download", "whitepaper"), (2, "form_submit", "newsletter_form"), (2, "page_view", "cases")]
MOFU = [(16, "page_view", "general"), (8, "page_view", "blog"), (8, "page_view", "cases"),
        (5, "case_study_view", ""), (12, "email_open", "nurture"), (10, "email_click", "nurture"),
        (5, "webinar_signup", "webinar"), (3, "content_download", "whitepaper"), (1, "event_attended", "event"),
        (3, "pricing_page_view", ""), (2, "page_view", "pricing")]
BOFU = [(10, "pricing_page_view", ""), (10, "page_view", "pricing"), (5, "page_view", "compare"),
        (4, "demo_request", ""), (3, "free_trial_signup", ""), (3, "form_submit", "sales_form"),
        (8, "page_view", "general"), (6, "page_view", "cases"), (4, "case_study_view", ""),
        (6, "email_click", "nurture"), (6, "email_open", "nurture"), (2, "event_attended", "event")]
JOBS = [(30, "page_view", "careers"), (20, "page_view", "blog"), (10, "page_view", "general"),
        (8, "email_open", "email"), (4, "social_engagement", "social"), (3, "content_download", "ebook")]
RIVAL = [(20, "pricing_page_view", ""), (20, "page_view", "pricing"), (15, "page_view", "compare"),
         (10, "content_download", "whitepaper"), (10, "page_view", "general"), (8, "page_view", "cases"),
         (5, "webinar_signup", "webinar"), (4, "case_study_view", ""), (1, "free_trial_signup", "")]


@dataclass(frozen=True)
class Persona:
    name: str
    weight: float
    sessions: float  # mean number of sessions
    session_events: float  # mean events per session
    gap_days: float  # mean days between sessions
    progress: tuple[float, float]  # P(TOFU→MOFU), P(MOFU→BOFU) after each session
    mixes: tuple[str, str, str]  # mix per funnel stage
    worked: float  # P(sales works the MQL)
    outcomes: tuple[float, float, float]  # P(qualify), P(reject), P(disqualify) — sums to 1
    won: float  # P(won | SQL)


PERSONAS = (
    Persona("decision_maker", 12, 6, 4, 6, (0.40, 0.30), ("TOFU", "MOFU", "BOFU"), 0.9, (0.65, 0.25, 0.10), 0.35),
    Persona("practitioner", 36, 5, 4, 7, (0.25, 0.12), ("TOFU", "MOFU", "BOFU"), 0.75, (0.40, 0.45, 0.15), 0.25),
    Persona("smb_owner", 8, 5, 4, 8, (0.25, 0.15), ("TOFU", "MOFU", "BOFU"), 0.7, (0.35, 0.45, 0.20), 0.30),
    Persona("subscriber", 14, 5, 2, 9, (0.15, 0.15), ("TOFU", "MOFU", "BOFU"), 0.6, (0.20, 0.50, 0.30), 0.15),
    Persona("student", 15, 4, 3, 8, (0.20, 0.05), ("TOFU", "TOFU", "MOFU"), 0.6, (0.05, 0.45, 0.50), 0.0),
    Persona("job_seeker", 12, 3, 4, 5, (0.10, 0.05), ("JOBS", "JOBS", "TOFU"), 0.6, (0.05, 0.45, 0.50), 0.0),
    Persona("competitor", 3, 6, 6, 4, (0.9, 0.9), ("RIVAL", "RIVAL", "RIVAL"), 0.8, (0.0, 0.2, 0.8), 0.0),
)
BOT = "bot"
MIXES = {"TOFU": TOFU, "MOFU": MOFU, "BOFU": BOFU, "JOBS": JOBS, "RIVAL": RIVAL}
TABLE = 1024  # resolution of the precomputed weighted-choice tables


# ============================================================================ configuration & result

@dataclass
class SimConfig:
    contacts: int = 1000
    events: int | None = None  # if set: add contacts until this many behaviour deliveries
    days: float = 90.0
    bots: float = 0.03  # fraction of contacts that are bots
    duplicates: float = 0.01  # fraction of behaviour events delivered twice
    out_of_order: float = 0.02  # fraction of behaviour events delivered after later events
    anonymous: float = 0.3  # fraction of people who browse anonymously until their first form
    seed: int = 1
    end_ms: int | None = None  # default: now rounded down to the hour
    prefix: str | None = None  # contact id prefix; default "s<seed>-"
    rules_spec: str | None = None  # rules sales works with (which contacts become MQLs)

    def resolved_end(self) -> int:
        if self.end_ms is not None:
            return self.end_ms
        return int(time.time() * 1000) // HOUR_MS * HOUR_MS

    def check(self) -> None:
        if self.contacts < 1 and not self.events:
            raise CliError("--contacts must be at least 1")
        if self.events is not None and self.events < 1:
            raise CliError("--events must be at least 1")
        if not 0 < self.days <= 3650:
            raise CliError("--days must be in (0, 3650]")
        for name, v in (("--bots", self.bots), ("--duplicates", self.duplicates), ("--out-of-order", self.out_of_order),
                        ("--anonymous", self.anonymous)):
            if not 0.0 <= v <= 1.0:
                raise CliError(f"{name} must be a fraction between 0 and 1, got {v}")
        if self.bots >= 1.0:
            raise CliError("--bots must be < 1 (some contacts must be people)")


@dataclass
class Simulation:
    """The records in delivery order: (delivery ms, seq, kind, Avro dict)."""

    records: list
    start_ms: int
    end_ms: int
    rules_version: str
    stats: dict = field(default_factory=dict)

    def metadata(self, cfg: SimConfig) -> dict[str, str]:
        return {
            "leadpulse.format": FORMAT,
            "leadpulse.seed": str(cfg.seed),
            "leadpulse.start": str(self.start_ms),
            "leadpulse.end": str(self.end_ms),
            "leadpulse.options": repr((cfg.contacts, cfg.events, cfg.days, cfg.bots, cfg.duplicates,
                                       cfg.out_of_order, cfg.prefix, cfg.anonymous)),
            "leadpulse.rules_version": self.rules_version,
        }


# ============================================================================ generation

class _World:
    """Everything precomputed once: weighted-choice tables, property pools, the points bound."""

    def bound(self, event_type: str, props: dict) -> float:
        """Upper bound of the points one event adds (for the MQL candidate filter): the sum of its
        positive contributions when alone, so caps, decay and penalties can only lower the total."""
        from scoring.events import BehaviourEvent

        key = (event_type, tuple(sorted(props.items())))
        b = self._bounds.get(key)
        if b is None:
            st, _ = self.model.apply_event(None, BehaviourEvent("bound", "bound", event_type, DAY_MS, props))
            parts = self.model.snapshot(st).explanation
            b = self._bounds[key] = sum(v for k, v in parts.items() if k != "fit" and v > 0)
        return b

    def __init__(self, rules, rnd: random.Random):
        from scoring.model import ScoringModel

        self.model = ScoringModel(rules)
        self.rules = rules
        self._bounds: dict = {}
        pools: dict[str, list[dict]] = {}
        self.tables: dict[str, list[tuple[str, list, list[float]]]] = {}
        for name, mix in MIXES.items():
            entries = []
            for w, et, pool in mix:
                if pool not in pools:
                    pools[pool] = _pool(pool)
                props = pools[pool]
                entries.append((w, (et, props, [self.bound(et, p) for p in props])))
            total = sum(w for w, _ in entries)
            table, acc, i = [], 0.0, 0
            cum = []
            for w, e in entries:
                acc += w / total
                cum.append(acc)
            for k in range(TABLE):
                x = (k + 0.5) / TABLE
                while i < len(cum) - 1 and x > cum[i]:
                    i += 1
                table.append(entries[i][1])
            self.tables[name] = table
        self.bot_pages = _pages(ALL_PAGES)
        self.bot_bounds = [self.bound("page_view", p) for p in self.bot_pages]
        self.cum_personas = []
        acc = 0.0
        tot = sum(p.weight for p in PERSONAS)
        for p in PERSONAS:
            acc += p.weight / tot
            self.cum_personas.append(acc)
        self.cum_personas[-1] = 1.0
        # companies: (name, domain, size, industry, country), targets and others
        self.companies = []
        for a in ROOTS:
            for b in SUFFIXES:
                if rnd.random() < 0.5:
                    continue
                target = rnd.random() < 0.55
                size = rnd.choice([rnd.randint(51, 200), rnd.randint(201, 1000)]) if target else \
                    rnd.choice([rnd.randint(11, 50), rnd.randint(1001, 5000), rnd.randint(5001, 50000)])
                self.companies.append((
                    f"{a.title()} {b.title()}", f"{a}{b}{rnd.choice(TLDS)}", size,
                    rnd.choice(TARGET_INDUSTRIES) if target else rnd.choice(OTHER_INDUSTRIES + TARGET_INDUSTRIES[:3]),
                    rnd.choice(TARGET_COUNTRIES) if target or rnd.random() < 0.6 else rnd.choice(OTHER_COUNTRIES),
                    target,
                ))
        self.targets = [c for c in self.companies if c[5]]
        self.others = [c for c in self.companies if not c[5]]
        self.small = [(f"{a.title()} {s}", f"{a}-{s.lower()}.example") for a in ROOTS for s in ("Studio", "Conseil", "Agency")]


def _profile(world: _World, persona: str, cid: str, rnd: random.Random) -> dict:
    r = rnd.random
    first, last = FIRST[int(r() * len(FIRST))], LAST[int(r() * len(LAST))]
    title = rnd.choice(TITLES.get(persona, TITLES["practitioner"]))
    company = size = industry = country = None
    if persona == "decision_maker":
        name, domain, size, industry, country, _ = rnd.choice(world.targets)
        email = f"{first}.{last}@{domain}"
        company = name
    elif persona == "practitioner":
        name, domain, size, industry, country, _ = rnd.choice(world.targets if r() < 0.5 else world.others)
        email = f"{first[0]}{last}@{domain}" if r() < 0.9 else f"{first}.{last}{int(r() * 99)}@{rnd.choice(FREE_MAIL)}"
        company = name
        if r() < 0.25:
            size = None  # not known yet (enrichment may fill it)
    elif persona == "smb_owner":
        company, domain = rnd.choice(world.small)
        email = f"{first}@{domain}"
        size = rnd.randint(1, 15)
        industry = rnd.choice(["Consulting", "Marketing", "Retail", "Software"])
        country = rnd.choice(TARGET_COUNTRIES)
    elif persona == "subscriber":
        domain = rnd.choice(FREE_MAIL) if r() < 0.4 else rnd.choice(world.companies)[1]
        email = f"{first}.{last}@{domain}"
        title = None
        country = rnd.choice(TARGET_COUNTRIES + OTHER_COUNTRIES) if r() < 0.7 else None
    elif persona in ("student", "job_seeker"):
        email = f"{first}.{last}{int(r() * 999)}@{rnd.choice(FREE_MAIL)}"
        country = rnd.choice(TARGET_COUNTRIES + OTHER_COUNTRIES)
        industry = "Education" if persona == "student" and r() < 0.5 else None
    else:  # competitor
        domain = rnd.choice(COMPETITORS)
        email = f"{first}.{last}@{domain}"
        company = domain.split(".")[0].title()
        size = rnd.randint(80, 400)
        industry = "Software"
        country = rnd.choice(TARGET_COUNTRIES)
    return {"contact_id": cid, "email": email, "job_title": title, "company": company,
            "company_size": size, "industry": industry, "country": country, "updated_at": 0}


def _journey(world: _World, p: Persona, start: float, end: int, rnd: random.Random) -> list[list]:
    """[occurred_at, event_type, properties, bound] of one person, sorted by time."""
    r = rnd.random
    tables = world.tables
    mixes = p.mixes
    out: list[list] = []
    done: set[str] = set()
    stage = 0
    t = start
    n_sessions = 1 + int(rnd.expovariate(1.0 / max(p.sessions - 1, 0.1)))
    gap = p.gap_days * DAY_MS
    follow: list[list] = []
    for _ in range(n_sessions):
        table = tables[mixes[stage]]
        n = 1 + int(rnd.expovariate(1.0 / max(p.session_events - 1, 0.1)))
        for _ in range(n):
            if t > end:
                break
            et, props, bound = table[int(r() * TABLE)]
            k = int(r() * len(props))
            if et in ONCE:
                if et in done:
                    et, props, bound, k = "page_view", world.bot_pages, world.bot_bounds, int(r() * len(world.bot_pages))
                done.add(et)
            out.append([int(t), et, props[k], bound[k]])
            if et == "webinar_signup" and r() < 0.6:
                follow.append([int(t + (1 + r() * 9) * DAY_MS), "webinar_attended", props[k],
                               world.bound("webinar_attended", props[k])])
            t += 10_000 + r() * 290_000
        if stage < 2 and r() < p.progress[stage]:
            stage += 1
        t += rnd.expovariate(1.0 / gap) + HOUR_MS
        if t > end:
            break
    if p.name in ("student", "subscriber", "job_seeker") and out and r() < 0.08:
        out.append([out[-1][0] + int(DAY_MS * (1 + r() * 20)), "unsubscribe", {}, 0.0])
    if out and r() < 0.02:
        pool = _pool("bounce")
        out.append([out[-1][0] + int(DAY_MS * (1 + r() * 20)), "email_bounce", pool[int(r() * 3)], 0.0])
    out.extend(f for f in follow)
    out = [e for e in out if e[0] <= end]
    out.sort(key=lambda e: e[0])
    return out


def _bot(world: _World, start: float, end: int, rnd: random.Random) -> list[list]:
    r = rnd.random
    pages = world.bot_pages
    out = []
    t = start
    for _ in range(1 + int(r() * 4)):
        for _ in range(20 + int(rnd.expovariate(1 / 120))):
            if t > end:
                break
            out.append([int(t), "page_view", pages[int(r() * len(pages))], 0.0])
            t += 200 + r() * 5_000
        t += r() * 10 * DAY_MS
        if t > end:
            break
    return out


def simulate(cfg: SimConfig, *, show_progress: bool = True) -> Simulation:
    """Generate the records of a whole simulation, in delivery order."""
    from scoring.events import BehaviourEvent, ContactProfile
    from scoring.fit import grade_at_least, score_fit
    from tools.common import load_rules_arg

    cfg.check()
    rules = load_rules_arg(cfg.rules_spec)
    end = cfg.resolved_end()
    span = int(cfg.days * DAY_MS)
    start_ms = end - span
    rnd = random.Random(cfg.seed)
    r = rnd.random
    world = _World(rules, rnd)
    model = world.model
    mql_bar = rules.mql_min_score
    min_grade = rules.mql_min_grade
    total_cap = rules.total_cap
    prefix = cfg.prefix if cfg.prefix is not None else f"s{cfg.seed}-"
    records: list = []  # (deliver_at, seq, kind, avro dict)
    append = records.append
    seq = 0
    n_beh = dup = late = 0
    personas: Counter = Counter()
    actions: Counter = Counter()
    mql_personas: Counter = Counter()
    mqls = 0
    target = cfg.events
    n_contacts = cfg.contacts if target is None else 10**9
    cum = world.cum_personas
    fit_max = _max_fit(rules)
    # frameworks sales can use: those of the rules that the wire schema can carry (an Avro enum)
    frameworks = [(name, fw.criteria, fw.min_met) for name, fw in rules.frameworks.items() if name in ("BANT", "MEDDICC")]
    dup_rate, ooo_rate, bot_rate, anon_rate = cfg.duplicates, cfg.out_of_order, cfg.bots, cfg.anonymous
    n_anon = n_identified = 0

    with progress("simulating contacts" if target is None else "simulating events",
                  n_contacts if target is None else target, enabled=show_progress) as advance:
        i = 0
        while i < n_contacts and (target is None or n_beh < target):
            cid = f"{prefix}{i:07d}"
            i += 1
            # ---- who, and what they do
            if r() < bot_rate:
                persona = None
                personas[BOT] += 1
                journey = _bot(world, start_ms + r() * span, end, rnd)
                prof = None
            else:
                x = r()
                persona = PERSONAS[bisect_right(cum, x) if x < 1.0 else len(PERSONAS) - 1]
                personas[persona.name] += 1
                # journeys start anywhere in the window; earlier starts have more time to progress
                journey = _journey(world, persona, start_ms + r() * span, end, rnd)
                prof = _profile(world, persona.name, cid, rnd)
            if not journey:
                advance(1 if target is None else 0)
                continue
            # ---- anonymous browsing: until the first form (which carries both ids), the tracker only
            # knows a browser id; the CRM knows the person from that form on. Never identified: no profile.
            anon = f"anon-{blake2b(cid.encode(), digest_size=6).hexdigest()}" if persona is None else None
            known_from = 0
            if persona is not None and r() < anon_rate:
                anon = f"v-{blake2b(cid.encode(), digest_size=6).hexdigest()}"
                known_from = next((k for k, e in enumerate(journey) if e[1] in IDENTIFYING), len(journey))
                n_anon += 1
                if known_from == len(journey):
                    prof = None
                else:
                    n_identified += 1
            # ---- deliveries (deliver_at, seq, kind, record): profiles, then the events with noise
            base = len(records)
            profiles: list = []
            if prof is not None:
                prof["updated_at"] = max(journey[0][0] - int(MIN_MS * (1 + r() * 60)), 1) if not known_from else \
                    journey[known_from][0] - 1
                profiles.append(prof)
                if r() < 0.2 and len(journey) > 3:  # enrichment: the CRM learns more later
                    later = dict(prof)
                    later["updated_at"] = journey[len(journey) // 2][0] + 1
                    if later["company_size"] is None and persona.name != "student":
                        later["company_size"] = rnd.randint(11, 1000)
                    if later["industry"] is None and persona.name not in ("student", "job_seeker"):
                        later["industry"] = rnd.choice(TARGET_INDUSTRIES + OTHER_INDUSTRIES)
                    profiles.append(later)
                for pr in profiles:
                    append((pr["updated_at"], seq, 1, pr))
                    seq += 1
            n = len(journey)
            # out-of-order candidates: events whose next event comes within a day (same session)
            cand = sum(1 for k in range(n - 1) if journey[k + 1][0] - journey[k][0] < DAY_MS)
            p_late = min(1.0, ooo_rate * n / cand) if cand else 0.0
            for k, (t, et, props, _b) in enumerate(journey):
                rec = {"event_id": f"{cid}-{k:05d}", "contact_id": "" if k < known_from else cid,
                       "anonymous_id": anon if persona is None or k <= known_from else None, "event_type": et,
                       "occurred_at": t, "source": SOURCE[et], "properties": props}
                if k < n - 1:
                    gap = journey[k + 1][0] - t
                    if p_late and gap < DAY_MS and r() < p_late:  # delivered after the next event(s)
                        at = t + gap + 1_000 + int(r() * 2 * HOUR_MS)
                        late += 1
                    else:  # transport delay, never enough to overtake the next event
                        at = t + int(r() * (2_000 if gap > 4_000 else gap >> 1))
                else:
                    at = t + int(r() * 2_000)
                append((at, seq, 0, rec))
                seq += 1
                if r() < dup_rate:
                    append((at + 1_000 + int(r() * 10 * MIN_MS), seq, 0, rec))
                    seq += 1
                    dup += 1
            n_beh += n
            # ---- sales: only contacts the core makes MQLs, found by replaying their deliveries
            if persona is not None:
                bound = min(total_cap, sum(e[3] for e in journey))
                fits = [score_fit(ContactProfile(**pr), rules) for pr in profiles] if fit_max + bound >= mql_bar else ()
                if any(grade_at_least(f.grade, min_grade) for f in fits):
                    if max(f.score for f in fits) + bound >= mql_bar:
                        mql = _first_mql(model, cid, sorted(records[base:]), BehaviourEvent, ContactProfile)
                        if mql is not None:
                            mqls += 1
                            mql_personas[persona.name] += 1
                            for u in _sales(persona, cid, mql, end, rnd, frameworks):
                                actions[u["action"]] += 1
                                append((u["occurred_at"], seq, 2, u))
                                seq += 1
            advance(1 if target is None else n)
        n_contacts = i
    records.sort()  # (delivery instant, seq): seq is unique, the records themselves are never compared
    n_prof = sum(1 for x in records if x[2] == 1)
    stats = {
        "seed": cfg.seed, "start": iso(start_ms), "end": iso(end), "days": cfg.days,
        "contacts": n_contacts, "bots": personas[BOT], "personas": dict(sorted(personas.items())),
        "records": len(records), "behaviour_events": n_beh, "behaviour_deliveries": n_beh + dup,
        "duplicates": dup, "out_of_order": late, "profiles": n_prof,
        "anonymous_visitors": n_anon, "identified_by_a_form": n_identified,
        "qualifications": sum(actions.values()), "sales_actions": dict(sorted(actions.items())),
        "mqls_under_simulation_rules": mqls, "mqls_by_persona": dict(sorted(mql_personas.items())),
        "rules_version": rules.version,
    }
    return Simulation(records, start_ms, end, rules.version, stats)


def _max_fit(rules) -> float:
    """The best fit score any profile can get under `rules` (a bound for the MQL candidate filter)."""
    f = rules.fit
    best = max(f.professional_email_points, f.free_mail_points, f.competitor_points, f.missing_email_points)
    for bands in (f.seniority, f.function):
        best += max([0.0] + [b.points for b in bands])
    best += max([f.unknown_company_size_points] + [b.points for b in f.company_size])
    best += max(0.0, f.industry_points, f.other_industry_points)
    best += max(0.0, f.country_points, f.other_country_points)
    return best


def _first_mql(model, cid, items, BehaviourEvent, ContactProfile):
    """(MQL instant, delivery instant of the record that caused it) under `model`, or None. Anonymous
    events count as the contact's: the worker merges them at the form, where the profile arrives too,
    and a contact without a profile cannot be an MQL, so the instant is the same."""
    from scoring.errors import ScoringError

    state = None
    run: list = []
    run_at: dict = {}

    def flush(state):
        st, changes = model.apply_events(state, run, rejected=[])
        for c in changes:
            if c.kind == "stage" and c.to_value == "mql":
                return st, (c.at, run_at.get(c.cause_event_id, c.at))
        return st, None

    for at, _, kind, rec in items:
        if kind == 0:
            run.append(BehaviourEvent(rec["event_id"], cid, rec["event_type"], rec["occurred_at"],
                                      rec["properties"], rec["source"], rec["anonymous_id"]))
            run_at.setdefault(rec["event_id"], at)
            continue
        if run:
            state, hit = flush(state)
            if hit:
                return hit
            run = []
        try:
            state, changes = model.apply_profile(state, ContactProfile(**rec))
        except ScoringError:
            continue
        for c in changes:
            if c.kind == "stage" and c.to_value == "mql":
                return c.at, at
    if run:
        state, hit = flush(state)
        return hit
    return None


BANT = ("budget", "authority", "need", "timeline")
MEDDICC = ("metrics", "economic_buyer", "decision_criteria", "decision_process", "identify_pain",
           "champion", "competition")
REJECT_REASONS = ("no budget this year", "bad timing", "not the decision maker", "just researching",
                  "already under contract with a competitor")
DISQUALIFY_REASONS = {"student": "student", "job_seeker": "job seeker", "competitor": "competitor"}


def _sales(p: Persona, cid: str, mql: tuple[int, int], end: int, rnd: random.Random,
           frameworks: list[tuple[str, tuple[str, ...], int]]) -> list[dict]:
    """What sales does with one MQL; updates later than `end` have not happened yet.

    Qualified MQLs: some criteria of a framework first (fewer than the rules require, so the contact
    stays an MQL), then either every criterion (→ SQL by the rules) or an explicit accept; later,
    sometimes, won or lost."""
    r = rnd.random
    mql_at, seen_at = mql
    if r() >= p.worked:
        return []
    t = max(mql_at, seen_at) + int(HOUR_MS * (2 + rnd.expovariate(1 / 40)))
    out: list[dict] = []
    n = 0

    def upd(action, t, framework=None, criteria=None, reason=""):
        nonlocal n
        n += 1
        out.append({"update_id": f"{cid}-q{n}", "contact_id": cid, "action": action, "framework": framework,
                    "criteria": criteria or {}, "occurred_at": int(t), "reason": reason})

    x = r()
    q, rej, _ = p.outcomes
    if x < q:
        if frameworks:
            framework, names, min_met = frameworks[0] if len(frameworks) == 1 or r() < 0.7 else frameworks[1]
            partial = {c: r() < 0.5 for c in names}
            for c in names:  # stay below the bar: this answer alone must not qualify
                if sum(partial.values()) < min_met:
                    break
                partial[c] = False
            upd("criteria", t, framework, partial)
            t += int(DAY_MS * (1 + r() * 9))
        if frameworks and r() < 0.6:
            upd("criteria", t, framework, {c: True for c in names})
        else:
            upd("accept", t, reason="discovery call done")
        t += int(DAY_MS * (7 + rnd.expovariate(1 / 20)))
        y = r()
        if y < p.won:
            upd("won", t, reason="closed won")
        elif y < p.won + 0.15:
            upd("disqualify", t, reason="lost: no decision")
    elif x < q + rej:
        upd("reject", t, reason=REJECT_REASONS[int(r() * len(REJECT_REASONS))])
    else:
        upd("disqualify", t, reason=DISQUALIFY_REASONS.get(p.name, "not a fit"))
    return [u for u in out if u["occurred_at"] <= end]


# ============================================================================ outputs

def write_file(sim: Simulation, cfg: SimConfig, path: Path, codec: str = "null", *, show_progress: bool = True) -> None:
    """The records as an Avro object container file of `container_schema()`, in delivery order.

    Encoded by `tools.avrofile` (compiled encoders, cached repeated values): byte for byte what
    `fastavro.writer` writes, several times faster."""
    from tools import avrofile

    schema = container_schema()
    encoders = avrofile.compile_tagged(schema, "kind", nocache=("event_id", "update_id", "email"))
    by_kind = [encoders[k] for k in KINDS]
    recs = sim.records
    marker = blake2b(f"leadpulse-sim|{cfg.seed}|{sim.end_ms}".encode(), digest_size=16).digest()
    tmp = path.with_name(path.name + ".tmp")
    try:
        with progress(f"writing {path.name}", len(recs), enabled=show_progress) as advance, open(tmp, "wb") as fh:
            avrofile.write(fh, schema, (by_kind[kind](rec) for _, _, kind, rec in recs), metadata=sim.metadata(cfg),
                           sync_marker=marker, codec=codec, on_block=advance)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_file_fastavro(sim: Simulation, cfg: SimConfig, path: Path, codec: str = "null") -> None:
    """The same file through `fastavro.writer` (the reference the fast writer is tested against)."""
    import fastavro

    names = [f"{NAMESPACE}.{RECORD_NAMES[k]}" for k in KINDS]
    rows = []
    for _, _, kind, rec in sim.records:
        row = {"kind": KINDS[kind], "behaviour": None, "profile": None, "qualification": None}
        row[KINDS[kind]] = (names[kind], rec)
        rows.append(row)
    marker = blake2b(f"leadpulse-sim|{cfg.seed}|{sim.end_ms}".encode(), digest_size=16).digest()
    with open(path, "wb") as fh:
        fastavro.writer(fh, container_schema(), rows, codec=codec, sync_marker=marker, metadata=sim.metadata(cfg))


async def produce(sim: Simulation, bootstrap: str, rate: float, *, show_progress: bool = True) -> dict:
    """Send the records to their topics in delivery order, keyed by contact, `rate` records/s (0: max)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from streams.admin import ensure_topics
    from streams.codec import RegistryError, codec_from_settings
    from tools.common import settings as load_settings

    s = dataclasses.replace(load_settings(), bootstrap_servers=bootstrap)
    try:
        await asyncio.wait_for(ensure_topics(s, timeout_s=15), 30)
    except (KafkaError, OSError, asyncio.TimeoutError) as exc:
        raise CliError(f"cannot create the topics on Kafka at {bootstrap}: {exc or type(exc).__name__}") from None
    codec = codec_from_settings(s)
    topics = (s.events_topic, s.profiles_topic, s.qualifications_topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, enable_idempotence=True,
                                max_batch_size=256 * 1024, request_timeout_ms=30_000, **s.kafka_client_kwargs())
    try:
        await asyncio.wait_for(producer.start(), 30)
    except (KafkaError, OSError, asyncio.TimeoutError) as exc:
        raise CliError(f"cannot connect a producer to Kafka at {bootstrap}: {exc or type(exc).__name__}") from None
    sent = Counter()
    t0 = time.monotonic()
    try:
        with progress("sending to Kafka", len(sim.records), enabled=show_progress) as advance:
            pending = []
            for i, (_, _, kind, rec) in enumerate(sim.records):
                value = codec.encode(RECORD_NAMES[KINDS[kind]], rec, topics[kind])
                key = rec["contact_id"] or f"anon:{rec['anonymous_id']}"  # an anonymous visitor is keyed by its id
                pending.append(await producer.send(topics[kind], key=key.encode(), value=value))
                sent[topics[kind]] += 1
                if rate > 0:
                    ahead = (i + 1) / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                if len(pending) >= 5_000 or rate > 0 and len(pending) >= max(1, int(rate)):
                    await asyncio.gather(*pending)
                    advance(len(pending))
                    pending = []
            if pending:
                await asyncio.gather(*pending)
                advance(len(pending))
            await producer.flush()
    except KafkaError as exc:
        raise CliError(f"sending to Kafka at {bootstrap} failed: {exc}") from None
    except RegistryError as exc:
        raise CliError(str(exc)) from None
    finally:
        await producer.stop()
    return {"bootstrap": bootstrap, "topics": dict(sent), "seconds": round(time.monotonic() - t0, 3)}


# ============================================================================ CLI

def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "simulate", parents=[common], help="generate a realistic synthetic funnel (to Kafka or an Avro file)",
        description=__doc__,
        formatter_class=_formatter(),
        epilog="examples:\n  leadpulse simulate --contacts 2000 --days 60 --seed 7 --out funnel.avro\n"
               "  leadpulse simulate --contacts 200 --rate 50              # to the broker of KAFKA_BOOTSTRAP_SERVERS\n"
               "  leadpulse simulate --events 1000000 --seed 1 --out 1m.avro --end 2025-01-01",
    )
    p.add_argument("--contacts", type=int, default=1000, metavar="N", help="contacts to simulate (default 1000)")
    p.add_argument("--events", type=int, default=None, metavar="N",
                   help="instead of --contacts: add contacts until N behaviour events")
    p.add_argument("--days", type=float, default=90.0, help="length of the window of event times (default 90)")
    p.add_argument("--end", default=None, metavar="INSTANT",
                   help="end of the window, ISO 8601 or epoch ms (default: now, rounded down to the hour)")
    p.add_argument("--bots", type=float, default=0.03, metavar="FRACTION", help="fraction of contacts that are bots (default 0.03)")
    p.add_argument("--duplicates", type=float, default=0.01, metavar="FRACTION",
                   help="fraction of behaviour events delivered twice (default 0.01)")
    p.add_argument("--out-of-order", type=float, default=0.02, metavar="FRACTION",
                   help="fraction of behaviour events delivered after later events (default 0.02)")
    p.add_argument("--anonymous", type=float, default=0.3, metavar="FRACTION",
                   help="fraction of people who browse anonymously until their first form (default 0.3)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1); same options → same output")
    p.add_argument("--prefix", default=None, help="contact id prefix (default s<seed>-)")
    p.add_argument("--rules", default=None, metavar="FILE",
                   help="rules sales works with, to decide who becomes an MQL (default: $LEADPULSE_RULES or the built-in rules)")
    out = p.add_argument_group("output (Kafka unless --out)")
    out.add_argument("--out", default=None, metavar="FILE", help="write an Avro object container file instead of sending to Kafka")
    out.add_argument("--codec", default="null", choices=("null", "deflate"), help="Avro file block codec (default null)")
    out.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                     help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS); topics from LEADPULSE_*_TOPIC")
    out.add_argument("--rate", type=float, default=0.0, metavar="PER_S", help="records per second to Kafka (default 0: as fast as possible)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def _formatter():
    import argparse

    return argparse.RawDescriptionHelpFormatter


def run(args) -> int:
    from tools.common import (bootstrap_arg, check_kafka, console, load_rules_arg, no_gc, parse_instant, print_json,
                              writable_path)

    cfg = SimConfig(contacts=args.contacts, events=args.events, days=args.days, bots=args.bots,
                    duplicates=args.duplicates, out_of_order=args.out_of_order, anonymous=args.anonymous, seed=args.seed,
                    end_ms=parse_instant(args.end, "--end") if args.end else None, prefix=args.prefix,
                    rules_spec=args.rules)
    cfg.check()
    if args.rate < 0:
        raise CliError("--rate must be >= 0")
    load_rules_arg(cfg.rules_spec)  # a bad rules file is reported before anything else is tried
    if args.out:
        path = writable_path(args.out, "output file")
        bootstrap = None
    else:
        path = None
        bootstrap = bootstrap_arg(args.bootstrap)
        check_kafka(bootstrap)
    t0 = time.perf_counter()
    with no_gc():
        sim = simulate(cfg)
    gen_s = time.perf_counter() - t0
    stats = dict(sim.stats)
    stats["generation_seconds"] = round(gen_s, 3)
    stats["behaviour_events_per_s"] = round(stats["behaviour_deliveries"] / gen_s) if gen_s > 0 else None
    if path is not None:
        t1 = time.perf_counter()
        with no_gc():
            write_file(sim, cfg, path, args.codec)
        stats["write_seconds"] = round(time.perf_counter() - t1, 3)
        stats["out"] = str(path)
        stats["bytes"] = path.stat().st_size
    else:
        stats["kafka"] = asyncio.run(produce(sim, bootstrap, args.rate))
    if args.json:
        print_json(stats)
        return 0
    out = console()
    where = f"{path} ({stats['bytes']:,} bytes)" if path else \
        f"Kafka {bootstrap}: " + ", ".join(f"{t} {n:,}" for t, n in stats["kafka"]["topics"].items())
    out.print(f"simulated {stats['contacts']:,} contacts ({stats['bots']:,} bots), {stats['start']} → {stats['end']}, seed {cfg.seed}")
    out.print(f"  {stats['behaviour_events']:,} behaviour events + {stats['duplicates']:,} duplicate deliveries, "
              f"{stats['out_of_order']:,} delivered out of order")
    out.print(f"  {stats['profiles']:,} profiles, {stats['mqls_under_simulation_rules']:,} MQLs under rules "
              f"{stats['rules_version']}, {stats['qualifications']:,} sales updates "
              f"({', '.join(f'{k} {v}' for k, v in stats['sales_actions'].items()) or 'none'})")
    out.print("  personas: " + ", ".join(f"{k} {v}" for k, v in stats["personas"].items()))
    out.print(f"  {stats['anonymous_visitors']:,} browsed anonymously first, {stats['identified_by_a_form']:,} of them "
              f"identified by a form (the event carries both ids)")
    out.print(f"  generated in {gen_s:.2f} s ({stats['behaviour_events_per_s'] or 0:,} events/s) → {where}")
    return 0
