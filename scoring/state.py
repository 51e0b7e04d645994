"""Per-contact state and its compact binary encoding (what the Faust table stores).

The state is a small slotted object with plain dicts, mutated only by ``ScoringModel`` on a
private copy (or in place when the caller says it owns it).  Engagement is kept as decayed
point sums at a reference instant ``ref`` (see ``engagement.py``), so its size does not grow
with the number of events; only the dedup memory does, bounded by the late tolerance.

Binary format, little-endian, version 1 (first byte)::

    header  B version | I rules tag | q as_of | q watermark | q ref | q profile_at | d fit
            d total | B grade | B temperature | B stage | B flags (bit0 armed)
            H len(contact_id) | H na | H nb | I ns | B nc
    body    utf-8 contact_id
            na x I rule key, na x d decayed sum                    closed accumulators
            nb x Q (window << 32 | rule key), nb x d raw points, nb x d decayed sum
                                                                   open cap windows
            ns x 8-byte event-id hash, ns x H UTC day              dedup memory
            nc x (B len, utf-8 framework, H criteria bitmask)      qualification
    trailer (version 2 only, for a contact with an account or a buying-group role)
            H len(account) | q account_at | B len(role) | utf-8 account | utf-8 role

A contact with neither is written as version 1, byte for byte as before accounts existed.

Header and body are one ``struct`` call in each direction (formats cached by shape; decoding
finds the format from the header's raw count bytes): decoding a typical state costs a few
microseconds, which matters because the agent round-trips the table on every batch.
"""

from __future__ import annotations

import struct

from .errors import ScoringError
from .lifecycle import COLD, LEAD, STAGES, TEMPERATURES
from .rules import GRADES

FORMAT_VERSION = 1
WITH_ACCOUNT = 2  # the version of a state with the account trailer
_TRAILER = struct.Struct("<HqB")
_HEAD = struct.Struct("<BIqqqqddBBBBHHHIB")
_new_state = object.__new__
_GRADE_IDX = {g: i for i, g in enumerate(GRADES)}
_TEMP_IDX = {t: i for i, t in enumerate(TEMPERATURES)}
_STAGE_IDX = {s: i for i, s in enumerate(STAGES)}

_PERSISTED = ("contact_id", "as_of", "wm", "ref", "profile_at", "fit", "grade", "temperature", "stage",
              "armed", "total", "acc", "buckets", "seen", "criteria", "account", "account_at", "role")


