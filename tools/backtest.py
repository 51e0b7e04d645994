"""`leadpulse backtest`: replay history through the scoring core, offline, under one or two rules files.

Input: an Avro object container file (`--events FILE`: what `leadpulse simulate --out` writes, or a
container of BehaviourEvent / ContactProfile / QualificationUpdate records) or Kafka topics
(`--topic T`: the behaviour events; the profiles, qualifications and erasures topics of the
environment are read with them).  Records are fed to `ScoringModel` per contact in delivery order
(file order; `--order time` sorts each contact's records by event time instead — the default for
Kafka, where topics only order records per partition), grouped the way the worker batches them:
consecutive behaviour events of a contact go through one `apply_events` call.

Identities and accounts as the worker has them: an event with only an anonymous id is the visitor
`anon:<id>`'s; an event carrying both ids, an IdentityLink or a ContactMerge (from the topics) merges
the alias's state into the contact at that point of the delivery order (`ScoringModel.merge`), and
the alias's later records are the contact's. Every contact's share goes to its account
(`scoring.accounts`) after each of its groups.

Reported per rules version: leads by temperature and stage at the end instant, MQL and SQL counts,
median time to MQL (first event, anonymous ones included → MQL), MQL→SQL conversion where sales'
outcome is known, merges, accounts by temperature and MQAs, and with `--compare` the contacts whose
stage differs.  `--report` writes Markdown, `--chart` a PNG.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from scoring.identity import MAX_HOPS
from tools.common import DAY_MS, CliError, day, duration, iso, progress

EVENT, PROFILE, QUALIFICATION, ERASURE, MEMBERSHIP, ALIAS = 0, 1, 2, 3, 4, 5
KIND_NAMES = ("behaviour", "profile", "qualification", "erasure", "membership", "identity")
ANON = "anon:"
FAR_FUTURE = 1 << 62
CHUNK = 200_000


# ============================================================================ inputs

@dataclass
class Source:
    description: str
    end_hint: int | None = None  # the end instant the input represents (simulation end), if known
    counts: Counter = field(default_factory=Counter)  # records read, by kind / reason


def _ms(v) -> int:
    """Epoch ms from a long, or from a datetime when a file kept Avro's timestamp-millis annotation."""
    if v.__class__ is int:
        return v
    return int(v.timestamp() * 1000)


def _converters(logical: bool):
    from scoring.events import BehaviourEvent, ContactProfile, QualificationUpdate

    ms = _ms if logical else (lambda v: v)

    def behaviour(b):
        cid, anon = b["contact_id"], b.get("anonymous_id")
        return BehaviourEvent(b["event_id"], cid if cid or not anon else ANON + anon, b["event_type"],
                              ms(b["occurred_at"]), b.get("properties") or {}, b.get("source") or "", anon)

    def profile(p):
        return ContactProfile(p["contact_id"], p.get("email"), p.get("job_title"), p.get("company"),
                              p.get("company_size"), p.get("industry"), p.get("country"), ms(p["updated_at"]))

    def qualification(q):
        return QualificationUpdate(q["update_id"], q["contact_id"], q["action"], q.get("framework"),
                                   q.get("criteria") or {}, ms(q["occurred_at"]), q.get("reason") or "")

    return behaviour, profile, qualification


class _Window:
    """--from/--to on event time; profiles have no lower bound (who a contact is predates the window)."""

    def __init__(self, from_ms: int | None, to_ms: int | None):
        self.lo = from_ms if from_ms is not None else -FAR_FUTURE
        self.hi = to_ms if to_ms is not None else FAR_FUTURE
        self.active = from_ms is not None or to_ms is not None


def _fields(schema, name: str) -> set[str]:
    """Field names of the record inside the optional field `name` of a wrapper schema."""
    for f in schema.get("fields", []) if isinstance(schema, dict) else []:
        if f.get("name") == name:
            for branch in f["type"] if isinstance(f["type"], list) else [f["type"]]:
                if isinstance(branch, dict) and branch.get("type") == "record":
                    return {x["name"] for x in branch.get("fields", [])}
    return set()


def _valid(kind: int, obj, counts: Counter) -> bool:
    """The structural checks the worker applies before the core (no wall clock: this is history)."""
    from scoring.errors import ScoringError
    from scoring.events import validate_profile, validate_qualification

    try:
        if kind == PROFILE:
            validate_profile(obj, FAR_FUTURE)
        elif kind == QUALIFICATION:
            validate_qualification(obj, FAR_FUTURE)
    except ScoringError:
        counts[f"invalid {KIND_NAMES[kind]}"] += 1
        return False
    return True


