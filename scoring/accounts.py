"""ACCOUNTS (account-based marketing): companies scored from their contacts.

B2B deals are bought by committees: an account is hot when several of its people engage, and
marketing-qualified (MQA) when enough of the buying group does. A contact's *share* — its raw
engagement sum at its reference instant, its fit, role, temperature and stage — goes to its account
whenever it changes (the worker re-keys it by account). The account keeps the newest share of each
contact, so its engagement at any instant T is exactly

    engagement(T) = sum over its contacts of min(total_cap, total_c * 2 ** ((ref_c - T) / H))

— the sum of what each contact's own snapshot says at T — whatever order the shares arrive in.

Account temperature (with hysteresis, on the account's engagement), the buying-group coverage
(distinct roles among the engaged contacts) and the MQA stage (sticky, like MQL) are evaluated when
a share arrives, at the account's clock, and each change names the contact that caused it.

Pure: no Kafka. Shares travel as a small binary record; the account state is stored in binary too.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from .errors import InvalidEvent, ScoringError
from .events import _check_id, _check_time
from .lifecycle import COLD, STAGES, TEMPERATURES, next_temperature, temperature_band
from .outputs import change_id
from .rules import Rules
from .state import ContactState

DOMAIN_PREFIX = "domain:"
#: Where account states live in the contacts store (a contact id never starts with NUL).
ACCOUNT_KEY_PREFIX = "\0acct:"
UNQUALIFIED, MQA = "unqualified", "mqa"
ACCOUNT_STAGES = (UNQUALIFIED, MQA)
_TEMP_IDX = {t: i for i, t in enumerate(TEMPERATURES)}
_STAGE_IDX = {s: i for i, s in enumerate(STAGES)}


def account_key(account_id: str) -> str:
    """The store key (as text) of an account's state."""
    return ACCOUNT_KEY_PREFIX + account_id


def account_of_key(key: str) -> str | None:
    return key[len(ACCOUNT_KEY_PREFIX):] if key.startswith(ACCOUNT_KEY_PREFIX) else None


def domain_account(domain: str) -> str:
    return DOMAIN_PREFIX + domain


@dataclass(frozen=True, slots=True)
class Membership:
    """A contact belongs to an account from ``updated_at`` on (``active``), or left it. The newest
    membership of a contact wins; an account known by its web domain is ``domain:<domain>``, so the
    same company from several sources (and from e-mail addresses) is one account."""

    membership_id: str
    contact_id: str
    account: str
    active: bool
    updated_at: int


def membership(rec: Mapping, now_ms: int, max_future_ms: int) -> Membership:
    """An ``AccountMembership`` record as a Membership; ``InvalidEvent`` names the field."""
    for name in ("membership_id", "contact_id", "account_id"):
        _check_id(rec.get(name), name)
    t = rec.get("updated_at")
    _check_time(t, "updated_at", now_ms, max_future_ms)
    domain = rec.get("account_domain")
    account = domain_account(domain.strip().lower()) if isinstance(domain, str) and domain.strip() else rec["account_id"]
    return Membership(rec["membership_id"], rec["contact_id"], account, bool(rec.get("active", True)), t)


# --------------------------------------------------------------------------- shares

class Share(NamedTuple):
    """What one contact contributes to its account at ``at`` (its clock); ``removed``: it left the
    account (moved, merged away or erased). A tuple: one is decoded per contact change."""

    account: str
    contact_id: str
    at: int
    total: float
    ref: int
    fit: float
    role: str
    temperature: str
    stage: str
    removed: bool = False


_SHARE = struct.Struct("<BqqddBBBHHB")  # version, at, ref, total, fit, removed, temperature, stage, lens
_SHARE_VERSION = 1


def share_of(state: ContactState) -> Share:
    return Share(state.account, state.contact_id, state.as_of, state.total, state.ref, state.fit, state.role,
                 state.temperature, state.stage)


def removal(account: str, contact_id: str, at: int) -> Share:
    return Share(account, contact_id, at, 0.0, 0, 0.0, "", COLD, STAGES[0], True)