class ContactState:
    """Everything the core remembers about one contact.

    Public, read-only by convention: ``contact_id``, ``as_of`` (the contact's clock, epoch ms),
    ``stage``, ``temperature``, ``fit``, ``grade``.  The rest is engagement bookkeeping:

    * ``wm``: the latest event time seen (watermark; late tolerance is measured from it)
    * ``ref``: the instant the decayed sums refer to
    * ``acc``: rule key -> decayed points at ``ref`` (uncapped rules and closed cap windows)
    * ``buckets``: (window index << 32 | rule key) -> (raw points, decayed points, capped
      contribution) for cap windows that a late event may still reach
    * ``seen``: 8-byte event-id hash -> UTC day of the event (dedup memory)
    * ``criteria``: framework -> bitmask of met criteria (order of the rules file)
    * ``armed``: a recycled contact's score has fallen below the MQL bar since the rejection
    * ``account``: the account (company) the contact belongs to, "" if none; ``account_at`` the
      instant of the membership that set it (0: taken from the profile's e-mail domain)
    * ``role``: the contact's buying-group role from its job title, "" if none

    * ``total``: the running sum of all contributions at ``ref`` (persisted, so that a table
      round trip never changes a single bit of a later result)

    ``lo``, ``hi``, ``floor``, ``next_maint`` are derived caches (not persisted).
    """

    __slots__ = _PERSISTED + ("lo", "hi", "floor", "next_maint")

    def __init__(self, contact_id: str) -> None:
        self.contact_id = contact_id
        self.as_of = 0
        self.wm = 0
        self.ref = 0
        self.profile_at = 0
        self.fit = 0.0
        self.grade = "C"
        self.temperature = COLD
        self.stage = LEAD
        self.armed = False
        self.acc: dict[int, float] = {}
        self.buckets: dict[int, tuple[float, float, float]] = {}
        self.seen: dict[bytes, int] = {}
        self.criteria: dict[str, int] = {}
        self.total = 0.0
        self.account = ""
        self.account_at = 0
        self.role = ""
        self.lo: float | None = None  # None: derived caches must be recomputed by the model
        self.hi = 0.0
        self.floor = 1
        self.next_maint = 0

    def copy(self) -> ContactState:
        c = ContactState.__new__(ContactState)
        c.contact_id = self.contact_id
        c.as_of = self.as_of
        c.wm = self.wm
        c.ref = self.ref
        c.profile_at = self.profile_at
        c.fit = self.fit
        c.grade = self.grade
        c.temperature = self.temperature
        c.stage = self.stage
        c.armed = self.armed
        c.acc = self.acc.copy()
        c.buckets = self.buckets.copy()
        c.seen = self.seen.copy()
        c.criteria = self.criteria.copy()
        c.total = self.total
        c.account = self.account
        c.account_at = self.account_at
        c.role = self.role
        c.lo = self.lo
        c.hi = self.hi
        c.floor = self.floor
        c.next_maint = self.next_maint
        return c

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContactState):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in _PERSISTED)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"ContactState({self.contact_id!r}, as_of={self.as_of}, stage={self.stage}, "
                f"temperature={self.temperature}, fit={self.fit:g}/{self.grade}, rules={len(self.acc)}+"
                f"{len(self.buckets)}w, seen={len(self.seen)})")


def _layout(ncid: int, na: int, nb: int, ns: int) -> struct.Struct:
    """Header and body as ONE struct (cached by shape): a single C call packs/unpacks a state.
    Little-endian without padding, so it is byte for byte the header followed by the body."""
    key = (ncid, na, nb, ns)
    fmt = _LAYOUTS.get(key)
    if fmt is None:
        if len(_LAYOUTS) > 4096:
            _LAYOUTS.clear()
        fmt = _LAYOUTS[key] = struct.Struct(
            f"{_HEAD.format}{ncid}s{na}I{na}d{nb}Q{nb}d{nb}d{'8s' * ns}{ns}H")
    return fmt


_LAYOUTS: dict[tuple[int, int, int, int], struct.Struct] = {}
#: Where the header's counts (H len(contact_id) | H na | H nb | I ns | B nc) start: unpack looks the
#: layout up by these raw bytes, so a state is decoded without unpacking its header first.
_COUNTS = struct.calcsize("<BIqqqqddBBBB")
_COUNTS_FMT = struct.Struct("<HHHIB")
_BODY = 17  # index of the first body value (the contact id) in an unpacked layout
_BY_COUNTS: dict[bytes, tuple[struct.Struct, int, int, int, int]] = {}


def pack(st: ContactState, rules_tag: int = 0) -> bytes:
    """Encode the persisted fields (derived caches are recomputed on load).

    ``rules_tag`` identifies the rules that computed the cached sums, so a state loaded under
    other rules can be re-derived."""
    cid = st.contact_id.encode()
    acc = st.acc
    bk = st.buckets
    seen = st.seen
    crit = st.criteria
    ncid, na, nb, ns = len(cid), len(acc), len(bk), len(seen)
    if nb:
        raw, decayed, _ = zip(*bk.values())  # per window: raw points, decayed sum (the cap part is derived)
    else:
        raw = decayed = ()
    extra = st.account or st.role
    data = _layout(ncid, na, nb, ns).pack(
        WITH_ACCOUNT if extra else FORMAT_VERSION, rules_tag, st.as_of, st.wm, st.ref, st.profile_at, st.fit, st.total, _GRADE_IDX[st.grade],
        _TEMP_IDX[st.temperature], _STAGE_IDX[st.stage], 1 if st.armed else 0, ncid, na, nb, ns, len(crit),
        cid, *acc, *acc.values(), *bk, *raw, *decayed, *seen, *seen.values())
    if not crit and not extra:
        return data
    parts = [data]
    for name, mask in crit.items():
        nb_ = name.encode()
        parts.append(struct.pack(f"<B{len(nb_)}sH", len(nb_), nb_, mask))
    if extra:
        account, role = st.account.encode(), st.role.encode()
        parts += [_TRAILER.pack(len(account), st.account_at, len(role)), account, role]
    return b"".join(parts)