def read_avro(path: Path, window: _Window, *, chunk: int = CHUNK, show_progress: bool = True):
    """(Source, generator of chunks); a chunk is a list of (contact_id, kind, domain object)."""
    import json

    import fastavro

    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise CliError(f"events file {path}: {exc.strerror or exc}") from None
    try:
        reader = fastavro.reader(fh)
    except Exception:
        fh.close()
        raise CliError(f"events file {path}: not an Avro object container file") from None
    schema = reader.writer_schema
    name = schema.get("name", "?").rsplit(".", 1)[-1] if isinstance(schema, dict) else "?"
    logical = "logicalType" in json.dumps(schema)
    behaviour, profile, qualification = _converters(logical)
    meta = reader.metadata or {}
    end_hint = None
    if meta.get("leadpulse.end", "").lstrip("-").isdigit():
        end_hint = int(meta["leadpulse.end"])
    single = {"BehaviourEvent": (EVENT, behaviour), "ContactProfile": (PROFILE, profile),
              "QualificationUpdate": (QUALIFICATION, qualification)}
    if name == "SimulatedRecord" and {f["name"] for f in schema.get("fields", [])} >= {"kind", "behaviour"}:
        fixed = None
    elif name in single:
        fixed = single[name]
    else:
        fh.close()
        raise CliError(f"events file {path}: records of type {name!r} are not leadpulse inputs (expected "
                       f"SimulatedRecord, BehaviourEvent, ContactProfile or QualificationUpdate)")
    src = Source(f"{path} ({'simulation, seed ' + meta['leadpulse.seed'] if 'leadpulse.seed' in meta else name})",
                 end_hint)
    counts = src.counts
    size = path.stat().st_size

    def convert(rec):
        if fixed is not None:
            return fixed[0], fixed[1](rec)
        k = rec["kind"]
        if k == "behaviour":
            return EVENT, behaviour(rec["behaviour"])
        if k == "profile":
            return PROFILE, profile(rec["profile"])
        if k == "qualification":
            return QUALIFICATION, qualification(rec["qualification"])
        counts[f"unknown kind {k}"] += 1
        return None, None

    # the hot path: our own container, behaviour records with every field of the latest schema
    fast = fixed is None and not logical and _fields(schema, "behaviour") >= {
        "event_id", "contact_id", "event_type", "occurred_at", "properties", "source", "anonymous_id"}

    def chunks():
        from scoring.events import BehaviourEvent as BE

        lo, hi, active = window.lo, window.hi, window.active
        out: list = []
        append = out.append
        n = 0
        done = 0
        try:
            with progress(f"reading {path.name}", size, enabled=show_progress) as advance:
                try:
                    for rec in reader:
                        n += 1
                        if fast:
                            b = rec["behaviour"]
                            if b is not None:
                                t = b["occurred_at"]
                                if active and not lo <= t <= hi:
                                    counts["outside window"] += 1
                                    continue
                                cid = b["contact_id"]
                                if not cid and b["anonymous_id"]:
                                    cid = ANON + b["anonymous_id"]
                                append((cid, EVENT, BE(b["event_id"], cid, b["event_type"], t, b["properties"],
                                                       b["source"], b["anonymous_id"])))
                                if len(out) < chunk:
                                    continue
                        if not fast or b is None:
                            kind, obj = convert(rec)
                            if kind == EVENT:
                                if active and not lo <= obj.occurred_at <= hi:
                                    counts["outside window"] += 1
                                    continue
                                append((obj.contact_id, EVENT, obj))
                            elif kind is not None:
                                t = obj.updated_at if kind == PROFILE else obj.occurred_at
                                if active and (t > hi or (kind != PROFILE and t < lo)):
                                    counts["outside window"] += 1
                                    continue
                                if _valid(kind, obj, counts):
                                    append((obj.contact_id, kind, obj))
                        if len(out) >= chunk:
                            yield out
                            out = []
                            append = out.append
                            pos = fh.tell()
                            advance(pos - done)
                            done = pos
                except CliError:
                    raise
                except Exception as exc:  # fastavro raises many kinds on a damaged file
                    raise CliError(f"events file {path}: corrupt or unexpected Avro data after {n:,} records "
                                   f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
                if out:
                    yield out
                advance(size - done)
        finally:
            fh.close()
            counts["records"] = n

    return src, chunks()


async def _read_topics(bootstrap: str, topics: list[str], optional: list[str], window: _Window, timeout: float,
                       show_progress: bool):
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    from scoring.errors import ScoringError
    from streams.codec import HEADER, DecodeError, RegistryError, _record_name, codec_from_settings
    from tools.common import settings

    s = settings()
    codec = codec_from_settings(s)
    behaviour, profile, qualification = _converters(False)
    from scoring.accounts import membership
    from scoring.identity import contact_merge, identity_link

    kinds = {"BehaviourEvent": (EVENT, behaviour), "ContactProfile": (PROFILE, profile),
             "QualificationUpdate": (QUALIFICATION, qualification),
             "EraseRequest": (ERASURE, lambda r: (r["contact_id"], r["requested_at"])),
             "IdentityLink": (ALIAS, lambda r: identity_link(r, FAR_FUTURE, 0)),
             "ContactMerge": (ALIAS, lambda r: contact_merge(r, FAR_FUTURE, 0)),
             "AccountMembership": (MEMBERSHIP, lambda r: membership(r, FAR_FUTURE, 0))}
    names: dict[int, str] = {}
    counts: Counter = Counter()
    items: list = []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000, **s.kafka_client_kwargs())
    try:
        await asyncio.wait_for(admin.start(), 30)
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in topics if t not in existing]
            if missing:
                raise CliError(f"topic {', '.join(missing)} does not exist on Kafka at {bootstrap}")
            for t in optional:
                if t in existing:
                    topics = topics + [t]
                else:
                    counts[f"topic {t} missing (skipped)"] += 1
            described = await admin.describe_topics(topics)
        finally:
            await admin.close()
    except (KafkaError, OSError, asyncio.TimeoutError) as exc:
        raise CliError(f"cannot read the topics of Kafka at {bootstrap}: {exc or type(exc).__name__}") from None
    parts = {d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described}
    tps = [TopicPartition(t, p) for t in topics for p in parts.get(t, ())]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                isolation_level="read_committed", auto_offset_reset="earliest",
                                request_timeout_ms=30_000, max_partition_fetch_bytes=8 * 1024 * 1024,
                                **s.kafka_client_kwargs())
    try:
        await asyncio.wait_for(consumer.start(), 30)
    except (KafkaError, OSError, asyncio.TimeoutError) as exc:
        raise CliError(f"cannot connect to Kafka at {bootstrap}: {exc or type(exc).__name__}") from None
    try:
        consumer.assign(tps)
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if end[tp] > begin[tp]}
        if todo:
            await consumer.seek_to_beginning(*todo)
        total = sum(end[tp] - begin[tp] for tp in tps)
        lo, hi, active = window.lo, window.hi, window.active
        with progress("reading Kafka", total, enabled=show_progress) as advance:
            idle_since = time.monotonic()
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=500, max_records=50_000)
                got = 0
                for tp, msgs in batch.items():
                    for m in msgs:
                        got += 1
                        if m.offset >= end[tp]:
                            continue
                        counts["records"] += 1
                        v = m.value
                        try:
                            if not v or len(v) < HEADER.size:
                                raise DecodeError("not Confluent-framed Avro")
                            sid = HEADER.unpack_from(v)[1]
                            name = names.get(sid)
                            if name is None:
                                name = names[sid] = _record_name(codec.source.schema(sid))
                            if name not in kinds:
                                counts[f"ignored {name}"] += 1
                                continue
                            kind, conv = kinds[name]
                            obj = conv(codec.decode(name, v))
                        except (DecodeError, ScoringError, KeyError, TypeError) as exc:
                            counts[f"undecodable ({type(exc).__name__})"] += 1
                            continue
                        if kind == ERASURE:
                            cid, t = obj
                        elif kind == ALIAS:
                            cid, t = obj.source, obj.at
                        elif kind == MEMBERSHIP:
                            cid, t = obj.contact_id, obj.updated_at
                        else:
                            cid = obj.contact_id
                            t = obj.updated_at if kind == PROFILE else obj.occurred_at
                            if not _valid(kind, obj, counts):
                                continue
                        if active and (t > hi or (kind != PROFILE and t < lo)):
                            counts["outside window"] += 1
                            continue
                        items.append((cid, kind, obj))
                if got:
                    advance(got)
                    idle_since = time.monotonic()
                for tp in list(todo):
                    if await consumer.position(tp) >= end[tp]:
                        todo.discard(tp)
                if todo and time.monotonic() - idle_since > timeout:
                    raise CliError(f"reading {', '.join(sorted({tp.topic for tp in todo}))} from Kafka at "
                                   f"{bootstrap}: no progress for {timeout:g} s")
    except KafkaError as exc:
        raise CliError(f"reading from Kafka at {bootstrap} failed: {exc}") from None
    except RegistryError as exc:  # not the records' fault: no count of "undecodable" would be true
        raise CliError(str(exc)) from None
    finally:
        await consumer.stop()
    return counts, items


