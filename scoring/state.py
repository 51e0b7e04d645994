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

The body is one ``struct`` call in each direction (formats cached by shape): decoding a
typical state costs a few microseconds, which matters because the agent round-trips the
table on every batch.
"""

from __future__ import annotations

import struct

from .errors import ScoringError
from .lifecycle import COLD, LEAD, STAGES, TEMPERATURES
from .rules import GRADES

FORMAT_VERSION = 1
_HEAD = struct.Struct("<BIqqqqddBBBBHHHIB")
_new_state = object.__new__
_GRADE_IDX = {g: i for i, g in enumerate(GRADES)}
_TEMP_IDX = {t: i for i, t in enumerate(TEMPERATURES)}
_STAGE_IDX = {s: i for i, s in enumerate(STAGES)}

_PERSISTED = ("contact_id", "as_of", "wm", "ref", "profile_at", "fit", "grade", "temperature", "stage",
              "armed", "total", "acc", "buckets", "seen", "criteria")


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


def _body(ncid: int, na: int, nb: int, ns: int) -> struct.Struct:
    """The variable part as ONE struct (cached by shape): a single C call packs/unpacks it."""
    key = (ncid, na, nb, ns)
    fmt = _BODIES.get(key)
    if fmt is None:
        if len(_BODIES) > 4096:
            _BODIES.clear()
        fmt = _BODIES[key] = struct.Struct(f"<{ncid}s{na}I{na}d{nb}Q{nb}d{nb}d{'8s' * ns}{ns}H")
    return fmt


_BODIES: dict[tuple[int, int, int, int], struct.Struct] = {}


def pack(st: ContactState, rules_tag: int = 0) -> bytes:
    """Encode the persisted fields (derived caches are recomputed on load).

    ``rules_tag`` identifies the rules that computed the cached sums, so a state loaded under
    other rules can be re-derived."""
    cid = st.contact_id.encode()
    acc = st.acc
    bk = st.buckets
    seen = st.seen
    crit = st.criteria
    na, nb, ns = len(acc), len(bk), len(seen)
    head = _HEAD.pack(FORMAT_VERSION, rules_tag, st.as_of, st.wm, st.ref, st.profile_at, st.fit, st.total,
                      _GRADE_IDX[st.grade], _TEMP_IDX[st.temperature], _STAGE_IDX[st.stage], 1 if st.armed else 0,
                      len(cid), na, nb, ns, len(crit))
    if nb:
        vals = bk.values()
        body = _body(len(cid), na, nb, ns).pack(cid, *acc, *acc.values(), *bk, *[v[0] for v in vals],
                                                *[v[1] for v in vals], *seen, *seen.values())
    else:
        body = _body(len(cid), na, 0, ns).pack(cid, *acc, *acc.values(), *seen, *seen.values())
    if not crit:
        return head + body
    parts = [head, body]
    for name, mask in crit.items():
        nb_ = name.encode()
        parts.append(struct.pack(f"<B{len(nb_)}sH", len(nb_), nb_, mask))
    return b"".join(parts)


def unpack(data: bytes) -> tuple[ContactState, int]:
    """Decode ``pack`` output -> (state, rules tag); caches are left for the model to fill."""
    try:
        return _unpack(data)
    except (struct.error, IndexError, KeyError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise ScoringError(f"corrupt contact state: {exc}") from None


def _unpack(data: bytes) -> tuple[ContactState, int]:
    if not data or data[0] != FORMAT_VERSION:
        raise ValueError(f"unsupported state format version {data[0] if data else None}")
    (_, tag, as_of, wm, ref, profile_at, fit, total, g, t, s, flags, ncid, na, nb, ns, nc) = _HEAD.unpack_from(data, 0)
    body = _body(ncid, na, nb, ns)
    v = body.unpack_from(data, _HEAD.size)
    off = _HEAD.size + body.size
    st = _new_state(ContactState)
    st.contact_id = v[0].decode()
    st.as_of, st.wm, st.ref, st.profile_at, st.fit, st.total = as_of, wm, ref, profile_at, fit, total
    st.grade, st.temperature, st.stage, st.armed = GRADES[g], TEMPERATURES[t], STAGES[s], bool(flags & 1)
    i = 1 + 2 * na
    st.acc = dict(zip(v[1:1 + na], v[1 + na:i]))
    if nb:
        st.buckets = {k: (S, D, 0.0) for k, S, D in zip(v[i:i + nb], v[i + nb:i + 2 * nb], v[i + 2 * nb:i + 3 * nb])}
        i += 3 * nb
    else:
        st.buckets = {}
    st.seen = dict(zip(v[i:i + ns], v[i + ns:])) if ns else {}
    st.criteria = {}
    for _ in range(nc):
        ln = data[off]
        name, mask = struct.unpack_from(f"<{ln}sH", data, off + 1)
        off += 1 + ln + 2
        st.criteria[name.decode()] = mask
    if off != len(data):
        raise ValueError(f"{len(data) - off} trailing bytes")
    st.lo = None
    st.hi = 0.0
    st.floor = 1
    st.next_maint = 0
    return st, tag