def unpack(data: bytes) -> tuple[ContactState, int]:
    """Decode ``pack`` output -> (state, rules tag); caches are left for the model to fill."""
    try:
        return _unpack(data)
    except (struct.error, IndexError, KeyError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise ScoringError(f"corrupt contact state: {exc}") from None


def _unpack(data: bytes) -> tuple[ContactState, int]:
    version = data[0] if data else None
    if version != FORMAT_VERSION and version != WITH_ACCOUNT:
        raise ValueError(f"unsupported state format version {version}")
    counts = data[_COUNTS:_HEAD.size]
    layout = _BY_COUNTS.get(counts)
    if layout is None:
        layout = _layout_of(counts)
    fmt, na, nb, ns, nc = layout
    v = fmt.unpack_from(data)
    off = fmt.size
    st = _new_state(ContactState)
    (_, tag, st.as_of, st.wm, st.ref, st.profile_at, st.fit, st.total, g, t, s, flags) = v[:12]
    st.grade, st.temperature, st.stage, st.armed = GRADES[g], TEMPERATURES[t], STAGES[s], bool(flags & 1)
    st.contact_id = v[_BODY].decode()
    # Plain loops over the flat tuple: states are small, and for a few items they are about twice
    # as fast as dict(zip(...)) of slices.
    acc = st.acc = {}
    i = _BODY + 1 + na
    for k in range(_BODY + 1, i):
        acc[v[k]] = v[k + na]
    i += na
    buckets = st.buckets = {}
    if nb:
        # (raw points, decayed sum, capped contribution): the last one is derived, by the model, on load
        for k in range(i, i + nb):
            buckets[v[k]] = (v[k + nb], v[k + 2 * nb], 0.0)
        i += 3 * nb
    seen = st.seen = {}
    for k in range(i, i + ns):
        seen[v[k]] = v[k + ns]
    crit = st.criteria = {}
    if nc:
        for _ in range(nc):
            ln = data[off]
            name, mask = struct.unpack_from(f"<{ln}sH", data, off + 1)
            off += 1 + ln + 2
            crit[name.decode()] = mask
    if version == WITH_ACCOUNT:
        na_, st.account_at, nr = _TRAILER.unpack_from(data, off)
        off += _TRAILER.size
        st.account = data[off:off + na_].decode()
        st.role = data[off + na_:off + na_ + nr].decode()
        off += na_ + nr
    else:
        st.account, st.account_at, st.role = "", 0, ""
    if off != len(data):
        raise ValueError(f"{len(data) - off} trailing bytes")
    st.lo = None
    st.hi = 0.0
    st.floor = 1
    st.next_maint = 0
    return st, tag


def _layout_of(counts: bytes) -> tuple[struct.Struct, int, int, int, int]:
    """The layout of a state whose header ends with these counts (cached by them)."""
    ncid, na, nb, ns, nc = _COUNTS_FMT.unpack(counts)
    if len(_BY_COUNTS) > 4096:
        _BY_COUNTS.clear()
    layout = _BY_COUNTS[counts] = (_layout(ncid, na, nb, ns), na, nb, ns, nc)
    return layout