def read_topics(bootstrap: str, topics: list[str], optional: list[str] = (), window: _Window | None = None, *,
                timeout: float = 30.0, show_progress: bool = True):
    """Every record of the topics (and of the `optional` ones that exist), decoded; one chunk."""
    window = window or _Window(None, None)
    counts, items = asyncio.run(_read_topics(bootstrap, list(topics), list(optional), window, timeout, show_progress))
    src = Source(f"Kafka {bootstrap}: {', '.join(list(topics) + [t for t in optional if not counts.get(f'topic {t} missing (skipped)')])}")
    src.counts.update(counts)
    return src, iter([items])


# ============================================================================ replay

def _time_of(item) -> int:
    _, kind, obj = item
    if kind == EVENT or kind == QUALIFICATION:
        return obj.occurred_at
    if kind == PROFILE or kind == MEMBERSHIP:
        return obj.updated_at
    if kind == ALIAS:
        return obj.at
    return obj[1]


def group(chunk: list) -> dict[str, list]:
    """Contact → its (kind, object) items, in chunk order (sorted by event time before, for --order time)."""
    groups: dict[str, list] = {}
    get = groups.get
    for item in chunk:
        cid = item[0]
        lst = get(cid)
        if lst is None:
            groups[cid] = [item]
        else:
            lst.append(item)
    return groups


