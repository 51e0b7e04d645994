"""`make bench-collector`: the HTTP collector under load on loopback, against a local broker.

A `python -m collector` process (its own core to compete for, like in production) receives
Segment calls from an asyncio HTTP client (aiohttp) at a few concurrency levels, as single
`/v1/track` calls and as `/v1/batch` requests of 50 messages (what Segment's libraries send). Every
answer is 200 only after the broker acknowledged every record (acks=all), so the request latency
IS the acknowledgement latency. Each cell is bounded in requests and in time. Reported per cell:
accepted events/s, p50/p99/max request latency, the collector's CPU, the machine's load average;
at the end the events topic's end offsets are checked against the accepted count.

Results: bench/results/collector.json and collector.md. Keep it short on a shared machine:
the defaults run in about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import RESULTS, broker, end_offsets_sync, proc_stats  # noqa: E402
from tools.runtime import CollectorProcess, topic_env  # noqa: E402

KEY = "wk-bench-" + uuid.uuid4().hex
TRACKS = [("Webinar Registered", {"webinar": "q4-roadmap"}), ("Whitepaper Downloaded", {"asset_type": "whitepaper"}),
          ("Demo Requested", {"plan": "pro"}), ("Email Link Clicked", {"campaign": "nurture-3"}),
          ("Pricing Viewed", {"url": "/pricing"}), ("Case Study Viewed", {"customer": "northwind"})]


def track(rnd: random.Random, contacts: int) -> dict:
    name, props = rnd.choice(TRACKS)
    return {"type": "track", "messageId": uuid.uuid4().hex, "userId": f"lead-{rnd.randrange(contacts)}",
            "event": name, "properties": props}


def message(rnd: random.Random, contacts: int) -> dict:
    """A website's mix: 40 % anonymous page views, the rest track calls of known leads."""
    if rnd.random() < 0.4:
        return {"type": "page", "messageId": uuid.uuid4().hex, "anonymousId": f"cookie-{rnd.randrange(contacts * 3)}",
                "properties": {"url": f"https://www.leadpulse.example/blog/post-{rnd.randrange(200)}",
                               "title": "Lead scoring in real time"}}
    return track(rnd, contacts)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def cell(url: str, concurrency: int, batch: int, max_requests: int, max_seconds: float,
               contacts: int, seed: int) -> dict:
    import aiohttp

    rnd = random.Random(seed)
    headers = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode(),
               "Content-Type": "application/json"}
    latencies: list[float] = []
    accepted = statuses_other = 0
    sent = 0
    deadline = time.perf_counter() + max_seconds

    async def one(session):
        nonlocal accepted, statuses_other, sent
        while sent < max_requests and time.perf_counter() < deadline:
            sent += 1
            if batch == 1:
                path, body = "/v1/track", track(rnd, contacts)
            else:
                path, body = "/v1/batch", {"batch": [message(rnd, contacts) for _ in range(batch)]}
            data = json.dumps(body).encode()
            started = time.perf_counter()
            async with session.post(url + path, data=data, headers=headers) as resp:
                answer = await resp.read()
            latencies.append(time.perf_counter() - started)
            if resp.status == 200:
                accepted += json.loads(answer)["accepted"]
            else:
                statuses_other += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(one(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"concurrency": concurrency, "messages_per_request": batch, "requests": len(latencies),
            "seconds": round(elapsed, 2), "accepted_events": accepted, "non_200": statuses_other,
            "accepted_events_per_s": round(accepted / elapsed), "requests_per_s": round(len(latencies) / elapsed),
            "p50_ms": round(1000 * percentile(latencies, 0.50), 1), "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
            "max_ms": round(1000 * max(latencies, default=0.0), 1),
            "mean_ms": round(1000 * statistics.fmean(latencies), 1) if latencies else 0.0}


def pure_rate(batches: int = 400, batch: int = 50, contacts: int = 10_000) -> int:
    """Messages/s of the collector's pure part alone (JSON parse, mapping, Avro encoding) on one core,
    in this process: what one collector process could do if HTTP and Kafka cost nothing."""
    from collector.config import load_mapping
    from collector.mapping import map_request
    from streams.codec import AvroCodec

    cfg, codec, rnd = load_mapping(), AvroCodec(), random.Random(3)
    bodies = [json.dumps({"batch": [message(rnd, contacts) for _ in range(batch)]}).encode() for _ in range(20)]
    started = time.process_time()
    for i in range(batches):
        for result in map_request(json.loads(bodies[i % len(bodies)]), None, "bench", int(time.time() * 1000), cfg,
                                  32_768):
            for out in result.outcome.outputs:
                codec.encode(out.record_name, out.record)
    return round(batches * batch / (time.process_time() - started))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated levels (default 1,8,32)")
    p.add_argument("--batch", type=int, default=50, help="messages per /v1/batch request (default 50)")
    p.add_argument("--seconds", type=float, default=6.0, help="at most this long per cell (default 6)")
    p.add_argument("--requests", type=int, default=4000, help="at most this many requests per cell (default 4000)")
    p.add_argument("--contacts", type=int, default=10_000)
    args = p.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    suffix = "bench-" + uuid.uuid4().hex[:8]
    cells = []
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="leadpulse-bench-collector-") as tmp:
        collector = CollectorProcess(bootstrap, suffix, Path(tmp), write_keys={"bench": KEY}, extra_env={
            "LEADPULSE_COLLECTOR_RATE": "1000000000", "LEADPULSE_COLLECTOR_BURST": "1000000000",
            "LEADPULSE_LOG_LEVEL": "warning"}).start()
        try:
            collector.wait_ready(90)
            asyncio.run(cell(collector.url, 4, 10, 100, 5.0, args.contacts, 0))  # warm-up (not reported)
            warm = end_offsets_sync(bootstrap, topic_env(suffix)["LEADPULSE_EVENTS_TOPIC"], 4)
            for batch in (1, args.batch):
                for i, c in enumerate(levels):
                    load_before = os.getloadavg()[0]
                    cpu_before = proc_stats(collector.proc.pid).cpu_s
                    result = asyncio.run(cell(collector.url, c, batch, args.requests, args.seconds, args.contacts,
                                              seed=batch * 100 + i))
                    result["collector_cpu_cores"] = round((proc_stats(collector.proc.pid).cpu_s - cpu_before)
                                                          / result["seconds"], 2)
                    result["load_avg_1m"] = f"{load_before:.2f}→{os.getloadavg()[0]:.2f}"
                    cells.append(result)
                    print(json.dumps(result))
            on_topic = end_offsets_sync(bootstrap, topic_env(suffix)["LEADPULSE_EVENTS_TOPIC"], 4) - warm
            peak_rss = proc_stats(collector.proc.pid).peak_rss_mb
        finally:
            collector.stop()
    accepted = sum(c["accepted_events"] for c in cells)
    pure = pure_rate()
    report = {"benchmark": "collector-http-loopback", "cpus": os.cpu_count(), "partitions": 4,
              "acks": "all", "idempotence": True, "cells": cells, "accepted_total": accepted,
              "events_on_topic": on_topic, "all_accepted_on_topic": on_topic >= accepted,
              "collector_peak_rss_mb": round(peak_rss, 1), "pure_mapping_messages_per_cpu_s": pure}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "collector.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# `make bench-collector`", "",
             f"Collector process, aiohttp client and a single-node broker on one {os.cpu_count()}-core machine "
             f"(loopback), acks=all, idempotent producer, 4 partitions. Latency = request sent → 200 "
             f"received, i.e. after the broker acknowledged every record.", "",
             "| messages/request | concurrency | requests | accepted events/s | p50 ms | p99 ms | max ms | "
             "collector CPU (cores) | load avg 1m |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in cells:
        lines.append(f"| {c['messages_per_request']} | {c['concurrency']} | {c['requests']} | "
                     f"{c['accepted_events_per_s']:,} | {c['p50_ms']} | {c['p99_ms']} | {c['max_ms']} | "
                     f"{c['collector_cpu_cores']} | {c['load_avg_1m']} |")
    lines += ["", f"Accepted {accepted:,} events; {on_topic:,} on the events topic "
                  f"({'all there' if on_topic >= accepted else 'MISSING SOME'}); collector peak RSS "
                  f"{peak_rss:.0f} MB. The pure part alone (JSON parse, mapping, Avro encoding, in process): "
                  f"{pure:,} messages per CPU second."]
    (RESULTS / "collector.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if on_topic >= accepted else 1


if __name__ == "__main__":
    sys.exit(main())