def pack_share(s: Share) -> bytes:
    """``s`` (or a ContactState: ``share_of`` it, without building the value) as bytes."""
    a, c, r = s.account.encode(), s.contact_id.encode(), s.role.encode()
    return b"".join((_SHARE.pack(_SHARE_VERSION, s.as_of if s.__class__ is ContactState else s.at, s.ref, s.total,
                                 s.fit, 1 if s.__class__ is Share and s.removed else 0, _TEMP_IDX[s.temperature],
                                 _STAGE_IDX[s.stage], len(a), len(c), len(r)), a, c, r))


def unpack_share(data: bytes) -> Share:
    try:
        v, at, ref, total, fit, removed, t, st, na, nc, nr = _SHARE.unpack_from(data)
        if v != _SHARE_VERSION:
            raise ValueError(f"unsupported share version {v}")
        o = _SHARE.size
        if len(data) != o + na + nc + nr:
            raise ValueError(f"{len(data)} bytes, expected {o + na + nc + nr}")
        a, c, r = data[o:o + na].decode(), data[o + na:o + na + nc].decode(), data[o + na + nc:].decode()
        return Share(a, c, at, total, ref, fit, r, TEMPERATURES[t], STAGES[st], bool(removed))
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as exc:
        raise ScoringError(f"corrupt account share: {exc}") from None


# --------------------------------------------------------------------------- accounts

class AccountState:
    """One account: its clock, temperature, stage, last published buying-group coverage, and the
    newest share of each member: contact -> [at, total, ref, fit, role, temperature, stage]."""

    __slots__ = ("account", "as_of", "temperature", "stage", "roles", "contacts")

    def __init__(self, account: str) -> None:
        self.account = account
        self.as_of = 0
        self.temperature = COLD
        self.stage = UNQUALIFIED
        self.roles: tuple[str, ...] = ()
        self.contacts: dict[str, list] = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AccountState) and all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class AccountChange:
    change_id: str
    account_id: str
    kind: str  # "temperature" | "stage" | "buying_group"
    from_value: str | None
    to_value: str
    at: int
    cause_contact_id: str | None
    engagement: float
    fit: float
    contacts: int
    engaged_contacts: int
    roles: tuple[str, ...]
    rules_version: str