class Identities:
    """The aliases the worker would hold (anonymous id → contact, loser → winner), shared by every
    replay: splits the delivery order at each new alias and renames the records of merged ids."""

    def __init__(self) -> None:
        self.alias: dict[str, str] = {}
        self.counts: Counter = Counter()

    def resolve(self, cid: str) -> str:
        alias = self.alias
        for _ in range(MAX_HOPS):
            nxt = alias.get(cid)
            if nxt is None:
                return cid
            cid = nxt
        self.counts["alias loops"] += 1
        return cid

    def segments(self, chunk: list):
        """(items, alias or None) pieces of a chunk, in order: the items before an alias are replayed
        before it merges, the ones after it under the contact."""
        from dataclasses import replace

        from scoring.identity import implied_link

        alias = self.alias
        out: list = []
        for item in chunk:
            cid, kind, obj = item
            if kind == ALIAS:
                yield out, self._link(obj)
                out = []
                continue
            if alias and cid in alias:
                target = self.resolve(cid)
                if kind == ERASURE:  # the person is erased, and the link with them
                    del alias[cid]
                    item = (target, kind, (target, obj[1]))
                else:
                    item = (target, kind, replace(obj, contact_id=target))
                cid = target
            out.append(item)
            link = implied_link(item[2]) if kind == EVENT and obj.anonymous_id else None
            if link is not None and alias.get(link.source) != link.target:
                yield out, self._link(link)
                out = []
        yield out, None

    def _link(self, a):
        """The alias to apply now, or None (a re-delivery, a conflict, a link to itself)."""
        held = self.alias.get(a.source)
        if held is not None:
            self.counts["identity links repeated" if held == a.target else "identity conflicts"] += 1
            return None
        target = self.resolve(a.target)
        if target == a.source:
            self.counts["alias loops"] += 1
            return None
        self.alias[a.source] = target
        self.counts["merges"] += 1
        return a if target == a.target else type(a)(a.alias_id, a.source, target, a.at, a.how)


