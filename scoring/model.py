"""``ScoringModel``: the pure, deterministic facade the Faust agents call.

Time is event time only.  Each contact has its own clock ``as_of`` = the latest of its event
times, profile/qualification times and ``advance`` calls; everything is evaluated at that
clock, never at the wall clock, so a replay or a backtest reproduces live results (and the
same deterministic change ids).  Between two inputs the score is a single exponential, so
the instant at which decay alone crosses a threshold is known exactly: ``advance`` (timer)
and the next input both emit such a change at that exact instant, with no cause.

Path dependence, by design: temperature has hysteresis and stages are sticky, so they
depend on the order in which a contact's inputs are applied (Kafka partition order, which a
replay reproduces).  Scores, engagement sums and explanations do not depend on that order.
``apply_events`` is exactly a fold of ``apply_event`` over the list, so the way records are
batched never changes a result.

States are never mutated in place unless ``inplace=True`` is passed to ``apply_events``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from collections.abc import Iterable, Sequence
from hashlib import blake2b

from .engagement import Engagement, Memo
from .errors import InvalidEvent, ScoringError
from .events import ACTIONS, DAY_MS, BehaviourEvent, ContactProfile, QualificationUpdate, check_qualification_criteria
from .accounts import Membership, domain_account
from .fit import buying_role, company_domain, grade_at_least, grade_for, score_fit
from .lifecycle import LEAD, MQL, RECYCLED, SQL, TEMPERATURES, next_temperature, temperature_band, transition
from .outputs import LifecycleChange, ScoreSnapshot, change_id
from .rules import GRADES, Rules, default_rules
from .state import ContactState, pack, unpack

_INF = float("inf")
#: Hot-path thresholds are widened by this much so float rounding can only cause a harmless
#: extra exact evaluation, never a missed one.
_EPS = 1e-9
_MAX_TIME = 1 << 62


_B2_8 = blake2b(digest_size=8)  # copying a ready state is ~1/3 cheaper than the constructor


SCORE_TOLERANCE = 1e-9  # points


def event_hash(event_id: str) -> bytes:
    """8-byte id hash kept in the dedup memory (blake2b: stable across processes/versions)."""
    h = _B2_8.copy()
    h.update(event_id.encode())
    return h.digest()


class ScoringModel:
    """Scores contacts with one immutable set of rules."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules if rules is not None else default_rules()
        self.version = self.rules.version
        self._eng = Engagement(self.rules)
        # A score within float rounding of a threshold has reached it: one 30-point event evaluated
        # at its own instant can come out as 29.999999999999996 through the reference-frame sums.
        t = self.rules.temperature
        self._temp = replace(t, warm=t.warm - SCORE_TOLERANCE, hot=t.hot - SCORE_TOLERANCE)
        self._mql = self.rules.mql_min_score - SCORE_TOLERANCE
        self._min_grade = self.rules.mql_min_grade
        self._frameworks = self.rules.frameworks
        self._fw_criteria = self.rules.framework_criteria()
        self._fw_index = {n: {c: i for i, c in enumerate(f.criteria)} for n, f in self._frameworks.items()}
        self._tag = int.from_bytes(blake2b(self.version.encode(), digest_size=4).digest(), "little")
        self._inv_h = self._eng.inv_h
        self._cap = self._eng.total_cap
        self._tband = {t: temperature_band(t, self._temp) for t in TEMPERATURES}
        self._grade_ok = frozenset(g for g in GRADES if grade_at_least(g, self._min_grade))

    # ================================================================ behaviour events
    def apply_event(self, state: ContactState | None, event: BehaviourEvent) -> tuple[ContactState, list[LifecycleChange]]:
        """Apply one event at the contact's clock max(state.as_of, event.occurred_at).

        A duplicate event id returns the very same state and no change.  Raises
        ``InvalidEvent`` (state untouched) for an unknown type, an empty id, another contact,
        or an event older than the late tolerance.  Future timestamps: see ``validate_event``.
        """
        if state is not None:
            t = event.occurred_at
            if isinstance(t, int) and t >= state.floor and event.event_id and event_hash(event.event_id) in state.seen:
                return state, []
        return self.apply_events(state, (event,))

    def apply_events(
        self,
        state: ContactState | None,
        events: Sequence[BehaviourEvent] | Iterable[BehaviourEvent],
        *,
        rejected: list[tuple[BehaviourEvent, InvalidEvent]] | None = None,
        inplace: bool = False,
    ) -> tuple[ContactState | None, list[LifecycleChange]]:
        """Apply a batch of one contact's events, in the given (partition) order.

        Same result as folding ``apply_event`` over ``events``.  Invalid events: with
        ``rejected`` (a list), they are skipped and appended as ``(event, error)``; without
        it the first one raises and ``state`` is untouched (unless ``inplace``).
        ``inplace=True`` mutates and returns ``state`` itself (for a state the caller owns,
        e.g. one just decoded from the table): saves a copy per batch.

        This is the hot path.  Locals mirror the state's scalars; they are written back
        before any slow call (maintenance, exact evaluation) and reloaded after it.
        """
        if events.__class__ is not list and events.__class__ is not tuple:
            events = list(events)
        # C doubles when compiled (Cython reads these annotations); no cost in pure Python.
        total: float
        d: float
        w: float
        x: float
        e: float
        lo: float
        hi: float
        inv_h: float
        p: float
        cap: float
        a: float
        y: float
        S: float
        D: float
        if not events:
            return state, []
        if state is None:
            st = self._new_state(events[0].contact_id)
        else:
            st = state if inplace else state.copy()
            if st.lo is None:
                self._refresh(st)
        changes: list[LifecycleChange] = []
        eng = self._eng
        plans = eng.plans
        inv_h = eng.inv_h
        tol = eng.tol
        seen = st.seen
        acc = st.acc
        buckets = st.buckets
        cid = st.contact_id
        total = st.total
        ref = st.ref
        as_of = st.as_of
        wm = st.wm
        floor = st.floor
        next_maint = st.next_maint
        lo = st.lo
        hi = st.hi
        d = 2.0 ** ((ref - as_of) * inv_h)
        b2copy = _B2_8.copy
        day_ms = DAY_MS
        tuple_ = tuple
        memo_ = Memo
        for ev in events:
            t = ev.occurred_at
            c = plans.get(ev.event_type)
            eid = ev.event_id
            if c is None or t < floor or not eid or ev.contact_id != cid:
                err = self._invalid(ev, cid, floor)
                if rejected is None:
                    st.total, st.as_of, st.wm, st.floor = total, as_of, wm, floor
                    raise err
                rejected.append((ev, err))
                continue
            hh = b2copy()
            hh.update(eid.encode())
            h = hh.digest()
            if h in seen:
                continue
            if t > wm:
                wm = t
                if t >= next_maint:  # event time entered a new day: forget / fold / rebase
                    st.wm = t
                    st.total = total
                    eng.maintain(st)
                    total = st.total
                    ref = st.ref
                    floor = st.floor
                    next_maint = st.next_maint
                    d = 2.0 ** ((ref - as_of) * inv_h) if as_of >= ref else 1.0  # else: t > as_of sets it
                else:
                    floor = t - tol
                    if floor < 1:
                        floor = 1
            seen[h] = t // day_ms
            if c.__class__ is not tuple_:
                c = c[ev.properties.get(c.prop)] if c.__class__ is memo_ else c.resolve(ev.properties)
            if t > as_of:
                d = 2.0 ** ((ref - t) * inv_h)
                e = total * d
                if e < lo or e >= hi:  # decay alone crossed a threshold before this event
                    st.total, st.as_of, st.wm, st.floor = total, as_of, wm, floor
                    self._advance(st, t, changes)
                    lo = st.lo
                    hi = st.hi
                as_of = t
                w = 1.0 / d
            elif t == as_of:
                w = 1.0 / d
            else:
                w = 2.0 ** ((t - ref) * inv_h)
            for rk, p, win, cap in c:
                x = p * w
                if win:
                    bk = (t // win) << 32 | rk
                    old = buckets.get(bk)
                    if old is None:
                        a = p if p >= 0.0 else -p
                        y = x if a <= cap else x * cap / a
                        buckets[bk] = (p, x, y)
                        total += y
                    else:
                        S = old[0] + p
                        D = old[1] + x
                        a = S if S >= 0.0 else -S
                        y = D if a <= cap else D * cap / a
                        buckets[bk] = (S, D, y)
                        total += y - old[2]
                else:
                    acc[rk] = acc.get(rk, 0.0) + x
                    total += x
            e = total * d
            if e < lo or e >= hi:
                st.total, st.as_of, st.wm, st.floor = total, as_of, wm, floor
                self._settle(st, as_of, eid, changes)
                lo = st.lo
                hi = st.hi
        st.total = total
        st.as_of = as_of
        st.wm = wm
        st.floor = floor
        return st, changes

    def _invalid(self, ev: BehaviourEvent, cid: str, floor: int) -> InvalidEvent:
        if ev.event_type not in self._eng.plans:
            return InvalidEvent("event_type", f"unknown event type {ev.event_type!r}")
        if not ev.event_id:
            return InvalidEvent("event_id", "empty")
        if not ev.contact_id:
            return InvalidEvent("contact_id", "empty")
        if ev.contact_id != cid:
            return InvalidEvent("contact_id", f"{ev.contact_id!r} does not match the state's contact {cid!r}")
        if ev.occurred_at <= 0:
            return InvalidEvent("occurred_at", "must be > 0 (epoch milliseconds)")
        return InvalidEvent("occurred_at", "older than late tolerance")

    # ================================================================ profile & sales
    def apply_inputs(
        self,
        state: ContactState | None,
        inputs: Iterable[BehaviourEvent | ContactProfile | QualificationUpdate],
        *,
        rejected: list | None = None,
        inplace: bool = False,
    ) -> tuple[ContactState | None, list[LifecycleChange]]:
        """A contact's inputs of every kind, in arrival order: each run of behaviour events goes to
        ``apply_events`` in one call, profiles and qualifications one by one. The shared path of the
        agents and the backtest, so both give the same lifecycle for the same input.

        With ``rejected`` (a list) refused inputs are skipped and appended as ``(input, error)``;
        without it the first refusal raises."""
        changes: list[LifecycleChange] = []
        run: list[BehaviourEvent] = []
        for item in inputs:
            if type(item) is BehaviourEvent:
                run.append(item)
                continue
            if run:
                state, more = self.apply_events(state, run, rejected=rejected, inplace=inplace)
                changes.extend(more)
                run = []
            try:
                if type(item) is ContactProfile:
                    state, more = self.apply_profile(state, item)
                elif type(item) is Membership:
                    state, more = self.apply_membership(state, item)
                else:
                    state, more = self.apply_qualification(state, item)
            except ScoringError as exc:
                if rejected is None:
                    raise
                rejected.append((item, exc))
                continue
            changes.extend(more)
        if run:
            state, more = self.apply_events(state, run, rejected=rejected, inplace=inplace)
            if not changes:  # only events (the usual case): their changes are all the changes
                return state, more
            changes.extend(more)
        return state, changes

    def apply_profile(self, state: ContactState | None, profile: ContactProfile) -> tuple[ContactState, list[LifecycleChange]]:
        """Recompute FIT from a profile; a profile older than the last applied one is ignored."""
        if state is not None:
            self._check_contact(state, profile.contact_id)
            if profile.updated_at < state.profile_at:
                return state, []
        st = self._working_copy(state, profile.contact_id)
        if isinstance(profile.updated_at, bool) or not isinstance(profile.updated_at, int) or profile.updated_at <= 0:
            raise InvalidEvent("updated_at", "must be > 0 (epoch milliseconds)")
        changes: list[LifecycleChange] = []
        at = self._move_clock(st, profile.updated_at, changes)
        fit = score_fit(profile, self.rules)
        st.fit = fit.score
        st.grade = fit.grade
        st.profile_at = profile.updated_at
        st.role = buying_role(profile, self.rules)
        if not st.account_at:  # no membership: the company of a professional e-mail address
            domain = company_domain(profile, self.rules)
            st.account = domain_account(domain) if domain else ""
        self._settle(st, at, f"profile@{profile.updated_at}", changes)
        return st, changes

    def apply_membership(self, state: ContactState | None, m: Membership) -> tuple[ContactState, list[LifecycleChange]]:
        """The contact's account from an account membership; an older one than the contact's newest is
        ignored. Leaving the account (``active`` false) leaves the contact without one. No lifecycle
        change: the account's own changes follow from the contact's share (``scoring.accounts``)."""
        if state is not None:
            self._check_contact(state, m.contact_id)
            if m.updated_at < state.account_at:
                return state, []
        st = self._working_copy(state, m.contact_id)
        if m.active:
            st.account = m.account
        elif st.account == m.account:
            st.account = ""
        st.account_at = m.updated_at
        return st, []

    def apply_qualification(self, state: ContactState | None, update: QualificationUpdate) -> tuple[ContactState, list[LifecycleChange]]:
        """Record BANT/MEDDICC answers and apply sales actions (accept/reject/disqualify/won).

        Raises ``IllegalTransition`` (state untouched) for a move the table forbids, e.g.
        "accept" on a lead (it must be an MQL) or "won" on anything but an SQL.
        """
        u = update
        if not u.update_id:
            raise InvalidEvent("update_id", "empty")
        if u.action not in ACTIONS:
            raise InvalidEvent("action", f"unknown action {u.action!r} (expected one of {', '.join(ACTIONS)})")
        check_qualification_criteria(u, self._fw_criteria)
        if isinstance(u.occurred_at, bool) or not isinstance(u.occurred_at, int) or u.occurred_at <= 0:
            raise InvalidEvent("occurred_at", "must be > 0 (epoch milliseconds)")
        h = event_hash("\0qualification:" + u.update_id)
        if state is not None:
            self._check_contact(state, u.contact_id)
            if h in state.seen:
                return state, []
        st = self._working_copy(state, u.contact_id)
        changes: list[LifecycleChange] = []
        at = self._move_clock(st, u.occurred_at, changes)
        if u.criteria:
            idx = self._fw_index[u.framework]  # type: ignore[index]
            mask = st.criteria.get(u.framework, 0)  # type: ignore[arg-type]
            for name, met in u.criteria.items():
                bit = 1 << idx[name]
                mask = mask | bit if met else mask & ~bit
            st.criteria[u.framework] = mask  # type: ignore[index]
        before = st.stage
        if u.action == "criteria":
            if st.stage == MQL and self._criteria_complete(st):
                st.stage = transition(MQL, "criteria")
        else:
            st.stage = transition(st.stage, u.action)  # raises IllegalTransition
            if st.stage == RECYCLED:
                st.criteria.clear()  # a rejection voids the earlier qualification
                st.armed = self._score(st, at) < self._mql
        if st.stage != before:
            self._emit(st, at, u.update_id, [("stage", before, st.stage)], changes)
        st.seen[h] = max(u.occurred_at, st.wm) // DAY_MS
        self._settle(st, at, u.update_id, changes)
        return st, changes

    # ================================================================ time
    def advance(self, state: ContactState, now_ms: int) -> tuple[ContactState, list[LifecycleChange]]:
        """Move the contact's clock to ``now_ms`` (a timer), emitting the changes decay caused
        on the way, each at its exact instant and without cause.  No-op if now <= as_of."""
        if now_ms <= state.as_of:
            return state, []
        st = state.copy()
        if st.lo is None:
            self._refresh(st)
        changes: list[LifecycleChange] = []
        self._advance(st, now_ms, changes)
        return st, changes

    def cool(self, state: ContactState, until_ms: int) -> tuple[ContactState, list[LifecycleChange]]:
        """The changes decay alone makes by ``until_ms`` (a cooling tick), each at its exact
        instant and without cause; the contact's clock moves to the last of those instants and
        no further (unchanged when there is none).

        Unlike ``advance``, the clock never moves to ``until_ms`` itself: a tick is the wall
        clock, not an input. The change announced is the very change (same instant, same id)
        that the contact's next input at or after that instant would make, so a replay of the
        inputs alone gives the same transitions — unless an input older than an announced
        instant arrives after the announcement (it is then applied at that instant)."""
        if until_ms <= state.as_of or self.next_cooling_at(state) is None:
            return state, []
        st = state.copy()
        if st.lo is None:
            self._refresh(st)
        changes: list[LifecycleChange] = []
        self._advance(st, until_ms, changes, move_clock=False)
        return (st, changes) if changes else (state, [])

    def next_cooling_at(self, state: ContactState) -> int | None:
        """The instant (epoch ms) at which decay alone will next change the temperature or
        stage — normally a cooling, through the hysteresis threshold — or None if never.

        It is the first millisecond at which the change holds: ``advance(state, t)`` emits
        it, ``advance(state, t - 1)`` does not.  (With negative engagement the score rises
        towards the fit score as penalties fade, so the change can be a warming.)
        """
        # Most contacts never change by decay alone: find that out on the state itself (read only),
        # and copy it only to step through the moves when there is one.  Quickest: the raw-space
        # band kept for the hot loop (``_band``) is open on the side the decay goes to.
        total = state.total
        if total == 0.0 or (state.lo == -_INF if total > 0 else state.hi == _INF):
            return None
        t = self._next_transition(state)
        if t is None:
            return None
        st = state.copy()
        for _ in range(16):
            st.as_of = t
            if self._moves(st, t):  # the decisions of _settle, without building the changes
                return t
            t = self._next_transition(st)
            if t is None:
                return None
        return None  # pragma: no cover - silent steps are at most one per stage

    def score_at(self, state: ContactState, at: float) -> float:
        """The score implied by the state's sums at ``at`` (no transitions; ``at`` may be a
        float, to check exact threshold crossings)."""
        st = state
        if st.lo is None:
            st = st.copy()
            self._refresh(st)
        return self._score(st, at)

    def snapshot(self, state: ContactState, at: int | None = None) -> ScoreSnapshot:
        """Score, temperature, stage and explanation at ``at`` (default: the contact's clock).
        A later ``at`` includes the changes decay causes until then (the state is not modified)."""
        st = state
        if st.lo is None:
            st = st.copy()
            self._refresh(st)
        if at is None:
            at = st.as_of
        elif at < st.as_of:
            raise ValueError(f"snapshot at {at} is before the contact's clock {st.as_of}")
        elif at > st.as_of:
            st = st.copy()
            self._advance(st, at, [])
        e, parts = self._eng.breakdown(st, at, {"fit": st.fit})
        return ScoreSnapshot(st.contact_id, at, st.fit + e, e, st.fit, st.grade, st.temperature, st.stage,
                             parts, self.version)

    def snapshot_fields(self, state: ContactState) -> dict:
        """``snapshot(state)`` as a dict of its fields, the numbers (explanation included) as floats:
        for a caller that serialises the snapshot at once.  The agent does that for every contact
        of every batch, and building the frozen value object costs more than computing it."""
        st = state
        if st.lo is None:
            st = st.copy()
            self._refresh(st)
        fit = st.fit
        e, parts = self._eng.breakdown(st, st.as_of, {"fit": float(fit)})  # the other parts are floats
        return {"contact_id": st.contact_id, "at": st.as_of, "score": float(fit + e), "engagement": float(e),
                "fit": float(fit), "grade": st.grade, "temperature": st.temperature, "stage": st.stage,
                "explanation": parts, "rules_version": self.version}

    def erase(self, contact_id: str, at: int) -> LifecycleChange:
        """The change to publish when a contact is erased (GDPR); the caller deletes the state."""
        if not contact_id:
            raise InvalidEvent("contact_id", "empty")
        return LifecycleChange(change_id(contact_id, "erasure", None, "erased", None, at), contact_id, "erasure",
                               None, "erased", at, None, 0.0, 0.0, 0.0, "", {}, self.version)

    # ================================================================ identity
    def merge(self, state: ContactState | None, other: ContactState, at: int, cause: str | None,
              contact_id: str | None = None) -> tuple[ContactState, list[LifecycleChange]]:
        """Fold ``other`` (an anonymous visitor or a merged duplicate) into ``state`` (the contact it
        turned out to be, or ``contact_id``'s new state), at the later of both clocks and ``at``.

        Exact: engagement sums, open cap windows (raw points and decayed sums) and the dedup memory
        are sums and a union, so the result scores as if every event of both had been the contact's
        from the start. Two limits, both beyond the late tolerance: a cap window that one side has
        already closed (folded) while the other still has events in it is capped per side, and an
        event the contact would have refused as too late still counts. The newer profile gives the
        fit; qualification answers are united; a lead takes the other's stage when that is further
        along. The changes the merge makes carry ``cause``; decay-only changes of ``state`` up to
        the merge instant come first, without cause."""
        if other.lo is None:
            other = other.copy()
            self._refresh(other)
        st = self._working_copy(state, contact_id or other.contact_id)
        changes: list[LifecycleChange] = []
        if isinstance(at, bool) or not isinstance(at, int) or at <= 0:
            raise InvalidEvent("at", "must be > 0 (epoch milliseconds)")
        T = max(at, other.as_of)
        self._move_clock(st, T, changes)
        T = st.as_of
        inv_h = self._inv_h
        ref = max(st.ref, other.ref)
        mine = 2.0 ** ((st.ref - ref) * inv_h)
        theirs = 2.0 ** ((other.ref - ref) * inv_h)
        acc = {k: v * mine for k, v in st.acc.items()}
        for k, v in other.acc.items():
            acc[k] = acc.get(k, 0.0) + v * theirs
        buckets = {k: (S, D * mine, 0.0) for k, (S, D, _) in st.buckets.items()}
        for k, (S, D, _) in other.buckets.items():
            old = buckets.get(k)
            buckets[k] = (S, D * theirs, 0.0) if old is None else (old[0] + S, old[1] + D * theirs, 0.0)
        st.acc, st.buckets, st.ref = acc, buckets, ref
        seen = {**st.seen, **other.seen}
        st.seen = dict(sorted(seen.items(), key=lambda kv: kv[1]))  # oldest first, as maintain() expects
        st.wm = max(st.wm, other.wm)
        if other.profile_at > st.profile_at:
            st.fit, st.grade, st.profile_at, st.role = other.fit, other.grade, other.profile_at, other.role
            if not st.account_at and not other.account_at:
                st.account = other.account
        if other.account_at > st.account_at or (not st.account and not st.account_at):
            st.account, st.account_at = other.account, other.account_at
        for name, mask in other.criteria.items():
            st.criteria[name] = st.criteria.get(name, 0) | mask
        self._eng.refresh(st)  # the windows' capped contributions, floor and maintenance instant
        st.total = self._eng.recompute_total(st)
        self._eng.maintain(st)  # windows the later watermark closes, ids it forgets
        moves = []
        if st.stage == LEAD and other.stage != LEAD:
            moves.append(("stage", LEAD, other.stage))
            st.stage, st.armed = other.stage, other.armed
        if st.stage == MQL and st.criteria and self._criteria_complete(st):  # the answers complete only together
            moves.append(("stage", MQL, SQL))
            st.stage = transition(MQL, "criteria")
        if moves:
            self._emit(st, T, cause, moves, changes)
        self._settle(st, T, cause, changes)
        return st, changes

    # ================================================================ persistence
    def encode_state(self, state: ContactState) -> bytes:
        """Compact binary form (versioned first byte) for the Faust table."""
        return pack(state, self._tag)

    def decode_state(self, data: bytes) -> ContactState:
        """Inverse of ``encode_state``: the decoded state is equal to the encoded one and gives
        bit-identical results (a table round trip between two batches changes nothing)."""
        st, tag = unpack(data)
        self._eng.refresh(st, tag == self._tag)
        self._band(st)
        return st

    # ================================================================ internals
    def _new_state(self, contact_id: str) -> ContactState:
        if not isinstance(contact_id, str) or not contact_id:
            raise InvalidEvent("contact_id", "empty")
        st = ContactState(contact_id)
        st.grade = grade_for(0.0, self.rules)
        self._band(st)
        return st

    def _working_copy(self, state: ContactState | None, contact_id: str) -> ContactState:
        """A copy of ``state`` to change (its caches filled), or a new state for ``contact_id``."""
        if state is None:
            return self._new_state(contact_id)
        st = state.copy()
        if st.lo is None:
            self._refresh(st)
        return st

    def _refresh(self, st: ContactState) -> None:
        self._eng.refresh(st)
        self._band(st)

    @staticmethod
    def _check_contact(state: ContactState, contact_id: str) -> None:
        if contact_id != state.contact_id:
            raise InvalidEvent("contact_id", f"{contact_id!r} does not match the state's contact {state.contact_id!r}")

    def _move_clock(self, st: ContactState, t: int, changes: list) -> int:
        if t > st.as_of:
            self._advance(st, t, changes)
        return st.as_of

    def _score(self, st: ContactState, at: float) -> float:
        e = st.total * 2.0 ** ((st.ref - at) * self._inv_h)
        return st.fit + (e if e < self._cap else self._cap)

    def _score_band(self, st: ContactState) -> tuple[float, float]:
        """[lo, hi): scores at which nothing happens to this contact."""
        lo, hi = self._tband[st.temperature]
        stage = st.stage
        if stage == RECYCLED and not st.armed:
            if self._mql > lo:
                lo = self._mql  # falling below the MQL bar re-arms a recycled contact
        elif (stage == LEAD or stage == RECYCLED) and st.grade in self._grade_ok:
            if self._mql < hi:
                hi = self._mql
        return lo, hi

    def _band(self, st: ContactState) -> None:
        """The same band in raw-engagement space, slightly widened, for the hot loop."""
        lo, hi = self._score_band(st)
        f = st.fit
        cap = self._cap
        if lo == -_INF:
            st.lo = -_INF
        else:
            x = lo - f
            st.lo = _INF if cap < x else x + _EPS * (x if x > 1.0 else -x if x < -1.0 else 1.0)
        if hi == _INF:
            st.hi = _INF
        else:
            x = hi - f
            st.hi = _INF if cap < x else x - _EPS * (x if x > 1.0 else -x if x < -1.0 else 1.0)

    def _criteria_complete(self, st: ContactState) -> bool:
        fws = self._frameworks
        return any(name in fws and mask.bit_count() >= fws[name].min_met for name, mask in st.criteria.items())

    def _settle(self, st: ContactState, at: int, cause: str | None, changes: list) -> None:
        """Exact evaluation at ``at``: temperature (hysteresis) and score-driven stage moves."""
        moves = self._moves(st, at)
        if moves:
            self._emit(st, at, cause, moves, changes)
        self._band(st)

    def _moves(self, st: ContactState, at: int) -> list | None:
        """Make the temperature and stage moves due at ``at`` on ``st``; return them as (kind, from,
        to), or None (re-arming a recycled contact is no move).  Only scalars of ``st`` change.

        Same decisions as ``lifecycle.next_temperature`` and the transition table, with the
        thresholds precomputed (this runs for every change, on the hot path)."""
        e = st.total * 2.0 ** ((st.ref - at) * self._inv_h)
        s = st.fit + (e if e < self._cap else self._cap)
        emitted = None
        temp = st.temperature
        lo, hi = self._tband[temp]
        if s < lo or s >= hi:
            new = next_temperature(temp, s, self._temp)
            emitted = [("temperature", temp, new)]
            st.temperature = new
        stage = st.stage
        if stage == LEAD or stage == RECYCLED:
            mql = self._mql
            if stage == RECYCLED and not st.armed:
                if s < mql:
                    st.armed = True
            elif s >= mql and st.grade in self._grade_ok:
                st.stage = transition(stage, "score")
                st.armed = False
                if emitted is None:
                    emitted = []
                emitted.append(("stage", stage, MQL))
                if st.criteria and self._criteria_complete(st):  # qualified by sales while still a lead
                    st.stage = transition(MQL, "criteria")
                    emitted.append(("stage", MQL, SQL))
        return emitted

    def _emit(self, st: ContactState, at: int, cause: str | None, items: list, changes: list) -> None:
        # Changes emitted together share one explanation dict: treat it as read-only.
        e, parts = self._eng.breakdown(st, at, {"fit": st.fit})
        fit = st.fit
        score = fit + e
        cid = st.contact_id
        for kind, frm, to in items:
            changes.append(LifecycleChange(change_id(cid, kind, frm, to, cause, at), cid, kind, frm, to, at, cause,
                                           score, e, fit, st.grade, parts, self.version))

    def _advance(self, st: ContactState, now: int, changes: list, move_clock: bool = True) -> None:
        """The transitions decay alone makes up to `now`, each at its instant; then the clock moves
        to `now` (unless `move_clock` is false: a cooling tick, see `cool`)."""
        for _ in range(64):
            t = self._next_transition(st)
            if t is None or t > now:
                break
            st.as_of = t
            self._settle(st, t, None, changes)
        if move_clock and now > st.as_of:
            st.as_of = now

    def _next_transition(self, st: ContactState) -> int | None:
        """First integer instant > as_of at which the score leaves its band, by decay alone."""
        total = st.total
        if total == 0.0:
            return None
        lo, hi = self._score_band(st)
        if total > 0:  # decaying down towards the fit score: first instant below lo
            tx = None if lo == -_INF else self._eng.crossing_estimate(st, lo - st.fit)
            if tx is None:
                return None
            t = math.floor(tx) + 1
        else:  # penalties fading: rising towards the fit score, first instant at hi
            tx = None if hi == _INF else self._eng.crossing_estimate(st, hi - st.fit)
            if tx is None:
                return None
            t = math.ceil(tx)
        if t > _MAX_TIME:
            return None
        return self._first_outside(st, lo, hi, t)

    def _first_outside(self, st: ContactState, lo: float, hi: float, t: int) -> int:
        """The estimate ``t`` of ``_next_transition`` made exact (apart, so that the common "never"
        answer does not pay for the closure's cells)."""
        total = st.total
        f = st.fit
        ref = st.ref
        inv_h = self._inv_h
        cap = self._cap
        after = st.as_of
        if t <= after:
            t = after + 1

        def outside(x: int) -> bool:  # exactly the evaluation of _settle
            e = total * 2.0 ** ((ref - x) * inv_h)
            s = f + (e if e < cap else cap)
            return s < lo or s >= hi

        # The closed form is exact in reals; settle the last float ulp against the predicate
        # the evaluation itself uses, so advance(t) and advance(t - 1) agree with this answer.
        while t > after + 1 and outside(t - 1):
            t -= 1
        for _ in range(1000):
            if outside(t):
                return t
            t += 1
        raise ScoringError("threshold crossing did not converge")  # pragma: no cover
