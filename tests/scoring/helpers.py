"""Builders and an independent, brute-force oracle of the engagement definition."""

from __future__ import annotations

import re
from collections import defaultdict

from scoring import BehaviourEvent, ContactProfile, QualificationUpdate, Rules

DAY = 86_400_000
HOUR = 3_600_000
T0 = 1_730_000_000_000 - (1_730_000_000_000 % DAY) + 9 * HOUR  # 09:00 UTC, a round day

_seq = [0]


def ev(event_type: str, t: int, cid: str = "c1", eid: str | None = None, **props: str) -> BehaviourEvent:
    if eid is None:
        _seq[0] += 1
        eid = f"evt-{_seq[0]}"
    return BehaviourEvent(eid, cid, event_type, t, props)


def profile(cid: str = "c1", t: int = T0, email: str | None = "jane@acme-corp.fr", title: str | None = "Marketing Manager",
            size: int | None = 30, industry: str | None = "Retail", country: str | None = "ES") -> ContactProfile:
    return ContactProfile(cid, email, title, "Acme", size, industry, country, t)


def qual(action: str, t: int, framework: str | None = None, cid: str = "c1", uid: str | None = None,
         **criteria: bool) -> QualificationUpdate:
    if uid is None:
        _seq[0] += 1
        uid = f"q-{_seq[0]}"
    return QualificationUpdate(uid, cid, action, framework, criteria, t)


def bant(t: int, **over: bool) -> QualificationUpdate:
    c = {"budget": True, "authority": True, "need": True, "timeline": True}
    c.update(over)
    return qual("criteria", t, "BANT", **c)


def contributions(rules: Rules, e: BehaviourEvent) -> list[tuple[str, float, object]]:
    """(rule name, points, cap) of one event, straight from the documented semantics."""
    matched = [
        r for r in rules.rules
        if r.event_type == e.event_type
        and all(prop in e.properties and re.search(rx.pattern, e.properties[prop]) for prop, rx in r.match)
    ]
    out = []
    if not any(r.replace for r in matched) and rules.points.get(e.event_type, 0):
        out.append((e.event_type, rules.points[e.event_type], rules.caps.get(e.event_type)))
    out += [(r.name, r.points, r.cap) for r in matched if r.points]
    return out


def oracle(rules: Rules, events: list[BehaviourEvent], at: int) -> tuple[float, dict[str, float]]:
    """Engagement at ``at`` and its parts, recomputed from scratch from every (distinct) event."""
    H = rules.half_life_days * DAY
    seen = set()
    windows: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
    caps = {}
    for e in events:
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        for name, p, cap in contributions(rules, e):
            key = (name, e.occurred_at // cap.window_ms if cap else None)
            caps[key] = cap
            windows[key][0] += p
            windows[key][1] += p * 2.0 ** (-(at - e.occurred_at) / H)
    parts: dict[str, float] = defaultdict(float)
    for key, (S, D) in windows.items():
        cap = caps[key]
        parts[key[0]] += D * min(1.0, cap.points / abs(S)) if cap else D
    total = sum(parts.values())
    if total > rules.total_cap:
        pos = sum(v for v in parts.values() if v > 0)
        neg = sum(v for v in parts.values() if v < 0)
        parts = {k: (v * (rules.total_cap - neg) / pos if v > 0 else v) for k, v in parts.items()}
        total = rules.total_cap
    return total, dict(parts)