class Replay:
    """One rules version replayed over the whole history, one contact group at a time."""

    def __init__(self, label: str, rules):
        from scoring.accounts import AccountModel
        from scoring.model import ScoringModel

        self.label = label
        self.rules = rules
        self.model = ScoringModel(rules)
        self.accounts = AccountModel(rules)
        self.account_states: dict = {}
        self.first_mqa: dict[str, int] = {}
        self.merged = 0
        self.states: dict = {}
        self.first_event: dict[str, int] = {}
        self.first_mql: dict[str, int] = {}
        self.daily_mqls: Counter = Counter()
        self.mql_transitions = 0
        self.sqls: set[str] = set()
        self.customers: set[str] = set()
        self.converted: set[str] = set()
        self.decided: set[str] = set()
        self.rejected_events: Counter = Counter()
        self.refused_updates: Counter = Counter()
        self.erased = 0
        self.events = 0
        self.final: dict[str, tuple[str, str, float]] = {}  # contact → (stage, temperature, score) at the end
        self.end: int | None = None

    def feed(self, groups: dict[str, list]) -> None:
        """Each contact's records in delivery order through `ScoringModel.apply_inputs`, the same
        path the worker takes; an erasure forgets the contact and starts it from nothing."""
        states = self.states
        for cid, items in groups.items():
            st = states.get(cid)
            account = st.account if st is not None else ""
            segment: list = []
            for _, kind, obj in items:
                if kind != ERASURE:
                    segment.append(obj)
                    continue
                self._apply(cid, st, segment)
                segment = []
                st = None
                states.pop(cid, None)
                self.erased += 1
            st = self._apply(cid, st, segment)
            if st is not None:
                states[cid] = st
            self._share(cid, account, st)

    def merge(self, alias) -> None:
        """An alias's state folds into its contact's (see `Identities`), as the worker does."""
        from scoring.identity import merge_cause

        other = self.states.pop(alias.source, None)
        if other is None:
            return
        target = alias.target
        st = self.states.get(target)
        account = st.account if st is not None else ""
        st, changes = self.model.merge(st, other, alias.at, merge_cause(alias.alias_id), target)
        self.states[target] = st
        self.merged += 1
        first = self.first_event.pop(alias.source, None)
        if first is not None and first < self.first_event.get(target, FAR_FUTURE):
            self.first_event[target] = first  # time to MQL counts from the first anonymous touch
        if changes:
            self._changes(target, changes)
        self._share(alias.source, other.account, None)
        self._share(target, account, st)

    def _share(self, cid: str, before: str, st, at: int | None = None) -> None:
        """The contact's share to its account (and its removal from the one it left)."""
        from scoring.accounts import removal, share_of

        after = st.account if st is not None else ""
        if after:
            self._to_account(after, share_of(st))
        if before and before != after:
            self._to_account(before, removal(before, cid, st.as_of if st is not None else at or 0))

    def _to_account(self, account: str, share) -> None:
        accounts = self.account_states
        acc, changes = self.accounts.apply(accounts.get(account), account, (share,))
        if acc is None:
            accounts.pop(account, None)
        else:
            accounts[account] = acc
        for c in changes:
            if c.kind == "stage" and c.to_value == "mqa" and account not in self.first_mqa:
                self.first_mqa[account] = c.at

    def _apply(self, cid: str, st, inputs: list):
        from scoring.errors import IllegalTransition, ScoringError
        from scoring.events import BehaviourEvent

        if not inputs:
            return st
        rejected: list = []
        try:
            st, ch = self.model.apply_inputs(st, inputs, rejected=rejected, inplace=True)
        except ScoringError:  # e.g. an empty contact id: no state can even be created; one by one
            ch = []
            for item in inputs:
                try:
                    st, more = self.model.apply_inputs(st, [item], rejected=rejected, inplace=True)
                except ScoringError as exc:
                    rejected.append((item, exc))
                    continue
                ch.extend(more)
        events = [x for x in inputs if type(x) is BehaviourEvent]
        if events:
            self._first(cid, events, self.first_event)
        if ch:
            self._changes(cid, ch)
        for item, exc in rejected:
            if type(item) is BehaviourEvent:
                self.rejected_events[f"{getattr(exc, 'field', '?')}: {getattr(exc, 'reason', exc)}"] += 1
            elif isinstance(exc, IllegalTransition):
                self.refused_updates[f"{item.action} on a {exc.from_stage}"] += 1
            else:
                kind = PROFILE if hasattr(item, "updated_at") else QUALIFICATION
                self.refused_updates[f"{KIND_NAMES[kind]}: {getattr(exc, 'field', '') or type(exc).__name__}"] += 1
        return st

    def _first(self, cid: str, run: list, first: dict) -> None:
        self.events += len(run)
        t = min(e.occurred_at for e in run) if len(run) > 1 else run[0].occurred_at
        f = first.get(cid)
        if f is None or t < f:
            first[cid] = t

    def _changes(self, cid: str, changes: list) -> None:
        for c in changes:
            if c.kind != "stage":
                continue
            to, frm = c.to_value, c.from_value
            if to == "mql":
                self.mql_transitions += 1
                self.daily_mqls[day(c.at)] += 1
                if cid not in self.first_mql:
                    self.first_mql[cid] = c.at
            elif to == "sql":
                self.sqls.add(cid)
                if frm == "mql":
                    self.converted.add(cid)
                    self.decided.add(cid)
            elif to == "customer":
                self.customers.add(cid)
            elif frm == "mql" and to in ("recycled", "disqualified"):
                self.decided.add(cid)

    def finish(self, end: int) -> None:
        """Advance every contact to the end instant (decay may cool it) and take its final snapshot."""
        self.end = end
        model = self.model
        final = self.final
        for cid, st in list(self.states.items()):
            if end > st.as_of:
                st, ch = model.advance(st, end)
                self.states[cid] = st
                if ch:
                    self._changes(cid, ch)
                self._share(cid, st.account, st)
            snap = model.snapshot(st)
            final[cid] = (snap.stage, snap.temperature, snap.score)

    def summary(self) -> dict:
        from scoring.lifecycle import STAGES, TEMPERATURES

        temps = Counter(v[1] for v in self.final.values())
        stages = Counter(v[0] for v in self.final.values())
        ttm = [self.first_mql[c] - self.first_event[c] for c in self.first_mql if c in self.first_event]
        median = statistics.median(ttm) if ttm else None
        decided = len(self.decided)
        return {
            "label": self.label,
            "rules_version": self.rules.version,
            "rules_source": self.rules.source,
            "contacts": len(self.final),
            "events_scored": self.events - sum(self.rejected_events.values()),
            "temperature": {t: temps.get(t, 0) for t in TEMPERATURES},
            "stages": {s: stages.get(s, 0) for s in STAGES},
            "mqls": len(self.first_mql),
            "mql_transitions": self.mql_transitions,
            "sqls": len(self.sqls),
            "customers": len(self.customers),
            "median_time_to_mql_ms": median,
            "median_time_to_mql": duration(median),
            "mql_to_sql": {"converted": len(self.converted), "decided": decided,
                           "rate": round(len(self.converted) / decided, 4) if decided else None},
            "events_rejected": dict(self.rejected_events.most_common()),
            "sales_updates_refused": dict(self.refused_updates.most_common()),
            "erased": self.erased,
            "merged": self.merged,
            "anonymous_at_end": sum(1 for c in self.final if c.startswith(ANON)),
            "accounts": self.account_summary(),
            "daily_mqls": dict(sorted(self.daily_mqls.items())),
        }

    def account_summary(self) -> dict:
        from scoring.lifecycle import TEMPERATURES

        accounts, end = self.account_states, self.end
        temps = Counter(a.temperature for a in accounts.values())
        sizes = [len(a.contacts) for a in accounts.values()]
        covered = Counter(len(self.accounts.summary(a, end)[2]) for a in accounts.values()) if end else Counter()
        return {"accounts": len(accounts), "with_several_contacts": sum(1 for n in sizes if n > 1),
                "temperature": {t: temps.get(t, 0) for t in TEMPERATURES}, "mqas": len(self.first_mqa),
                "roles_covered": dict(sorted(covered.items()))}


def compare(a: Replay, b: Replay, sample: int) -> dict:
    fa, fb = a.final, b.final
    differ = []
    for cid in fa.keys() | fb.keys():
        x, y = fa.get(cid), fb.get(cid)
        if x is None or y is None or x[0] != y[0]:
            differ.append(cid)
    temp_differ = sum(1 for cid in fa if cid in fb and fa[cid][1] != fb[cid][1])

    def score(cid):
        return max(fa[cid][2] if cid in fa else float("-inf"), fb[cid][2] if cid in fb else float("-inf"))

    differ.sort(key=lambda c: (-score(c), c))

    def side(v):
        return None if v is None else {"stage": v[0], "temperature": v[1], "score": round(v[2], 2)}

    return {
        "stage_differs": len(differ),
        "temperature_differs": temp_differ,
        "mql_under_a_only": len(a.first_mql.keys() - b.first_mql.keys()),
        "mql_under_b_only": len(b.first_mql.keys() - a.first_mql.keys()),
        "sample": [{"contact_id": c, "a": side(fa.get(c)), "b": side(fb.get(c))} for c in differ[:sample]],
    }


