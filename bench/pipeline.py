"""`make bench-pipeline`: events/s of one leadpulse worker on the local broker.

The input (default 100k Avro behaviour events over 10k contacts, 4 partitions, `--input realistic` or
`late`: see `bench.harness.events`) is produced before the worker starts, so the worker drains a backlog: throughput = events / (all offsets committed − worker
ready). Offsets are committed every second, so the figure is good to about a second of the run."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import INPUTS, RESULTS, broker, create_topics, dataset, produce_all, wait_group_done  # noqa: E402
from tools.runtime import Worker, topic_env  # noqa: E402


def run(args) -> dict:
    with broker() as bootstrap:
        suffix = f"bench-{uuid.uuid4().hex[:6]}"
        names = topic_env(suffix)
        topic = names["LEADPULSE_EVENTS_TOPIC"]
        t = time.perf_counter()
        records = dataset(args.events, args.contacts, seed=args.seed, kind=args.input)
        gen_s = time.perf_counter() - t
        asyncio.run(create_topics(bootstrap, [topic], args.partitions))
        produce_s = asyncio.run(produce_all(bootstrap, topic, records))
        with tempfile.TemporaryDirectory() as tmp:
            env = {"LEADPULSE_PARTITIONS": str(args.partitions), "LEADPULSE_STORE": args.store,
                   "LEADPULSE_PROCESSING_GUARANTEE": args.guarantee}
            worker = Worker(bootstrap, suffix, Path(tmp), name="bench", extra_env=env).start()
            try:
                worker.wait_ready(timeout=120)
                ready = time.perf_counter()
                res = asyncio.run(wait_group_done(bootstrap, names["LEADPULSE_APP_ID"], topic, args.events,
                                                  timeout=args.timeout, pid=worker.proc.pid))
            finally:
                worker.stop()
        elapsed = res["done"] - ready
        return {
            "benchmark": "pipeline-one-worker",
            "events": args.events, "contacts": args.contacts, "partitions": args.partitions, "input": args.input,
            "store": args.store, "processing_guarantee": args.guarantee,
            "dataset_seconds": round(gen_s, 2), "produce_seconds": round(produce_s, 2),
            "elapsed_seconds": round(elapsed, 2),
            "events_per_second": round(args.events / elapsed),
            "cpu_seconds_per_1k_events": round(1000 * res["cpu_s"] / args.events, 4),
            "peak_rss_mb": round(res["peak_rss_mb"], 1),
        }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--contacts", type=int, default=10_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--store", default="rocksdb://", choices=["rocksdb://", "memory://"])
    p.add_argument("--guarantee", default="at_least_once", choices=["at_least_once", "exactly_once"])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--input", choices=INPUTS, default="realistic",
                   help="realistic (< 0.1 %% late) or late (about 40 %% dead-lettered: the input before issue 16)")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    args = p.parse_args(argv)
    result = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>28}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
