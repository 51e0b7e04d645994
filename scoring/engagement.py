"""ENGAGEMENT: behaviour points with exact exponential decay in event time.

    engagement(T) = min(total_cap, sum_i points_i * 2 ** (-(T - t_i) / H))

Instead of keeping events, the state keeps, per rule, the decayed sum at a reference instant
``ref``:  adding an event at t adds ``p * 2 ** ((t - ref) / H)``; evaluating at T multiplies
by ``2 ** ((ref - T) / H)``.  Sums commute, so the result does not depend on arrival order
(up to float rounding) and the state does not grow with the number of events.  Because every
term decays at the same rate, the whole engagement is ONE exponential between events: its sign
never changes, it moves monotonically towards 0, and the instant it crosses a threshold has a
closed form (``crossing_estimate``).

Caps, exact and order independent: a capped rule keeps, per window of its cap (aligned on
the epoch, i.e. UTC days for "1d"), the raw points S and the decayed sum D of the window's
events; the window contributes ``D * min(1, cap / |S|)`` — every event of an over-full window
counts proportionally less.  Both S and D are sums, so arrival order does not matter.
Windows that no accepted event can reach any more (end <= watermark - late tolerance) are
folded into the rule's closed sum.

The total cap is applied at evaluation time (``min(total_cap, E)``); in explanations the
positive contributions are scaled down so that the parts still add up to the capped total.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import islice

from .events import DAY_MS, EVENT_TYPES
from .rules import Rules, rule_key

KEY_MASK = 0xFFFFFFFF
#: Rebase the reference instant when the watermark is this many half-lives past it (keeps
#: weights 2**((t-ref)/H) far from overflow and old sums from losing precision).
REBASE_HALF_LIVES = 32
MEMO_LIMIT = 4096


class Plan:
    """How one event type scores when property rules apply to it.

    A contribution is ``(rule_key, points, window_ms, cap_points)``; window 0 means uncapped.
    Results are memoised by the values of the properties the rules look at (URLs and asset
    types repeat a lot), so regexes run once per distinct value, not once per event.
    """

    __slots__ = ("props", "memo", "rules", "base")

    def __init__(self, base: tuple, rules: tuple) -> None:
        self.base = base
        self.rules = rules
        self.memo: dict = {}
        props: list[str] = []
        for r in rules:
            for prop, _ in r.match:
                if prop not in props:
                    props.append(prop)
        self.props = tuple(props)

    def resolve(self, properties: Mapping[str, str]) -> tuple:
        key = tuple([properties.get(p) for p in self.props])
        r = self.memo.get(key)
        if r is None:
            r = self.compute(properties)
            if len(self.memo) >= MEMO_LIMIT:
                self.memo.clear()
            self.memo[key] = r
        return r

    def compute(self, properties: Mapping[str, str]) -> tuple:
        matched = [r for r in self.rules if r.matches(properties)]
        out = [] if any(r.replace for r in matched) or not self.base[1] else [self.base]
        for r in matched:
            if r.points:
                out.append((rule_key(r.name), r.points, r.cap.window_ms if r.cap else 0,
                            r.cap.points if r.cap else 0.0))
        return tuple(out)


class Memo(dict):
    """Fast path of ``Plan`` when the rules of an event type look at a single property:
    property value -> contributions, filled on first use (``memo[properties.get(memo.prop)]``)."""

    __slots__ = ("prop", "plan")

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan
        self.prop = plan.props[0]

    def __missing__(self, value):
        r = self.plan.compute({} if value is None else {self.prop: value})
        if len(self) >= MEMO_LIMIT:
            self.clear()
        self[value] = r
        return r


class Engagement:
    """Rules compiled for the engagement arithmetic."""

    def __init__(self, rules: Rules) -> None:
        self.h_ms = rules.half_life_ms
        self.inv_h = 1.0 / self.h_ms
        self.tol = rules.late_tolerance_ms
        self.total_cap = rules.total_cap
        self.windows: dict[int, int] = {}
        self.caps: dict[int, float] = {}
        for et, cap in rules.caps.items():
            self.windows[rule_key(et)] = cap.window_ms
            self.caps[rule_key(et)] = cap.points
        for r in rules.rules:
            if r.cap:
                self.windows[rule_key(r.name)] = r.cap.window_ms
                self.caps[rule_key(r.name)] = r.cap.points
        #: event type -> contributions (a tuple) when no property rule applies, else a Memo
        #: (rules on one property) or a Plan (several properties).
        self.plans: dict[str, tuple | Memo | Plan] = {}
        for et in EVENT_TYPES:
            k = rule_key(et)
            cap = rules.caps.get(et)
            base = (k, rules.points.get(et, 0.0), cap.window_ms if cap else 0, cap.points if cap else 0.0)
            prules = tuple(r for r in rules.rules if r.event_type == et)
            if not prules:
                self.plans[et] = (base,) if base[1] else ()
            else:
                plan = Plan(base, prules)
                self.plans[et] = Memo(plan) if len(plan.props) == 1 else plan
        self.names = rules.rule_names()

    # -- state bookkeeping -----------------------------------------------------------------
    def refresh(self, st, same_rules: bool = True) -> None:
        """Recompute derived caches after decoding (bucket contributions, limits); the running
        total is kept bit-exact unless the state was computed under other rules."""
        buckets = st.buckets
        if buckets:
            caps = self.caps
            for k, (S, D, _) in buckets.items():  # values only: the dict's size does not change
                cap = caps.get(k & KEY_MASK)
                a = -S if S < 0 else S
                buckets[k] = (S, D, D if cap is None or a <= cap else D * cap / a)
        if st.wm:  # the limits maintain() keeps
            cut = st.wm - self.tol
            st.floor = cut if cut > 1 else 1
            st.next_maint = (cut // DAY_MS + 1) * DAY_MS + self.tol
        else:
            st.floor = 1
            st.next_maint = 0
        if not same_rules:
            st.total = self.recompute_total(st)

    @staticmethod
    def recompute_total(st) -> float:
        total = sum(st.acc.values())
        for v in st.buckets.values():
            total += v[2]
        return total

    def maintain(self, st) -> None:
        """Event time entered a new day: forget old ids, fold closed windows, maybe rebase."""
        wm = st.wm
        tol = self.tol
        cut = wm - tol
        cut_day = cut // DAY_MS
        seen = st.seen
        if seen:
            # Ids are (mostly) inserted in event-time order, so the old ones are at the front:
            # stop at the first one still needed.  A late id stuck behind a newer one goes
            # with it, at most one tolerance later: memory stays bounded, nothing needed is lost.
            n = 0
            for day in seen.values():
                if day >= cut_day:
                    break
                n += 1
            if n:
                if n == len(seen):
                    seen.clear()
                else:
                    for h in list(islice(seen, n)):
                        del seen[h]
        buckets = st.buckets
        acc = st.acc
        if buckets:  # fold the windows no accepted event can reach any more (the total is unchanged)
            windows = self.windows
            closed = [bk for bk in buckets if ((bk >> 32) + 1) * windows.get(bk & KEY_MASK, 0) <= cut]
            for bk in closed:
                k = bk & KEY_MASK
                acc[k] = acc.get(k, 0.0) + buckets.pop(bk)[2]
        if not acc and not buckets:
            st.ref = cut_day * DAY_MS
        elif (wm - st.ref) * self.inv_h > REBASE_HALF_LIVES:
            new_ref = cut_day * DAY_MS
            f = 2.0 ** ((st.ref - new_ref) * self.inv_h)
            for k in acc:
                acc[k] *= f
            for bk, (S, D, c) in buckets.items():
                buckets[bk] = (S, D * f, c * f)
            st.ref = new_ref
            st.total = self.recompute_total(st)  # also re-synchronises the running total (float drift)
        st.floor = cut if cut > 1 else 1
        st.next_maint = (cut_day + 1) * DAY_MS + tol

    # -- evaluation ------------------------------------------------------------------------
    def breakdown(self, st, T: float, out: dict | None = None) -> tuple[float, dict[str, float]]:
        """(capped engagement at T, rule name -> contribution) — parts sum to the total.

        Parts are added to ``out`` (a new dict by default) in rule-key order of the state."""
        d = 2.0 ** ((st.ref - T) * self.inv_h)
        per = st.acc  # read only, unless windows must be added in
        if st.buckets:
            per = per.copy()
            get = per.get
            for bk, v in st.buckets.items():
                k = bk & KEY_MASK
                per[k] = get(k, 0.0) + v[2]
        e = st.total * d
        names = self.names
        if out is None:
            out = {}
        if e > self.total_cap:
            pos = neg = 0.0
            for v in per.values():
                if v > 0:
                    pos += v
                else:
                    neg += v
            up = (self.total_cap - neg * d) / pos  # positives scaled so that the parts sum to the cap
            e = self.total_cap
            for k, v in per.items():
                if v:
                    out[names.get(k) or f"retired:{k:08x}"] = v * (up if v > 0 else d)
        else:
            for k, v in per.items():
                if v:
                    out[names.get(k) or f"retired:{k:08x}"] = v * d
        return e, out

    def crossing_estimate(self, st, level: float) -> float | None:
        """Real instant T at which raw(T) == level, if the decay ever gets there, else None."""
        total = st.total
        if total == 0.0 or level == 0.0 or (total > 0) != (level > 0):
            return None
        return st.ref + self.h_ms * math.log2(total / level)