def run_backtest(rules: list[tuple[str, object]], source: Source, chunks, *, by_time: bool, end: int | None,
                 sample: int = 20) -> dict:
    replays = [Replay(label, r) for label, r in rules]
    identities = Identities()
    t0 = time.perf_counter()
    latest = None
    need_latest = end is None and source.end_hint is None
    for chunk in chunks:
        if chunk and need_latest:
            m = max(_time_of(it) for it in chunk)
            latest = m if latest is None or m > latest else latest
        if by_time:  # globally, so that an identifying event comes after the visitor's earlier browsing too
            chunk.sort(key=_time_of)
        for segment, alias in identities.segments(chunk):
            groups = group(segment)
            for rp in replays:
                rp.feed(groups)
                if alias is not None:
                    rp.merge(alias)
        chunk = groups = segment = None  # let this chunk go before the reader builds the next one
    source.counts.update(identities.counts)
    t_replay = time.perf_counter() - t0
    end_at = end if end is not None else source.end_hint if source.end_hint is not None else latest
    if end_at is None:
        raise CliError(f"{source.description}: no records to replay")
    for rp in replays:
        rp.finish(end_at)
    elapsed = time.perf_counter() - t0
    events = source.counts.get("records", 0)
    result = {
        "source": source.description,
        "order": "event time per contact" if by_time else "delivery (file) order",
        "end": iso(end_at),
        "end_ms": end_at,
        "input": dict(source.counts),
        "rules": [rp.summary() for rp in replays],
        "seconds": round(elapsed, 3),
        "replay_seconds": round(t_replay, 3),
        "records_per_s": round(events / elapsed) if elapsed > 0 else None,
        "behaviour_events": replays[0].events,
        "events_per_s": round(replays[0].events / elapsed) if elapsed > 0 else None,
    }
    if len(replays) == 2:
        result["diff"] = compare(replays[0], replays[1], sample)
    result["_replays"] = replays  # for the chart; dropped before JSON
    return result


# ============================================================================ outputs

def _f1(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def markdown(res: dict, chart: str | None) -> str:
    rs = res["rules"]
    head = "| | " + " | ".join(f"{r['label']}: `{r['rules_version']}`" for r in rs) + " |"
    sep = "|---|" + "---:|" * len(rs)

    def row(name, fn):
        return f"| {name} | " + " | ".join(str(fn(r)) for r in rs) + " |"

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f} %"

    lines = [
        "# leadpulse backtest", "",
        f"* input: {res['source']}",
        f"* order: {res['order']}",
        f"* end instant (temperatures and stages): {res['end']}",
        f"* records read: {res['input'].get('records', 0):,}" + "".join(
            f"; {k}: {v:,}" for k, v in res["input"].items() if k != "records"),
        f"* replayed in {res['seconds']:.1f} s ({res['behaviour_events']:,} behaviour events, "
        f"{res['events_per_s'] or 0:,} events/s)", "",
        "## Results", "", head, sep,
        row("rules file", lambda r: f"`{r['rules_source']}`"),
        row("contacts", lambda r: f"{r['contacts']:,}"),
        row("hot", lambda r: f"{r['temperature']['hot']:,}"),
        row("warm", lambda r: f"{r['temperature']['warm']:,}"),
        row("cold", lambda r: f"{r['temperature']['cold']:,}"),
        row("MQLs (contacts)", lambda r: f"{r['mqls']:,}"),
        row("SQLs (contacts)", lambda r: f"{r['sqls']:,}"),
        row("customers", lambda r: f"{r['customers']:,}"),
        row("median time to MQL", lambda r: r["median_time_to_mql"]),
        row("MQL → SQL conversion", lambda r: f"{pct(r['mql_to_sql']['rate'])} "
                                              f"({r['mql_to_sql']['converted']}/{r['mql_to_sql']['decided']} decided)"),
        row("sales updates refused", lambda r: f"{sum(r['sales_updates_refused'].values()):,}"),
        row("events rejected", lambda r: f"{sum(r['events_rejected'].values()):,}"),
        row("identity merges (anonymous → known, duplicates)", lambda r: f"{r['merged']:,}"),
        row("anonymous visitors never identified", lambda r: f"{r['anonymous_at_end']:,}"),
        row("accounts (with several contacts)", lambda r: f"{r['accounts']['accounts']:,} "
                                                         f"({r['accounts']['with_several_contacts']:,})"),
        row("accounts hot / warm / cold", lambda r: "{hot:,} / {warm:,} / {cold:,}".format(**r["accounts"]["temperature"])),
        row("MQAs (marketing-qualified accounts)", lambda r: f"{r['accounts']['mqas']:,}"),
        "", "### Stages at the end instant", "", head, sep,
    ]
    for s in rs[0]["stages"]:
        lines.append(row(s, lambda r, s=s: f"{r['stages'][s]:,}"))
    for r in rs:
        if r["sales_updates_refused"]:
            lines += ["", f"Sales updates the core refused under {r['label']} (a stage they do not apply to): " +
                      ", ".join(f"{k} × {v}" for k, v in r["sales_updates_refused"].items())]
    d = res.get("diff")
    if d:
        lines += ["", "## A vs B", "",
                  f"* contacts whose stage differs at the end: **{d['stage_differs']:,}**",
                  f"* contacts whose temperature differs: {d['temperature_differs']:,}",
                  f"* MQL under A only: {d['mql_under_a_only']:,}; under B only: {d['mql_under_b_only']:,}", ""]
        if d["sample"]:
            lines += ["| contact | stage A | stage B | score A | score B |", "|---|---|---|---:|---:|"]
            for s in d["sample"]:
                a, b = s["a"] or {}, s["b"] or {}
                lines.append(f"| `{s['contact_id']}` | {a.get('stage', '-')} | {b.get('stage', '-')} | "
                             f"{_f1(a.get('score'))} | {_f1(b.get('score'))} |")
    if chart:
        lines += ["", "## Chart", "", f"![daily MQLs and score distribution]({chart})"]
    return "\n".join(lines) + "\n"


