"""`make bench-step`: events/s of the worker's batch step alone (`agents.pipeline`: decode → core →
table → encoded outputs), in-process, with no Kafka: the ceiling of one worker process on this input.

Same input as `make bench` (`--input realistic`, the default: a live feed replayed, < 0.1 % late; or
`--input late`, shuffled over 20 days, about 40 % late and dead-lettered: the input before issue 16),
batches of 2,000 as the worker takes them in a backlog, a dict as the table."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka.partitioner import murmur2  # noqa: E402

from agents.pipeline import EVENTS, Pipeline, RawMessage  # noqa: E402
from bench.harness import INPUTS, RESULTS, dataset  # noqa: E402
from scoring.model import ScoringModel  # noqa: E402
from scoring.rules import default_rules  # noqa: E402
from streams.codec import AvroCodec  # noqa: E402


def run(events: int, contacts: int, batch: int, partitions: int = 4, kind: str = "realistic") -> dict:
    records = dataset(events, contacts, kind=kind)
    messages = [RawMessage("events", (murmur2(k) & 0x7FFFFFFF) % partitions, i, k, v) for i, (k, v) in enumerate(records)]
    pipeline = Pipeline(AvroCodec(), ScoringModel(default_rules()), {}, {"events": EVENTS})
    dead = 0
    started = time.perf_counter()
    cpu = time.process_time()
    for i in range(0, len(messages), batch):
        dead += len(pipeline.process(messages[i:i + batch]).dead_letters)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"benchmark": "batch-step-in-process", "events": events, "contacts": contacts, "input": kind, "batch": batch,
            "seconds": round(elapsed, 2), "events_per_second": round(events / elapsed),
            "cpu_seconds_per_1k_events": round(1000 * cpu / events, 4), "dead_letters": dead}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--contacts", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--input", choices=INPUTS, default="realistic")
    args = p.parse_args(argv)
    result = run(args.events, args.contacts, args.batch, kind=args.input)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "step.json").write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result.items():
        print(f"{k:>26}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