class AccountModel:
    """The account arithmetic and rules (``[accounts]`` of the rules file)."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules.accounts
        self.version = rules.version
        self.inv_h = 1.0 / rules.half_life_ms
        self.cap = rules.total_cap
        self.role_order = {b.label: i for i, b in enumerate(self.rules.roles)}

    def contact_engagement(self, member: list, at: float) -> float:
        e = member[1] * 2.0 ** ((member[2] - at) * self.inv_h)
        return e if e < self.cap else self.cap

    def summary(self, st: AccountState, at: float) -> tuple[float, int, tuple[str, ...], float]:
        """(engagement, engaged contacts, roles covered by them, best contact fit) at ``at``."""
        total, engaged, roles, fit = 0.0, 0, set(), None
        floor = self.rules.engaged_min
        for m in st.contacts.values():
            e = self.contact_engagement(m, at)
            total += e
            if e >= floor:
                engaged += 1
                if m[4]:
                    roles.add(m[4])
            fit = m[3] if fit is None or m[3] > fit else fit
        ordered = tuple(sorted(roles, key=lambda r: (self.role_order.get(r, len(self.role_order)), r)))
        return total, engaged, ordered, 0.0 if fit is None else fit

    def apply(self, state: AccountState | None, account: str, shares: Iterable[Share]
              ) -> tuple[AccountState | None, list[AccountChange]]:
        """The account after these shares (None once no contact is left), and the changes they made.
        A share older than the one held for its contact changes nothing (a replay, or a reordering)."""
        st = state if state is not None else AccountState(account)
        changes: list[AccountChange] = []
        for s in shares:
            if s.account != account:
                raise InvalidEvent("account", f"{s.account!r} does not match the account {account!r}")
            held = st.contacts.get(s.contact_id)
            if held is not None and s.at < held[0]:
                continue
            if s.removed:
                if held is None:
                    continue
                del st.contacts[s.contact_id]
            else:
                st.contacts[s.contact_id] = [s.at, s.total, s.ref, s.fit, s.role, s.temperature, s.stage]
            if s.at > st.as_of:
                st.as_of = s.at
            self._settle(st, st.as_of, s.contact_id, changes)
        return (st if st.contacts else None), changes

    def _settle(self, st: AccountState, at: int, cause: str, changes: list) -> None:
        e, engaged, roles, fit = self.summary(st, at)
        r = self.rules
        moves = []
        t = next_temperature(st.temperature, e, r.temperature)
        if t != st.temperature:
            moves.append(("temperature", st.temperature, t))
            st.temperature = t
        if roles != st.roles:
            moves.append(("buying_group", ",".join(st.roles), ",".join(roles)))
            st.roles = roles
        if (st.stage != MQA and e >= r.mqa_min_engagement and engaged >= r.mqa_min_engaged_contacts
                and len(roles) >= r.mqa_min_roles):
            moves.append(("stage", st.stage, MQA))
            st.stage = MQA
        for kind, frm, to in moves:
            changes.append(AccountChange(change_id("account:" + st.account, kind, frm, to, cause, at), st.account, kind,
                                         frm, to, at, cause, e, fit, len(st.contacts), engaged, roles, self.version))

    # -- decay alone: the cooling timer ----------------------------------------------------------------
    def _moves_at(self, st: AccountState, at: float) -> bool:
        """Would ``_settle`` at ``at`` change the temperature or the buying-group coverage?"""
        e, _, roles, _ = self.summary(st, at)
        return roles != st.roles or next_temperature(st.temperature, e, self.rules.temperature) != st.temperature

    def next_check_at(self, st: AccountState | None, after: int | None = None) -> int | None:
        """An instant, later than ``after`` (default the account's clock), before which decay alone
        changes nothing — the exact one for the buying-group coverage, a lower bound for the
        temperature — or None when decay alone never changes anything. The worker's timer asks
        ``cool`` then, which finds the exact instant of a change or asks again later."""
        if st is None or not st.contacts:
            return None
        if st.temperature == COLD and not st.roles and all(m[1] >= 0 for m in st.contacts.values()):
            return None  # the usual account: nothing to lose, and nothing rises by decay alone
        t0 = st.as_of if after is None else after
        h = 1.0 / self.inv_h
        cands = []
        floor = self.rules.engaged_min
        if floor > 0:  # a role is lost when the last engaged contact with it falls below the floor
            last: dict[str, float] = {}
            for m in st.contacts.values():
                if m[4] in st.roles and m[1] > 0 and self.contact_engagement(m, t0) >= floor:
                    x = m[2] + h * math.log2(m[1] / floor)
                    last[m[4]] = max(last.get(m[4], x), x)
            if last:
                cands.append(min(last.values()))
        lo, hi = temperature_band(st.temperature, self.rules.temperature)
        pos = neg = 0.0
        for m in st.contacts.values():
            e = self.contact_engagement(m, t0)
            if e > 0:
                pos += e
            else:
                neg += e
        # E(t0 + d) >= pos * 2**(-d/H) + neg (capped terms shrink no faster; penalties only fade) ...
        if lo > -math.inf:
            cands.append(t0 if pos + neg < lo or lo - neg <= 0 else t0 + h * math.log2(pos / (lo - neg)))
        # ... and E(t0 + d) <= pos + neg * 2**(-d/H): it rises to hi only once the penalties have faded.
        if hi < math.inf and neg < 0 and pos >= hi and hi - pos < 0:
            cands.append(t0 + h * math.log2(neg / (hi - pos)))
        if not cands:
            return None
        t = max(t0 + 1, math.floor(min(cands)))
        return t if t < (1 << 62) else None

    def cool(self, st: AccountState, until: int) -> tuple[AccountState, list[AccountChange]]:
        """The changes decay alone makes by ``until`` (a cooling tick), each at the first millisecond it
        holds (bisection on the evaluation ``_settle`` makes), without cause; the account's clock moves
        to the last of those instants and no further. ``st`` is changed in place."""
        changes: list[AccountChange] = []
        for _ in range(16):
            if until <= st.as_of or not self._moves_at(st, until):
                break
            a, b = st.as_of, until  # nothing at a, a move at b: the first instant of it
            while b - a > 1:
                mid = (a + b) // 2
                if self._moves_at(st, mid):
                    b = mid
                else:
                    a = mid
            st.as_of = b
            self._settle(st, b, None, changes)
        return st, changes

    def snapshot(self, st: AccountState, at: int | None = None) -> dict:
        """The account at ``at`` (default: its clock; never before it) with every contributing contact."""
        at = st.as_of if at is None or at < st.as_of else at
        e, engaged, roles, fit = self.summary(st, at)
        # Decay since the account's last change, as the next cooling tick will see it.
        temperature = next_temperature(st.temperature, e, self.rules.temperature)
        members = sorted(
            ({"contact_id": cid, "engagement": self.contact_engagement(m, at), "fit": m[3], "role": m[4] or None,
              "temperature": m[5], "stage": m[6]} for cid, m in st.contacts.items()),
            key=lambda m: (-m["engagement"], m["contact_id"]))
        return {"account_id": st.account, "at": at, "engagement": e, "fit": fit, "temperature": temperature,
                "stage": st.stage, "engaged_contacts": engaged, "roles": list(roles),
                "missing_roles": [b.label for b in self.rules.roles if b.label not in roles],
                "contacts": members, "rules_version": self.version}

    # -- persistence -------------------------------------------------------------------------------
    @staticmethod
    def encode(st: AccountState) -> bytes:
        """Binary, little-endian, version 1: header (B version | q as_of | B temperature | B stage |
        B roles | I contacts), each covered role (B len, utf-8), each member (q at | d total | q ref |
        d fit | B temperature | B stage | H len(contact id) | B len(role), then both utf-8)."""
        roles = [r.encode() for r in st.roles]
        parts = [_ACCOUNT.pack(_ACCOUNT_VERSION, st.as_of, _TEMP_IDX[st.temperature], _ACC_STAGE_IDX[st.stage],
                               len(roles), len(st.contacts))]
        for r in roles:
            parts += (bytes((len(r),)), r)
        pack = _MEMBER.pack
        for cid, (at, total, ref, fit, role, temp, stage) in st.contacts.items():
            c, r = cid.encode(), role.encode()
            parts += (pack(at, total, ref, fit, _TEMP_IDX[temp], _STAGE_IDX[stage], len(c), len(r)), c, r)
        return b"".join(parts)

    @staticmethod
    def decode(data: bytes, account: str) -> AccountState:
        try:
            v, as_of, t, stage, nroles, n = _ACCOUNT.unpack_from(data)
            if v != _ACCOUNT_VERSION:
                raise ValueError(f"unsupported account state version {v}")
            st = AccountState(account)
            st.as_of, st.temperature, st.stage = as_of, TEMPERATURES[t], ACCOUNT_STAGES[stage]
            off = _ACCOUNT.size
            roles = []
            for _ in range(nroles):
                ln = data[off]
                roles.append(data[off + 1:off + 1 + ln].decode())
                off += 1 + ln
            st.roles = tuple(roles)
            contacts = st.contacts
            unpack, size = _MEMBER.unpack_from, _MEMBER.size
            for _ in range(n):
                at, total, ref, fit, ti, si, nc, nr = unpack(data, off)
                off += size
                cid = data[off:off + nc].decode()
                contacts[cid] = [at, total, ref, fit, data[off + nc:off + nc + nr].decode(), TEMPERATURES[ti], STAGES[si]]
                off += nc + nr
            if off != len(data):
                raise ValueError(f"{len(data) - off} trailing bytes")
            return st
        except (struct.error, IndexError, UnicodeDecodeError, ValueError) as exc:
            raise ScoringError(f"corrupt account state: {exc}") from None


_ACCOUNT = struct.Struct("<BqBBBI")
_ACCOUNT_VERSION = 1
_MEMBER = struct.Struct("<qdqdBBHB")
_ACC_STAGE_IDX = {s: i for i, s in enumerate(ACCOUNT_STAGES)}
