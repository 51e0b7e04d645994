"""`make bench-step`: events/s of the worker's batch step alone (`agents.pipeline`: decode → core →
table → encoded outputs), in-process, with no Kafka: the ceiling of one worker process on this input.

Same input as `make bench` (`--input realistic`, the default: a live feed replayed, < 0.1 % late; or
`--input late`, shuffled over 20 days, about 40 % late and dead-lettered: the input before issue 16),
batches of 2,000 as the worker takes them in a backlog, a dict as the table.

`--accounts`: every contact has a profile first (not timed) at one of `contacts / 10` companies, with a
buying-group role, so each contact's batch also sends its share to its account; the shares of a batch
are fed into the next one, as the account-shares topic would (timed): what account scoring costs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka.partitioner import murmur2  # noqa: E402

from agents.pipeline import EVENTS, PROFILES, SHARES, Pipeline, RawMessage  # noqa: E402
from bench.harness import INPUTS, RESULTS, dataset  # noqa: E402
from scoring.model import ScoringModel  # noqa: E402
from scoring.rules import default_rules  # noqa: E402
from streams.codec import AvroCodec  # noqa: E402


TITLES = ("CFO", "Data Engineer", "Marketing Manager", "Analyst")


def profiles(codec: AvroCodec, records: list, partitions: int) -> list[RawMessage]:
    """A profile per contact, the day before its first event, at one of a tenth as many companies."""
    first: dict[bytes, int] = {}
    for k, v in records:
        t = codec.decode("BehaviourEvent", v)["occurred_at"]
        first[k] = min(first.get(k, t), t)
    companies = max(1, len(first) // 10)
    return [RawMessage("profiles", (murmur2(k) & 0x7FFFFFFF) % partitions, i, k, codec.encode("ContactProfile", dict(
        contact_id=k.decode(), email=f"p{i}@company-{i % companies}.example", job_title=TITLES[i % len(TITLES)],
        company="C", company_size=300, industry="software", country="FR", updated_at=t - 86_400_000)))
        for i, (k, t) in enumerate(sorted(first.items()))]


def run(events: int, contacts: int, batch: int, partitions: int = 4, kind: str = "realistic",
        accounts: bool = False) -> dict:
    codec = AvroCodec()
    records = dataset(events, contacts, kind=kind)
    messages = [RawMessage("events", (murmur2(k) & 0x7FFFFFFF) % partitions, i, k, v) for i, (k, v) in enumerate(records)]
    pipeline = Pipeline(codec, ScoringModel(default_rules()), {},
                        {"events": EVENTS, "profiles": PROFILES, "shares": SHARES})
    shares: list[RawMessage] = []
    if accounts:
        ready = profiles(codec, records, partitions)
        for i in range(0, len(ready), batch):
            pipeline.process(ready[i:i + batch])
    dead = n_shares = n_changes = 0
    started = time.perf_counter()
    cpu = time.process_time()
    for i in range(0, len(messages), batch):
        out = pipeline.process(shares + messages[i:i + batch])
        dead += len(out.dead_letters)
        n_changes += len(out.accounts)
        shares = [RawMessage("shares", r.partition, 0, r.key, r.value) for r in out.shares]
        n_shares += len(shares)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    result = {"benchmark": "batch-step-in-process", "events": events, "contacts": contacts, "input": kind,
              "batch": batch, "seconds": round(elapsed, 2), "events_per_second": round(events / elapsed),
              "cpu_seconds_per_1k_events": round(1000 * cpu / events, 4), "dead_letters": dead}
    if accounts:
        result.update(accounts=max(1, contacts // 10), account_shares=n_shares, account_changes=n_changes)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--contacts", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--input", choices=INPUTS, default="realistic")
    p.add_argument("--accounts", action="store_true", help="every contact in an account (see above)")
    args = p.parse_args(argv)
    result = run(args.events, args.contacts, args.batch, kind=args.input, accounts=args.accounts)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("step-accounts.json" if args.accounts else "step.json")).write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result.items():
        print(f"{k:>26}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
