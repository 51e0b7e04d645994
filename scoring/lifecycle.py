"""Lifecycle stages and temperatures: the explicit transition table and the hysteresis rule.

Kept apart from the arithmetic so that the legal moves can be read (and reviewed by sales
ops) in one place.
"""

from __future__ import annotations

from .errors import IllegalTransition
from .rules import TemperatureRules

LEAD, MQL, SQL, CUSTOMER, RECYCLED, DISQUALIFIED = "lead", "mql", "sql", "customer", "recycled", "disqualified"
STAGES: tuple[str, ...] = (LEAD, MQL, SQL, CUSTOMER, RECYCLED, DISQUALIFIED)
TERMINAL = frozenset({CUSTOMER, DISQUALIFIED})

COLD, WARM, HOT = "cold", "warm", "hot"
TEMPERATURES: tuple[str, ...] = (COLD, WARM, HOT)

#: (stage, trigger) -> new stage.  Triggers: "score" (the model: score and grade reach the MQL
#: bar), "criteria" (a qualification framework is complete), and the sales actions.
#: Anything absent is illegal.  customer and disqualified are terminal: a disqualified
#: contact who comes back must be re-created as a new contact (after erasure), by design,
#: so that a disqualification is never undone silently by marketing automation.
TRANSITIONS: dict[tuple[str, str], str] = {
    (LEAD, "score"): MQL,
    (RECYCLED, "score"): MQL,
    (MQL, "criteria"): SQL,
    (MQL, "accept"): SQL,
    (MQL, "reject"): RECYCLED,
    (SQL, "reject"): RECYCLED,
    (SQL, "won"): CUSTOMER,
    (LEAD, "disqualify"): DISQUALIFIED,
    (MQL, "disqualify"): DISQUALIFIED,
    (SQL, "disqualify"): DISQUALIFIED,
    (RECYCLED, "disqualify"): DISQUALIFIED,
}

#: Where each trigger aims, to name the target in IllegalTransition.
TRIGGER_TARGET = {"score": MQL, "criteria": SQL, "accept": SQL, "reject": RECYCLED, "won": CUSTOMER,
                  "disqualify": DISQUALIFIED}


def transition(stage: str, trigger: str) -> str:
    """The stage after ``trigger``, or ``IllegalTransition``."""
    try:
        return TRANSITIONS[(stage, trigger)]
    except KeyError:
        raise IllegalTransition(stage, TRIGGER_TARGET.get(trigger, "?"), trigger) from None


def is_legal(stage: str, trigger: str) -> bool:
    return (stage, trigger) in TRANSITIONS


def next_temperature(current: str, score: float, t: TemperatureRules) -> str:
    """Hysteresis: heat at >= warm / >= hot; cool only below warm - h / hot - h."""
    h = t.hysteresis
    if current == HOT:
        if score >= t.hot - h:
            return HOT
        return WARM if score >= t.warm - h else COLD
    if current == WARM:
        if score >= t.hot:
            return HOT
        return WARM if score >= t.warm - h else COLD
    if score >= t.hot:
        return HOT
    return WARM if score >= t.warm else COLD


def temperature_band(current: str, t: TemperatureRules) -> tuple[float, float]:
    """[lo, hi): the scores for which ``current`` does not change."""
    h = t.hysteresis
    if current == HOT:
        return t.hot - h, float("inf")
    if current == WARM:
        return t.warm - h, t.hot
    return float("-inf"), t.warm
