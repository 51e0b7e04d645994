"""One workload through the scoring core, reduced to a digest of every output: run once compiled and once
with ``LEADPULSE_PURE_PYTHON=1``, the two digests must be equal (``test_compiled.py``).

    python -m tests.scoring.differential SEED EVENTS CONTACTS   -> one JSON line

The workload is the bench's (sessions, URLs that hit the property rules, capped e-mail, duplicates, events a
few hours late) plus what it lacks: events beyond the late tolerance, qualification updates (some refused),
profile changes between batches, table round trips, cooling ticks, timers and snapshots at later instants.
Every float goes in by its ``repr``, so one ulp of difference changes the digest.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections import defaultdict

import scoring
from bench.core import make_stream, seed_profiles
from scoring import BehaviourEvent, ContactProfile, QualificationUpdate, ScoringModel
from scoring.events import DAY_MS as DAY_MS


def _inputs(seed: int, n_events: int, n_contacts: int) -> list:
    rnd = random.Random(seed)
    out: list = []
    for i, ev in enumerate(make_stream(n_events, n_contacts, seed)):
        out.append(ev)
        r = rnd.random()
        if r < 0.01:  # beyond the 7-day tolerance: refused, field occurred_at
            out.append(BehaviourEvent(f"late-{i}", ev.contact_id, ev.event_type, ev.occurred_at - 9 * DAY_MS, ev.properties))
        elif r < 0.02:
            crit = {c: rnd.random() < 0.8 for c in ("budget", "authority", "need", "timeline")}
            out.append(QualificationUpdate(f"q-{i}", ev.contact_id, "criteria", "BANT", crit, ev.occurred_at + 1))
        elif r < 0.025:  # often an illegal transition (IllegalTransition is refused like an invalid input)
            action = rnd.choice(["accept", "reject", "won", "disqualify"])
            out.append(QualificationUpdate(f"a-{i}", ev.contact_id, action, None, {}, ev.occurred_at + 2))
        elif r < 0.03:
            out.append(ContactProfile(ev.contact_id, f"{ev.contact_id}@acme.example", rnd.choice(["CEO", "Intern", None]),
                                      "Acme", rnd.choice([12, 900, None]), "Software", "FR", ev.occurred_at + 3))
    return out


def run(seed: int, n_events: int, n_contacts: int) -> dict:
    model = ScoringModel()
    inputs = _inputs(seed, n_events, n_contacts)
    states = seed_profiles(model, {x.contact_id for x in inputs}, random.Random(seed))
    table = {cid: model.encode_state(st) for cid, st in states.items()}
    h = hashlib.sha256()
    n_changes = n_rejected = 0

    def put(*parts) -> None:
        h.update(repr(parts).encode())
        h.update(b"\n")

    def changes(chs) -> None:
        nonlocal n_changes
        for c in chs:
            n_changes += 1
            put(c.change_id, c.kind, c.from_value, c.to_value, c.at, c.cause_event_id, c.score, c.engagement, c.fit,
                c.grade, sorted(c.explanation.items()))

    for i in range(0, len(inputs), 700):  # batches, grouped by contact as the agent does
        groups: dict[str, list] = defaultdict(list)
        for x in inputs[i:i + 700]:
            groups[x.contact_id].append(x)
        for cid, items in groups.items():
            rejected: list = []
            st, chs = model.apply_inputs(model.decode_state(table[cid]), items, rejected=rejected, inplace=True)
            changes(chs)
            for item, err in rejected:
                n_rejected += 1
                put("rejected", getattr(item, "event_id", None) or getattr(item, "update_id", None), type(err).__name__,
                    getattr(err, "field", None))
            table[cid] = model.encode_state(st)
            put(cid, table[cid])
    for cid in sorted(table):
        st = model.decode_state(table[cid])
        put(cid, model.next_cooling_at(st), model.score_at(st, st.as_of + 0.5))
        snap = model.snapshot_fields(st)
        put(sorted((k, v if k != "explanation" else sorted(v.items())) for k, v in snap.items()))
        cooled, chs = model.cool(st, st.as_of + 40 * DAY_MS)
        changes(chs)
        later, chs = model.advance(cooled, st.as_of + 90 * DAY_MS)
        changes(chs)
        put(model.encode_state(cooled), model.encode_state(later), model.snapshot(st, st.as_of + 3 * DAY_MS).score)
    return {"build": scoring.BUILD, "digest": h.hexdigest(), "inputs": len(inputs), "contacts": len(table),
            "changes": n_changes, "rejected": n_rejected}


if __name__ == "__main__":
    print(json.dumps(run(*(int(a) for a in sys.argv[1:4]))))