def write_chart(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from datetime import datetime, timezone

    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    replays = res["_replays"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 8), constrained_layout=True)
    days = sorted({d for rp in replays for d in rp.daily_mqls})
    if days:
        first = datetime.strptime(days[0], "%Y-%m-%d").replace(tzinfo=timezone.utc)
        last = datetime.strptime(days[-1], "%Y-%m-%d").replace(tzinfo=timezone.utc)
        n = (last - first).days + 1
        xs = [datetime.fromtimestamp(first.timestamp() + i * DAY_MS / 1000, tz=timezone.utc) for i in range(n)]
        for rp, style in zip(replays, ("-", "--")):
            ys = [rp.daily_mqls.get(x.strftime("%Y-%m-%d"), 0) for x in xs]
            ax1.plot(xs, ys, style, label=f"{rp.label}: {rp.rules.version}", drawstyle="steps-mid")
        ax1.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    else:
        ax1.text(0.5, 0.5, "no MQL", ha="center", va="center", transform=ax1.transAxes)
    ax1.set_title("MQLs per day")
    ax1.set_ylabel("new MQLs")
    ax1.legend(loc="upper left")
    ax1.grid(alpha=0.3)
    scores = [[v[2] for v in rp.final.values()] for rp in replays]
    allv = [s for lst in scores for s in lst]
    if allv:
        lo, hi = min(allv), max(allv)
        bins = list(range(int(lo // 5 * 5), int(hi // 5 * 5) + 10, 5))
        for rp, lst, width in zip(replays, scores, (2.2, 1.4)):
            ax2.hist(lst, bins=bins, histtype="step", linewidth=width, label=f"{rp.label}: {rp.rules.version}")
        for rp, style in zip(replays, ("-", "--")):
            ax2.axvline(rp.rules.mql_min_score, color="grey", linestyle=style, linewidth=1)
    ax2.set_yscale("log")
    ax2.set_title(f"score distribution at {res['end']} (vertical lines: MQL thresholds)")
    ax2.set_xlabel("score")
    ax2.set_ylabel("contacts (log)")
    ax2.legend(loc="upper right")
    ax2.grid(alpha=0.3)
    try:
        fig.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise CliError(f"cannot write chart {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def print_human(res: dict) -> None:
    from tools.common import console, table

    out = console()
    rs = res["rules"]
    out.print(f"backtest of {res['source']}")
    out.print(f"  {res['input'].get('records', 0):,} records ({res['behaviour_events']:,} behaviour events) in "
              f"{res['order']}, replayed in {res['seconds']:.1f} s ({res['events_per_s'] or 0:,} events/s)")
    out.print(f"  temperatures and stages at the end instant {res['end']}")
    cols = [f"{r['label']}: {r['rules_version']}" for r in rs]
    t = table("", *cols, right=tuple(cols))

    def row(name, fn):
        t.add_row(name, *[fn(r) for r in rs])

    row("contacts", lambda r: f"{r['contacts']:,}")
    row("hot / warm / cold", lambda r: "{hot:,} / {warm:,} / {cold:,}".format(**r["temperature"]))
    row("MQLs", lambda r: f"{r['mqls']:,}")
    row("SQLs", lambda r: f"{r['sqls']:,}")
    row("customers", lambda r: f"{r['customers']:,}")
    row("median time to MQL", lambda r: r["median_time_to_mql"])
    row("MQL → SQL", lambda r: "-" if r["mql_to_sql"]["rate"] is None else
        f"{100 * r['mql_to_sql']['rate']:.1f} % of {r['mql_to_sql']['decided']:,}")
    row("sales updates refused", lambda r: f"{sum(r['sales_updates_refused'].values()):,}")
    row("events rejected", lambda r: f"{sum(r['events_rejected'].values()):,}")
    row("identity merges", lambda r: f"{r['merged']:,}")
    row("accounts (several contacts)", lambda r: f"{r['accounts']['accounts']:,} ({r['accounts']['with_several_contacts']:,})")
    row("MQAs", lambda r: f"{r['accounts']['mqas']:,}")
    out.print(t)
    d = res.get("diff")
    if d:
        out.print(f"stage differs for {d['stage_differs']:,} contacts (MQL under A only {d['mql_under_a_only']:,}, "
                  f"under B only {d['mql_under_b_only']:,}); temperature differs for {d['temperature_differs']:,}")
        if d["sample"]:
            s = table("contact", "stage A", "stage B", "score A", "score B", right=("score A", "score B"),
                      nowrap=("contact", "stage A", "stage B"))
            for x in d["sample"][:10]:
                a, b = x["a"] or {}, x["b"] or {}
                s.add_row(x["contact_id"], a.get("stage", "-"), b.get("stage", "-"),
                          f"{a.get('score', 0):.1f}", f"{b.get('score', 0):.1f}")
            out.print(s)


# ============================================================================ CLI

def add_parser(sub, common) -> None:
    import argparse

    p = sub.add_parser(
        "backtest", parents=[common], help="replay history through the scoring core under one or two rules files",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  leadpulse backtest --rules rules/live.toml --compare rules/next.toml --events funnel.avro \\\n"
               "      --report report.md --chart chart.png\n"
               "  leadpulse backtest --rules default --topic lead-events --from 2024-10-01 --to 2024-12-31",
    )
    p.add_argument("--rules", default=None, metavar="A",
                   help="rules file (or 'default'; default: $LEADPULSE_RULES or the built-in rules)")
    p.add_argument("--compare", default=None, metavar="B", help="a second rules file to compare with A")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", metavar="FILE", help="Avro object container file (e.g. from `leadpulse simulate --out`)")
    src.add_argument("--topic", action="append", metavar="T",
                     help="behaviour-events topic to read (repeatable); the profiles, qualifications, "
                          "erasures, identity, merges and account-memberships topics of the environment are read too")
    p.add_argument("--profiles-topic", default=None, help="default $LEADPULSE_PROFILES_TOPIC ('' to skip)")
    p.add_argument("--qualifications-topic", default=None, help="default $LEADPULSE_QUALIFICATIONS_TOPIC ('' to skip)")
    p.add_argument("--erasures-topic", default=None, help="default $LEADPULSE_ERASURES_TOPIC ('' to skip)")
    p.add_argument("--bootstrap", default=None, metavar="HOST:PORT", help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--from", dest="from_", default=None, metavar="INSTANT",
                   help="ignore events and sales updates before this event time (ISO 8601 or epoch ms)")
    p.add_argument("--to", default=None, metavar="INSTANT",
                   help="ignore inputs after this event time; also the end instant of the report")
    p.add_argument("--order", choices=("delivery", "time"), default=None,
                   help="feed each contact's records in delivery order or sorted by event time "
                        "(default: delivery for files, time for Kafka)")
    p.add_argument("--report", metavar="FILE.md", help="write a Markdown report")
    p.add_argument("--chart", metavar="FILE.png", help="write a PNG chart (daily MQLs, score distribution)")
    p.add_argument("--sample", type=int, default=20, help="differing contacts listed with --compare (default 20)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from tools.common import (bootstrap_arg, check_kafka, load_rules_arg, no_gc, parse_instant, print_json,
                              readable_file, settings, writable_path)

    rules = [("A", load_rules_arg(args.rules, "rules file"))]
    if args.compare:
        rules.append(("B", load_rules_arg(args.compare, "rules file (--compare)")))
    from_ms = parse_instant(args.from_, "--from") if args.from_ else None
    to_ms = parse_instant(args.to, "--to") if args.to else None
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise CliError("--from is after --to")
    report = writable_path(args.report, "report file") if args.report else None
    chart = writable_path(args.chart, "chart file") if args.chart else None
    if args.sample < 0:
        raise CliError("--sample must be >= 0")
    window = _Window(from_ms, to_ms)
    if args.events:
        path = readable_file(args.events, "events file")
        source, chunks = read_avro(path, window)
        by_time = args.order == "time"
    else:
        s = settings()
        topics = list(dict.fromkeys(args.topic))
        optional = []
        for extra, default in ((args.profiles_topic, s.profiles_topic),
                               (args.qualifications_topic, s.qualifications_topic),
                               (args.erasures_topic, s.erasures_topic)):
            if extra:  # named explicitly: must exist
                if extra not in topics:
                    topics.append(extra)
            elif extra is None and default not in topics and default not in optional:
                optional.append(default)
        for default in (s.identity_topic, s.merges_topic, s.accounts_input_topic):  # identities and accounts
            if default not in topics and default not in optional:
                optional.append(default)
        bootstrap = bootstrap_arg(args.bootstrap)
        check_kafka(bootstrap)
        source, chunks = read_topics(bootstrap, topics, optional, window)
        by_time = args.order != "delivery"
    with no_gc():
        res = run_backtest(rules, source, chunks, by_time=by_time, end=to_ms, sample=args.sample)
    if chart:
        write_chart(res, chart)
        res["chart"] = str(chart)
    if report:
        rel = None
        if chart:
            try:
                rel = str(chart.resolve().relative_to(report.resolve().parent))
            except ValueError:
                rel = str(chart.resolve())
        try:
            report.write_text(markdown(res, rel), encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write report {report}: {exc.strerror or exc}") from None
        res["report"] = str(report)
    res.pop("_replays", None)
    if args.json:
        print_json(res)
    else:
        print_human(res)
        for k in ("report", "chart"):
            if k in res:
                print(f"{k}: {res[k]}")
    return 0
