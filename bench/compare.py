"""`make bench`: leadpulse side by side with the Python limit, a naive Faust agent, Quix Streams and a
Kafka Streams peer, on one broker and one pre-produced input.

    python bench/compare.py [--quick] [--events N] [--contacts M] [--input realistic|late] [--only ...]
        [--kstreams-threads 1,2] [--kstreams-guarantee at_least_once|exactly_once_v2] [--profile] [--no-quix]

One broker (the local KRaft launcher unless KAFKA_BOOTSTRAP_SERVERS is set), one input: N Avro
behaviour events (Confluent framing) over M contacts, 4 partitions, produced once (`bench.harness.events`:
"realistic" by default, < 0.1 % later than the 7-day tolerance; "late", about 40 %). Each contender then
drains that backlog with its own consumer group, one at a time, one process each:

  (a) raw       aiokafka getmany → send passthrough, no decoding (`bench/raw_passthrough.py`)
  (b) naive     a Faust agent as Faust's docs show it: one event at a time, avro-python3 decoding, a table
                write and a `topic.send` per event (`bench/naive_faust.py`)
  (d) quix      Quix Streams, per-message stateful `apply` + `to_topic` (`bench/quix_app.py`, its own pinned
                venv in .leadpulse/bench-quix, created on first use)
  (e) kstreams  the Kafka Streams peer (`bench/kstreams/`, Java 17, built with Maven on first use): base
                points, exact decay, RocksDB store, temperature changes; 1 stream thread, then 2 (`e2`).
                Checked against the scoring core after its drain (`bench/jvm_peer.py`)
  (c) leadpulse `python -m agents worker`, default rules, its own app id

A contender that cannot run (no Java, a failed install, a crash) is a FAILED line with its reason in the
results; one left out on purpose (--only, --no-quix) is a "not run" line.

Throughput is read from the outside: the group's committed offsets on the input topic, polled every
100 ms. "sustained" is the slope between the first and the next-to-last commit (both taken while the
contender is busy; the last commit comes up to one commit interval after the work ends); "first→done"
is the brief's events / (first commit → all committed); "from ready" counts start-up stalls too.
CPU seconds and peak RSS come from /proc for the contender's process (all its threads: librdkafka's, the
JVM's JIT and GC threads), from ready to all committed; the "steady" CPU figures leave out the first 20 %
of the input (--warmup-fraction) and the tail, for every contender alike.

For leadpulse also: produce → LifecycleChange latency at 25/50/75 % of its measured rate (a paced
producer of live events on existing contacts, every 20th a fresh contact's demo_request that turns it
cold → warm; latency = receipt of the change on the lifecycle topic − the event's occurred_at, stamped
at send), changelog recovery rate (N encoded contact states written straight into a fresh app's
`<app_id>-contacts-changelog`, then a worker with an empty data dir; time until "Ready" and the restore
phase from Faust's own log lines) and state bytes per contact (the run's changelog, latest per key).

Results: bench/results/compare.json, compare.md, compare.png (--quick: compare-quick.*, not committed;
compare-profile.txt with --profile). The last line printed is the ratios."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import io
import json
import os
import platform
import pstats
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zlib
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from aiokafka.structs import TopicPartition  # noqa: E402

from bench import jvm_peer  # noqa: E402
from bench.harness import (  # noqa: E402
    EVENT_MIX, INPUTS, RESULTS, committed_total, create_topics, encode, events, late_events, produce_all, proc_stats,
    read_latest, read_topic,
)
from scoring import default_rules  # noqa: E402
from streams.codec import AvroCodec  # noqa: E402
from tools.runtime import Worker, topic_env  # noqa: E402

QUIX_VENV = ROOT / ".leadpulse" / "bench-quix"
#: Quix Streams and the codec it decodes with, pinned: the venv is (re)made when these change.
QUIX_PINS = ("quixstreams==3.28.1", "fastavro==1.13.1")
WORK = ROOT / ".leadpulse" / "bench-compare"
TARGETS = {"vs_raw": 0.5, "vs_naive": 10.0, "vs_kstreams_cpu": 0.5, "p99_ms_at_50pct": 50.0,
           "recovery_per_s": 200_000, "state_bytes": 1024}
LABELS = {"raw": "(a) raw aiokafka passthrough", "naive": "(b) naive Faust agent",
          "leadpulse": "(c) leadpulse", "quix": "(d) Quix Streams",
          "kstreams": "(e) Kafka Streams peer, 1 thread", "kstreams2": "(e2) Kafka Streams peer, 2 threads"}
ORDER = ("raw", "naive", "quix", "kstreams", "kstreams2", "leadpulse")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- processes -------------------------------------------------------------------------------------

_STARTED: list[subprocess.Popen] = []


@atexit.register
def _kill_orphans() -> None:
    """A contender never outlives the benchmark, even one that crashed before its own cleanup."""
    for proc in _STARTED:
        if proc.poll() is None:
            proc.kill()


class Proc:
    """A contender subprocess with its own log; ready when `marker` shows up in the log."""

    def __init__(self, name: str, cmd: list[str], env: dict, workdir: Path, marker: str):
        self.name, self.cmd, self.env, self.workdir, self.marker = name, cmd, env, workdir, marker
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{name}.log"

    def start(self) -> "Proc":
        self.workdir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        _STARTED.append(self.proc)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            if self.marker in self.log_text():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.log_text()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


_BROKER_DIR: list[Path] = []


@contextmanager
def own_broker(state_dir: Path):
    """KAFKA_BOOTSTRAP_SERVERS if set, else a local broker of this run's own (harness.broker()'s state dir
    is shared: another benchmark started meanwhile reuses that broker and stops it when it ends)."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    from streams.localkafka import LocalKafka

    k = LocalKafka(state_dir=state_dir)
    _BROKER_DIR.append(state_dir)
    try:
        yield k.start()
    finally:
        k.stop()
        _BROKER_DIR.remove(state_dir)


def broker_pid() -> int | None:
    if not _BROKER_DIR:
        return None
    try:
        pid = int((_BROKER_DIR[-1] / "kafka.pid").read_text().strip())
        proc_stats(pid)
        return pid
    except (OSError, ValueError):
        return None


# -- measuring a drain -----------------------------------------------------------------------------

async def track(bootstrap: str, group: str, topic: str, total: int, timeout: float, proc, poll: float = 0.1) -> dict:
    """Committed offsets of `group` on `topic` every `poll` s until they reach `total` (or time out), with
    the contender's CPU seconds at each poll (for the steady window of `rates`)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    pid = proc.pid
    bpid = broker_pid()
    before, bbefore = proc_stats(pid), (proc_stats(bpid) if bpid else None)
    series: list[tuple[float, int, float]] = []
    deadline = time.perf_counter() + timeout
    try:
        while True:
            c = await committed_total(admin, group, topic)
            t = time.perf_counter()
            series.append((t, c, proc_stats(pid).cpu_s))
            if c >= total or t > deadline:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"contender exited {proc.returncode} after committing {c} of {total}")
            await asyncio.sleep(poll)
    finally:
        await admin.close()
    after = proc_stats(pid)
    return {"series": series, "cpu_s": after.cpu_s - before.cpu_s, "peak_rss_mb": after.peak_rss_mb,
            "broker_cpu_s": (proc_stats(bpid).cpu_s - bbefore.cpu_s) if bpid else None,
            "complete": series[-1][1] >= total}


def rates(tr: dict, total: int, t_ready: float, warmup: float = 0.2) -> dict:
    """Rates and CPU of one drain. The steady window runs from the first commit that covers `warmup` of
    the input to the next-to-last commit: it leaves out, for every contender alike, the start (imports,
    the JVM's start and its first JIT compilations, the group join, the first batches) and the tail
    after the work ended."""
    series = tr["series"]
    steps = [(t, c, cpu) for i, (t, c, cpu) in enumerate(series) if c > 0 and (i == 0 or c != series[i - 1][1])]
    if not steps:
        return {"events_per_s": 0, "consumed": 0, "commits": 0}
    (t_first, c_first, cpu_first), (t_last, c_last, _) = steps[0], steps[-1]
    first_to_done = (c_last - c_first) / (t_last - t_first) if t_last > t_first else None
    steady = None
    if tr["complete"] and len(steps) >= 3:
        t_k, c_k, cpu_k = steps[-2]
        sustained = (c_k - c_first) / (t_k - t_first)
        w0 = next(((t, c, cpu) for t, c, cpu in steps[:-2] if c >= warmup * total), None)
        if w0 is not None and cpu_k > w0[2] and c_k > w0[1]:
            steady = (cpu_k - w0[2], c_k - w0[1], t_k - w0[0])
    else:
        sustained = first_to_done
    if sustained is None:  # everything in one commit: only the time from ready is left
        sustained = c_last / (t_last - t_ready)
    consumed = c_last
    return {
        "events_per_s": round(sustained),
        "first_to_done_events_per_s": round(first_to_done) if first_to_done else None,
        "from_ready_events_per_s": round(consumed / (t_last - t_ready)),
        "seconds_ready_to_done": round(t_last - t_ready, 2),
        "seconds_ready_to_first_commit": round(t_first - t_ready, 2),
        "commits": len(steps), "consumed": consumed, "complete": tr["complete"],
        "cpu_s_per_1k_events": round(1000 * tr["cpu_s"] / consumed, 4) if consumed else None,
        "events_per_cpu_s": round(consumed / tr["cpu_s"]) if tr["cpu_s"] else None,
        "steady_cpu_s_per_1k_events": round(1000 * steady[0] / steady[1], 4) if steady else None,
        "steady_events_per_cpu_s": round(steady[1] / steady[0]) if steady else None,
        "steady_events_per_s": round(steady[1] / steady[2]) if steady else None,
        "steady_window": {"events": steady[1], "seconds": round(steady[2], 2), "from_fraction": warmup}
        if steady else None,
        "peak_rss_mb": round(tr["peak_rss_mb"], 1),
        "broker_cpu_s_per_1k_events": round(1000 * tr["broker_cpu_s"] / consumed, 4)
        if tr["broker_cpu_s"] is not None and consumed else None,
    }


def drain(name: str, proc, proc_handle, group: str, args, ctx: dict, stop: bool = True) -> dict:
    """Wait for ready, then time the backlog drain; stops the process afterwards (on failure always)."""
    ok = False
    try:
        proc_handle.wait_ready(timeout=args.ready_timeout)
        t_ready = time.perf_counter()
        load0 = os.getloadavg()[0]
        tr = asyncio.run(track(ctx["bootstrap"], group, ctx["input"], ctx["total"], args.timeout, proc))
        res = rates(tr, ctx["total"], t_ready, args.warmup_fraction)
        res["loadavg_1m"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
        res["group"] = group
        log(f"{LABELS[name]}: {res['events_per_s']:,} events/s sustained "
            f"({_fmt(res['first_to_done_events_per_s'])} first→done, {res['from_ready_events_per_s']:,} from ready), "
            f"{res['cpu_s_per_1k_events']} CPU s/1k (steady {_fmt(res.get('steady_cpu_s_per_1k_events'), '')}), "
            f"{res['peak_rss_mb']} MB"
            + ("" if res["complete"] else f" — PARTIAL: {res['consumed']:,} of {ctx['total']:,} in {args.timeout:.0f} s"))
        ok = True
        return res
    finally:
        if stop or not ok:
            proc_handle.stop()


async def records_in(bootstrap: str, keep) -> dict[str, int]:
    """Records written so far (sum of end offsets) per topic whose name `keep` accepts: what a contender
    produced (outputs, dead letters, its changelog). Compaction does not change offsets; under
    exactly-once, transaction markers take an offset each."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await c.start()
    try:
        names = sorted(t for t in await admin.list_topics() if keep(t))
        described = await admin.describe_topics(names) if names else []
        tps = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
        out = {t: 0 for t in names}
        for tp, off in (await c.end_offsets(tps) if tps else {}).items():
            out[tp.topic] += off
        return out
    finally:
        await c.stop()
        await admin.close()


def note_written(res: dict, ctx: dict, keep, dlq: str | None = None) -> None:
    res["records_written"] = asyncio.run(records_in(ctx["bootstrap"], lambda t: keep(t) and t != ctx["input"]
                                                    and "__assignor" not in t))
    if dlq is not None:
        res["dead_letters"] = res["records_written"].get(dlq, 0)
        res["dead_letter_share"] = round(res["dead_letters"] / ctx["total"], 5)


def run_raw(args, ctx) -> dict:
    group = f"raw-{ctx['run']}"
    out = f"bench-raw-out-{ctx['run']}"
    asyncio.run(create_topics(ctx["bootstrap"], [out], args.partitions))
    p = Proc("raw", [sys.executable, str(ROOT / "bench" / "raw_passthrough.py"), ctx["bootstrap"], ctx["input"], out,
                     group, "--commit-interval", str(args.raw_commit_interval)],
             dict(os.environ, PYTHONUNBUFFERED="1"), ctx["workdir"], "Ready").start()
    res = drain("raw", p.proc, p, group, args, ctx)
    res["commit_interval_s"] = args.raw_commit_interval
    note_written(res, ctx, lambda t: t == out)
    return res


def run_naive(args, ctx) -> dict:
    app_id = f"naive-{ctx['run']}"
    env = dict(os.environ, PYTHONUNBUFFERED="1", NAIVE_APP_ID=app_id, KAFKA_BOOTSTRAP_SERVERS=ctx["bootstrap"],
               NAIVE_INPUT=ctx["input"], NAIVE_SCORES=f"naive-scores-{ctx['run']}",
               NAIVE_LIFECYCLE=f"naive-lifecycle-{ctx['run']}", NAIVE_DLQ=f"naive-dlq-{ctx['run']}",
               NAIVE_DATA_DIR=str(ctx["workdir"] / "data-naive"), NAIVE_PARTITIONS=str(args.partitions))
    asyncio.run(create_topics(ctx["bootstrap"], [env["NAIVE_SCORES"], env["NAIVE_LIFECYCLE"], env["NAIVE_DLQ"]],
                              args.partitions))
    p = Proc("naive", [sys.executable, str(ROOT / "bench" / "naive_faust.py"), "worker", "-l", "info"], env,
             ctx["workdir"], "Ready").start()
    res = drain("naive", p.proc, p, app_id, args, ctx)
    res["commit_interval_s"] = 1.0
    note_written(res, ctx, lambda t: t.startswith("naive") and ctx["run"] in t, env["NAIVE_DLQ"])
    return res


def quix_python(args) -> tuple[Path | None, str | None]:
    """The interpreter for (d): `--quix-python`, or the pinned venv in .leadpulse/bench-quix, created on
    first use (and again when QUIX_PINS change). (None, why) when it cannot be had."""
    if args.quix_python:
        py = Path(args.quix_python)
    else:
        py = QUIX_VENV / "bin" / "python"
        stamp = QUIX_VENV / ".pins"
        pins = "\n".join(QUIX_PINS) + "\n"
        if not (py.exists() and stamp.exists() and stamp.read_text() == pins):
            log(f"installing {' '.join(QUIX_PINS)} into its own venv {QUIX_VENV.relative_to(ROOT)} "
                "(never beside avro-python3: quixstreams pulls the `avro` package)")
            shutil.rmtree(QUIX_VENV, ignore_errors=True)
            try:
                subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True, capture_output=True,
                               text=True)
                subprocess.run([str(QUIX_VENV / "bin" / "pip"), "install", "-q", *QUIX_PINS], check=True,
                               capture_output=True, text=True, timeout=900)
            except subprocess.CalledProcessError as exc:
                return None, f"could not install {' '.join(QUIX_PINS)} into {QUIX_VENV}: {(exc.stderr or '')[-800:]}"
            except (OSError, subprocess.TimeoutExpired) as exc:
                return None, f"could not install {' '.join(QUIX_PINS)} into {QUIX_VENV}: {exc}"
            stamp.write_text(pins)
    if not py.exists():
        return None, f"no interpreter at {py}"
    p = subprocess.run([str(py), "-c", "import quixstreams, fastavro"], capture_output=True, text=True)
    if p.returncode != 0:
        return None, f"{py} cannot import quixstreams and fastavro: {p.stderr[-500:]}"
    return py, None


def run_quix(args, ctx, py: Path) -> dict:
    group = f"quix-{ctx['run']}"
    out = f"quix-scores-{ctx['run']}"
    asyncio.run(create_topics(ctx["bootstrap"], [out], args.partitions))
    p = Proc("quix", [str(py), str(ROOT / "bench" / "quix_app.py"), ctx["bootstrap"], ctx["input"], out, group,
                      str(ctx["workdir"] / "data-quix")],
             dict(os.environ, PYTHONUNBUFFERED="1"), ctx["workdir"], "started and is now processing").start()
    res = drain("quix", p.proc, p, group, args, ctx)
    res["commit_interval_s"] = 1.0
    res["version"] = subprocess.run([str(py), "-c", "import quixstreams; print(quixstreams.__version__)"],
                                    capture_output=True, text=True).stdout.strip()
    note_written(res, ctx, lambda t: "quix" in t and ctx["run"] in t)
    return res


def kstreams_name(threads: int) -> str:
    name = "kstreams" if threads == 1 else f"kstreams{threads}"
    LABELS.setdefault(name, f"(e{threads}) Kafka Streams peer, {threads} threads")
    return name


def run_kstreams(args, ctx, threads: int) -> dict:
    """(e): the Kafka Streams peer (bench/jvm_peer.py), drained like the others, then checked against the
    scoring core on the base-points-only model (final temperature of every contact, dead letters)."""
    name = kstreams_name(threads)
    if "jar" not in ctx:
        ctx["jar"] = jvm_peer.build(log)
    prefix = f"ks{threads}-{ctx['run']}"  # application.id = consumer group; its topics start with it
    changes, dlq = f"{prefix}-changes", f"{prefix}-dlq"
    asyncio.run(create_topics(ctx["bootstrap"], [changes, dlq], args.partitions))
    cmd = jvm_peer.command(ctx["jar"], ctx["bootstrap"], ctx["input"], changes, dlq, prefix,
                           ctx["workdir"] / f"data-{prefix}", threads=threads, guarantee=args.kstreams_guarantee)
    p = Proc(name, cmd, dict(os.environ), ctx["workdir"], jvm_peer.READY).start()
    res = drain(name, p.proc, p, prefix, args, ctx)
    res.update(threads=threads, processing_guarantee=args.kstreams_guarantee, commit_interval_s=1.0,
               jvm_options=jvm_peer.JVM_OPTS)
    note_written(res, ctx, lambda t: t.startswith(prefix), dlq)
    if args.kstreams_guarantee != "at_least_once":  # end offsets count the transaction markers too
        dead: list = []
        asyncio.run(read_topic(ctx["bootstrap"], dlq, args.partitions, dead.append))
        res["dead_letters"] = len(dead)
        res["dead_letter_share"] = round(len(dead) / ctx["total"], 5)
    want, want_late = ctx["expected"]
    latest = asyncio.run(read_latest(ctx["bootstrap"], changes, args.partitions))
    res["check"] = jvm_peer.check(want, want_late, latest, res["dead_letters"],
                                  lambda v: ctx["codec"].decode("LifecycleChange", v))
    ck = res["check"]
    log(f"{LABELS[name]} check against the scoring core (base points only): "
        + ("OK" if ck["ok"] else "FAILED") + f", {ck['mismatched']} of {ck['contacts']:,} contacts differ, "
        f"dead letters {ck['dead_letters']:,} (core: {ck['expected_late']:,} late)")
    return res


def leadpulse_worker(ctx, suffix: str, name: str, extra: dict | None = None) -> Worker:
    env = {"LEADPULSE_PARTITIONS": str(ctx["partitions"]), "LEADPULSE_EVENTS_TOPIC": ctx["input"]}
    env.update(extra or {})
    return Worker(ctx["bootstrap"], suffix, ctx["workdir"], name=name, extra_env=env)


# -- leadpulse: latency under a paced load ---------------------------------------------------------

def percentile(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


async def wait_caught_up(bootstrap: str, group: str, topic: str, partitions: int, timeout: float = 120) -> float:
    """Seconds until `group` has committed everything now on `topic` (or `timeout`)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        ends = sum((await c.end_offsets([TopicPartition(topic, p) for p in range(partitions)])).values())
        t = time.perf_counter()
        while await committed_total(admin, group, topic) < ends and time.perf_counter() - t < timeout:
            await asyncio.sleep(0.1)
        return time.perf_counter() - t
    finally:
        await c.stop()
        await admin.close()


def live_event(codec: AvroCodec, event_id: str, contact_id: str, event_type: str, at: int, props: dict) -> tuple[bytes, bytes]:
    return contact_id.encode(), codec.encode("BehaviourEvent", {
        "event_id": event_id, "contact_id": contact_id, "anonymous_id": None, "event_type": event_type,
        "occurred_at": at, "source": "bench-live", "properties": props})


async def latency_level(ctx, lifecycle_topic: str, rate: float, duration: float, warmup: float, tag: str,
                        probe_every: int, group: str, worker_pid: int) -> dict:
    """Every `probe_every`-th event is a probe: a demo_request (30 points) of a contact seeded just before
    with a free_trial_signup (25 points, still cold), so that the probe alone turns it cold → warm
    (a fresh contact's lone demo_request lands on the 30-point bar itself and stays cold about half
    the time, by floating-point rounding of the decay). The others are live events of existing contacts."""
    codec = ctx["codec"]
    bootstrap = ctx["bootstrap"]
    n = int(rate * duration)
    probe_ids = range(0, n, probe_every)
    seeds = [live_event(codec, f"{tag}-seed-{i}", f"lat-{tag}-{i}", "free_trial_signup", int(time.time() * 1000), {})
             for i in probe_ids]
    await produce_all(bootstrap, ctx["input"], seeds)
    seed_s = await wait_caught_up(bootstrap, group, ctx["input"], ctx["partitions"])
    rnd = random.Random(zlib.crc32(tag.encode()))
    kinds = [k for k in EVENT_MIX for _ in range(k[1])]
    start_ms = int(time.time() * 1000) + 1500
    background: list[tuple[bytes, bytes] | None] = []
    for i in range(n):  # pre-encoded, stamped with their planned send instant
        if i % probe_every == 0:
            background.append(None)
            continue
        etype, _, props = rnd.choice(kinds)
        background.append(live_event(codec, f"{tag}-{i}", f"contact-{rnd.randrange(ctx['contacts'])}", etype,
                                     start_ms + int(1000 * i / rate), props))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await producer.start()
    await consumer.start()
    tps = [TopicPartition(lifecycle_topic, p) for p in range(ctx["partitions"])]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    probes: dict[str, tuple[int, bool]] = {}  # event id -> (occurred_at ms, counted)
    latencies: list[float] = []
    to_publish: list[float] = []  # occurred_at → the worker's send of the change (Kafka CreateTime of the change)
    seen = 0
    prefix = f"lat-{tag}-".encode()
    producing_done = asyncio.Event()

    last_probe_at = 0.0

    async def consume():
        nonlocal seen, last_probe_at
        grace_end = None
        while True:
            batch = await consumer.getmany(timeout_ms=50)
            now = time.time() * 1000
            for msgs in batch.values():
                for m in msgs:
                    if not m.key or not m.key.startswith(prefix):
                        continue
                    rec = codec.decode("LifecycleChange", m.value)
                    probe = probes.pop(rec["cause_event_id"], None)
                    if probe is not None:
                        seen += 1
                        last_probe_at = time.perf_counter()
                        if probe[1]:
                            latencies.append(now - probe[0])
                            to_publish.append(m.timestamp - probe[0])
            if producing_done.is_set():
                grace_end = grace_end or time.monotonic() + max(10.0, duration)
                if not probes or time.monotonic() > grace_end:
                    return

    cons_task = asyncio.ensure_future(consume())
    before = proc_stats(worker_pid)
    load0 = os.getloadavg()[0]
    while time.time() * 1000 < start_ms:
        await asyncio.sleep(0.001)
    t0 = time.perf_counter()
    futures = []
    i = 0
    try:
        while i < n:
            due = min(n, int((time.perf_counter() - t0) * rate) + 1)
            while i < due:
                item = background[i]
                if item is None:
                    at = int(time.time() * 1000)
                    eid = f"{tag}-probe-{i}"
                    item = live_event(codec, eid, f"lat-{tag}-{i}", "demo_request", at, {})
                    probes[eid] = (at, time.perf_counter() - t0 >= warmup)
                futures.append(await producer.send(ctx["input"], key=item[0], value=item[1]))
                i += 1
            await asyncio.sleep(0.002)
        produced_at = time.perf_counter()
        elapsed = produced_at - t0
        await asyncio.gather(*futures)
        producing_done.set()
        await cons_task
    finally:
        cons_task.cancel()
        await producer.stop()
        await consumer.stop()
    cpu = proc_stats(worker_pid).cpu_s - before.cpu_s
    catch_up = await wait_caught_up(bootstrap, group, ctx["input"], ctx["partitions"])  # before the next level
    lat = sorted(latencies)
    pub = sorted(to_publish)
    return {
        "target_rate": round(rate), "achieved_rate": round(n / elapsed), "seconds": round(elapsed, 1),
        "events": n, "probes": len(probe_ids), "probes_measured": len(lat), "seeding_s": round(seed_s, 1),
        "probes_missing": len(probes), "warmup_s": warmup,
        "p50_ms": round(percentile(lat, 0.50), 1) if lat else None,
        "p99_ms": round(percentile(lat, 0.99), 1) if lat else None,
        "p99_9_ms": round(percentile(lat, 0.999), 1) if lat else None,
        "max_ms": round(lat[-1], 1) if lat else None,
        # the same split at the worker's send of the change (the change record's CreateTime): before it, the
        # input side and the worker; after it, the producer → broker → consumer hop
        "to_worker_send_p50_ms": percentile(pub, 0.50), "to_worker_send_p99_ms": percentile(pub, 0.99),
        "worker_cpu_utilisation": round(cpu / elapsed, 2),
        "loadavg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],  # the machine is shared: read with these
        # how far behind the worker was when the producer stopped: the last probe's change arrived this long after
        "last_change_after_producing_s": round(max(0.0, last_probe_at - produced_at), 2),
        "catch_up_s": round(catch_up, 1),  # then until every input was committed (mostly the 1 s commit interval)
    }


# -- leadpulse: state bytes and recovery ------------------------------------------------------------

def size_stats(values) -> dict:
    sizes = sorted(len(v) for v in values)
    if not sizes:
        return {}
    return {"contacts": len(sizes), "mean": round(sum(sizes) / len(sizes), 1), "p50": percentile(sizes, 0.5),
            "p99": percentile(sizes, 0.99), "max": sizes[-1]}


async def produce_changelog(bootstrap: str, topic: str, partitions: int, states, n: int) -> float:
    """Contact states into a changelog topic, each in its key's input partition (where Faust writes it)."""
    return await produce_all(bootstrap, topic, states, partitions=partitions)


LOG_TS = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def log_instants(text: str, needles: list[str]) -> dict[str, float]:
    """Epoch seconds of the first log line containing each needle (Faust's `[YYYY-mm-dd HH:MM:SS,mmm]`)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        m = LOG_TS.match(line)
        if not m:
            continue
        for needle in needles:
            if needle not in found and needle in line:
                found[needle] = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return found


def run_recovery(args, ctx, templates: list[bytes]) -> dict:
    from scoring import ScoringModel, default_rules

    model = ScoringModel(default_rules())  # what the worker runs (no LEADPULSE_RULES here)
    n = args.recovery_contacts
    suffix = f"rec-{ctx['run']}"
    app_id = topic_env(suffix)["LEADPULSE_APP_ID"]
    changelog = f"{app_id}-contacts-changelog"
    log(f"recovery: encoding {n:,} contact states from {len(templates):,} templates")
    decoded = [model.decode_state(t) for t in templates]
    sizes = []

    def states():
        for i in range(n):
            st = decoded[i % len(decoded)]
            st.contact_id = f"contact-r{i}"
            value = model.encode_state(st)
            sizes.append(len(value))
            yield st.contact_id.encode(), value

    admin_topics = [NewTopic(changelog, args.partitions, 1, topic_configs={"cleanup.policy": "compact"})]

    async def create():
        admin = AIOKafkaAdminClient(bootstrap_servers=ctx["bootstrap"])
        await admin.start()
        try:
            await admin.create_topics(admin_topics)
        finally:
            await admin.close()
    asyncio.run(create())
    produce_s = asyncio.run(produce_changelog(ctx["bootstrap"], changelog, args.partitions, states(), n))
    log(f"recovery: {n:,} states in {changelog} ({produce_s:.1f} s); starting a worker on an empty data dir")
    w = Worker(ctx["bootstrap"], suffix, ctx["workdir"], name="recovery",
               extra_env={"LEADPULSE_PARTITIONS": str(args.partitions)})
    t_wall0 = time.time()
    t0 = time.perf_counter()
    w.start()
    try:
        w.wait_ready(timeout=args.recovery_timeout)
        start_to_ready = time.perf_counter() - t0
        stats = proc_stats(w.proc.pid)
        probe_id = f"contact-r{n // 2}"
        status, body = w.get_json(f"/contacts/{probe_id}", timeout=30)
    finally:
        w.stop()
    text = w.log_text()
    marks = log_instants(text, ["before joining the group", "changelog records in",
                                "Restoring state from changelog topics", "Done reading from changelog topics",
                                "Recovery complete", "Worker ready", "Ready"])
    # The restore phase: the worker's bulk restore before it joins the group (streams.restore), plus
    # whatever Faust's own recovery still reads after it (the tail written meanwhile; none here).
    bulk = re.search(r"restored (\d+) changelog records in ([\d.]+) s", text)
    bulk_s = float(bulk.group(2)) if bulk else 0.0
    faust_s = None
    if "Restoring state from changelog topics" in marks and "Done reading from changelog topics" in marks:
        faust_s = marks["Done reading from changelog topics"] - marks["Restoring state from changelog topics"]
    restore_s = (bulk_s + (faust_s or 0.0)) or None
    res = {
        "contacts": n, "changelog_produce_s": round(produce_s, 1),
        "start_to_ready_s": round(start_to_ready, 2),
        "bulk_restore": {"records": int(bulk.group(1)), "seconds": bulk_s} if bulk else None,
        "faust_restore_phase_s": round(faust_s, 2) if faust_s is not None else None,
        "restore_phase_s": round(restore_s, 2) if restore_s is not None else None,
        "contacts_per_s_restore_phase": round(n / restore_s) if restore_s else None,
        "contacts_per_s_start_to_ready": round(n / start_to_ready),
        "worker_cpu_s": round(stats.cpu_s, 1), "peak_rss_mb": round(stats.peak_rss_mb, 1),
        "restored_contact_lookup": {"contact": probe_id, "http_status": status},
        "log_marks_s_after_start": {k: round(v - t_wall0, 2) for k, v in marks.items()},
    }
    ss = sorted(sizes)
    res["state_bytes"] = {"mean": round(sum(ss) / len(ss), 1), "p99": percentile(ss, 0.99), "max": ss[-1]}
    if args.profile:  # the same restore once more, under cProfile, into another empty data dir
        prof = ctx["workdir"] / "recovery.prof"
        w = Worker(ctx["bootstrap"], suffix, ctx["workdir"], name="recovery-profile",
                   extra_env={"LEADPULSE_PARTITIONS": str(args.partitions), "LEADPULSE_PROFILE": str(prof)})
        w.start()
        try:
            w.wait_ready(timeout=args.recovery_timeout)
        finally:
            w.stop(timeout=60)
        text, shares = summarise_profile(prof, per=n, unit="contact")
        (RESULTS / "compare-profile-recovery.txt").write_text(
            f"cProfile of one leadpulse worker starting on an empty data dir and restoring {n:,} contacts "
            "from its changelog (start-up included, until Ready)\n\n" + text)
        res["profile"] = {"own_time_share_pct": shares}
        log("recovery profile: " + ", ".join(f"{k} {v}%" for k, v in list(shares.items())[:6]))
    rate = res["contacts_per_s_restore_phase"] or res["contacts_per_s_start_to_ready"]
    log(f"recovery: {n:,} contacts, restore phase {res['restore_phase_s']} s ({rate:,}/s), "
        f"start→ready {res['start_to_ready_s']} s, lookup {status}")
    return res


# -- profile ---------------------------------------------------------------------------------------

CATEGORIES = [  # (label, path fragment), first match wins
    ("scoring core", "/scoring/"), ("leadpulse agents/pipeline", "/agents/"), ("leadpulse streams (codec, metrics)", "/streams/"),
    ("fastavro", "fastavro"), ("faust", "/faust/"), ("mode (faust's service lib)", "/mode/"),
    ("aiokafka", "/aiokafka/"), ("rocksdict", "rocksdict"), ("asyncio", "/asyncio/"),
    ("prometheus_client", "prometheus_client"), ("logging", "/logging/"),
]


def summarise_profile(path: Path, top: int = 30, per: int | None = None, unit: str = "event") -> tuple[str, dict]:
    st = pstats.Stats(str(path))
    total = st.total_tt
    by_cat: dict[str, float] = {}
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in st.stats.items():
        label = "other"
        if filename == "~":  # C functions: sort them by what they serve
            label = ("rocksdict" if "Rdict" in func else "socket I/O (C)" if "socket" in func
                     else "epoll wait (C, idle when no input)" if "poll" in func
                     else "fastavro" if "fastavro" in func else "other builtins (C)")
        else:
            for name, frag in CATEGORIES:
                if frag in filename:
                    label = name
                    break
        by_cat[label] = by_cat.get(label, 0.0) + tt
    out = io.StringIO()
    out.write(f"total profiled time {total:.1f} s (own time by package):\n")
    for label, tt in sorted(by_cat.items(), key=lambda kv: -kv[1]):
        each = f"  {1e6 * tt / per:8.1f} µs per {unit}" if per else ""
        out.write(f"  {label:40s} {tt:8.2f} s  {100 * tt / total:5.1f} %{each}\n")
    for key in ("tottime", "cumulative"):
        out.write(f"\n--- top {top} by {key} ---\n")
        s = io.StringIO()
        pstats.Stats(str(path), stream=s).strip_dirs().sort_stats(key).print_stats(top)
        text = s.getvalue()
        out.write(text[text.find("   ncalls"):] if "   ncalls" in text else text)
    return out.getvalue(), {k: round(100 * v / total, 1) for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])}


def run_profile(args, ctx, total: int) -> dict:
    suffix = f"prof-{ctx['run']}"
    prof = ctx["workdir"] / "leadpulse.prof"
    w = leadpulse_worker(ctx, suffix, "profile", {"LEADPULSE_PROFILE": str(prof)}).start()
    try:
        w.wait_ready(timeout=args.ready_timeout)
        t0 = time.perf_counter()
        tr = asyncio.run(track(ctx["bootstrap"], topic_env(suffix)["LEADPULSE_APP_ID"], ctx["input"], total,
                               args.timeout, w.proc))
        res = rates(tr, total, t0)
    finally:
        w.stop(timeout=60)
    text, shares = summarise_profile(prof, per=total)
    (RESULTS / "compare-profile.txt").write_text(
        f"cProfile of one leadpulse worker draining {total:,} events (under the profiler: "
        f"{res['events_per_s']:,} events/s)\n\n" + text)
    log("profile: " + ", ".join(f"{k} {v}%" for k, v in list(shares.items())[:6]))
    return {"events": total, "events_per_s_under_profiler": res["events_per_s"], "own_time_share_pct": shares}


def run_leadpulse(args, ctx, contenders: dict) -> None:
    """(c): drain, latency levels on the same worker, state bytes, recovery, optional profile."""
    run_id, bootstrap = ctx["run"], ctx["bootstrap"]
    suffix = f"lp-{run_id}"
    names = topic_env(suffix)
    changelog = f"{names['LEADPULSE_APP_ID']}-contacts-changelog"
    w = leadpulse_worker(ctx, suffix, "leadpulse").start()
    try:
        lp = drain("leadpulse", w.proc, w, names["LEADPULSE_APP_ID"], args, ctx, stop=False)
        contenders["leadpulse"] = lp
        note_written(lp, ctx, lambda t: suffix in t, names["LEADPULSE_DLQ_TOPIC"])
        log(f"leadpulse: {lp['dead_letters']:,} dead letters ({100 * lp['dead_letter_share']:.2f} % of the input)")
        # the input's contacts as the input left them (the latency levels below add live events to them)
        lp["state_bytes_after_drain"] = size_stats(asyncio.run(read_latest(bootstrap, changelog, args.partitions)).values())
        log(f"state bytes per contact after the drain: {lp['state_bytes_after_drain']}")
        if args.latency_seconds > 0:  # the same worker, its backlog drained
            # what the worker burns with no input at all (Faust's loops, the cooling timer catching up with
            # the contacts just scored): the latency levels below run on top of it
            c0, t0 = proc_stats(w.proc.pid).cpu_s, time.perf_counter()
            time.sleep(5)
            lp["idle_cpu_utilisation_after_drain"] = round((proc_stats(w.proc.pid).cpu_s - c0) / (time.perf_counter() - t0), 2)
            log(f"latency: idle worker CPU after the drain {lp['idle_cpu_utilisation_after_drain']}")
            levels = []
            lp["latency"] = levels
            for frac in (0.25, 0.50, 0.75):
                rate = frac * lp["events_per_s"]
                log(f"latency: {frac:.0%} of {lp['events_per_s']:,} = {rate:,.0f} events/s for "
                    f"{args.latency_seconds:.0f} s")
                lv = asyncio.run(latency_level(
                    ctx, names["LEADPULSE_LIFECYCLE_TOPIC"], rate, args.latency_seconds,
                    min(2.0, args.latency_seconds / 5), f"{run_id}-{int(frac * 100)}", 20,
                    names["LEADPULSE_APP_ID"], w.proc.pid))
                lv["fraction_of_max"] = frac
                levels.append(lv)
                log(f"latency: achieved {lv['achieved_rate']:,}/s, p50 {lv['p50_ms']} ms, p99 {lv['p99_ms']} ms, "
                    f"p99.9 {lv['p99_9_ms']} ms ({lv['probes_measured']} probes, {lv['probes_missing']} missing), "
                    f"worker CPU {lv['worker_cpu_utilisation']}")
    finally:
        w.stop()
    latest = asyncio.run(read_latest(bootstrap, changelog, args.partitions))
    # the input's contacts only: the latency probes' fresh contacts (two events each) would dilute it
    inputs = [v for k, v in latest.items() if not k.startswith(b"lat-")] or list(latest.values())
    lp["state_bytes_after_run"] = size_stats(inputs)
    log(f"state bytes per contact after the run: {lp['state_bytes_after_run']}")
    if args.recovery_contacts > 0:
        templates = inputs
        lp["recovery"] = run_recovery(args, ctx, templates)
    if args.profile:
        total = asyncio.run(_end_total(bootstrap, ctx["input"], args.partitions))
        lp["profile"] = run_profile(args, ctx, total)


# -- the run ---------------------------------------------------------------------------------------

def code_version() -> dict:
    """The commit measured, and which of the worker's files differed from it (read-only git calls)."""
    def git(*cmd):
        p = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else None
    dirty = git("status", "--porcelain", "--", "agents", "streams", "scoring", "schemas")
    return {"head": git("rev-parse", "--short", "HEAD"),
            "uncommitted_worker_files": [line[3:] for line in dirty.splitlines()] if dirty else []}


def run(args) -> dict:
    run_id = uuid.uuid4().hex[:6]
    workdir = WORK / run_id
    result: dict = {
        "run": run_id, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "mode": "quick" if args.quick else "full",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
        "code": code_version(),
        "input": {"events": args.events, "contacts": args.contacts, "partitions": args.partitions,
                  "format": "Avro BehaviourEvent v2, Confluent framing"},
    }
    errors: dict[str, str] = {}  # contender -> why it failed or could not run (a failed line in the results)
    not_run: dict[str, str] = {}  # contender -> why it was not asked for
    result["errors"] = errors
    result["not_run"] = not_run
    for name in ("raw", "naive", "quix", "kstreams", "leadpulse"):
        if name not in args.only:
            not_run[name] = "not in --only"
    if "kstreams" in args.only and 2 not in args.kstreams_threads:
        not_run["kstreams2"] = "not in --kstreams-threads"
    py_quix = None
    if args.no_quix:
        not_run["quix"] = "--no-quix"
    elif "quix" in args.only:
        py_quix, why = quix_python(args)
        if py_quix is None:
            errors["quix"] = why
    with own_broker(workdir / "kafka") as bootstrap:
        input_topic = f"bench-in-{run_id}"
        ctx = {"run": run_id, "bootstrap": bootstrap, "input": input_topic, "total": args.events, "workdir": workdir,
               "contacts": args.contacts, "partitions": args.partitions, "codec": AvroCodec()}
        t = time.perf_counter()
        records = events(args.events, args.contacts, seed=args.seed, kind=args.input)
        encoded = encode(records)
        gen_s = time.perf_counter() - t
        tolerance = default_rules().late_tolerance_ms
        late = late_events(records, tolerance)
        if "kstreams" in args.only:  # what the peer must say, by the scoring core (outside every measurement)
            ctx["expected"] = jvm_peer.expected(records)
        del records
        asyncio.run(create_topics(bootstrap, [input_topic], args.partitions))
        produce_s = asyncio.run(produce_all(bootstrap, input_topic, encoded))
        del encoded
        result["input"].update(kind=args.input, topic=input_topic, dataset_s=round(gen_s, 1),
                               produce_s=round(produce_s, 1), late_events=late, late_share=round(late / args.events, 5),
                               late_tolerance_days=tolerance / 86_400_000)
        log(f"input: {args.events:,} events over {args.contacts:,} contacts ({args.input}: {late:,} = "
            f"{100 * late / args.events:.2f} % older than the late tolerance when they arrive) in {input_topic} "
            f"(generated {gen_s:.1f} s, produced {produce_s:.1f} s); broker {bootstrap}")
        contenders: dict[str, dict] = {}
        result["contenders"] = contenders

        def attempt(name: str, fn) -> None:
            """One contender; a failure is recorded (and the run goes on) instead of losing the others."""
            try:
                fn()
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {str(exc)[:1500]}"
                log(f"{name} FAILED: {errors[name][:300]}")

        try:
            if "raw" in args.only:
                attempt("raw", lambda: contenders.__setitem__("raw", run_raw(args, ctx)))
            if "naive" in args.only:
                attempt("naive", lambda: contenders.__setitem__("naive", run_naive(args, ctx)))
            if "quix" in args.only and py_quix is not None:
                attempt("quix", lambda: contenders.__setitem__("quix", run_quix(args, ctx, py_quix)))
            if "kstreams" in args.only:
                for threads in args.kstreams_threads:
                    name = kstreams_name(threads)
                    attempt(name, lambda: contenders.__setitem__(name, run_kstreams(args, ctx, threads)))
            if "leadpulse" in args.only:
                attempt("leadpulse", lambda: run_leadpulse(args, ctx, contenders))
        finally:
            if not args.keep_topics:
                asyncio.run(_delete_run_topics(bootstrap, run_id))
            for d in workdir.glob("data-*"):
                shutil.rmtree(d, ignore_errors=True)
    if not args.keep_topics and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        shutil.rmtree(workdir / "kafka" / "data", ignore_errors=True)  # this run's broker: hundreds of MB
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["logs"] = str(workdir.relative_to(ROOT))
    return result


async def _end_total(bootstrap: str, topic: str, partitions: int) -> int:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        return sum((await c.end_offsets([TopicPartition(topic, p) for p in range(partitions)])).values())
    finally:
        await c.stop()


async def _delete_run_topics(bootstrap: str, run_id: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if run_id in t]
        if names:
            await admin.delete_topics(names)
    except Exception as exc:  # cleanup only
        log(f"could not delete this run's topics: {exc}")
    finally:
        await admin.close()


# -- reporting -------------------------------------------------------------------------------------

def ratios(res: dict) -> dict:
    """leadpulse over each other contender: events/s, events per CPU second (ready → done) and events per
    CPU second in the steady window (first → next-to-last commit, start-up and JIT warm-up left out)."""
    c = res["contenders"]
    lp = c.get("leadpulse", {})
    out = {}
    for other in [k for k in c if k != "leadpulse"]:
        o = c[other]
        for label, key in (("", "events_per_s"), (" per CPU s", "events_per_cpu_s"),
                           (" per CPU s, steady", "steady_events_per_cpu_s")):
            a, b = lp.get(key), o.get(key)
            out[f"leadpulse/{other}{label}"] = round(a / b, 2) if a and b else None
    return out


def verdicts(res: dict) -> list[tuple[str, str, str, bool | None]]:
    lp = res["contenders"].get("leadpulse", {})
    r = res["ratios"]
    rows = []

    def row(target, measured, ok):
        rows.append((target, measured, "met" if ok else ("missed" if ok is not None else "n/a"), ok))
    v = r.get("leadpulse/raw")
    row(f"(c) ≥ {TARGETS['vs_raw']} × (a)",
        f"{v} × (per CPU s {r.get('leadpulse/raw per CPU s')} ×)" if v is not None else "n/a",
        None if v is None else v >= TARGETS["vs_raw"])
    v = r.get("leadpulse/kstreams per CPU s")
    ks = res["contenders"].get("kstreams", {})
    checked = ks.get("check", {}).get("ok")
    row(f"(c) ≥ {TARGETS['vs_kstreams_cpu']} × (e) per CPU s",
        (f"{v} × (steady {_fmt(r.get('leadpulse/kstreams per CPU s, steady'), '')} ×; "
         f"events/s {r.get('leadpulse/kstreams')} ×)"
         + ("" if checked else "; the peer's check FAILED, so not comparable")) if v is not None else "n/a",
        None if v is None or not checked else v >= TARGETS["vs_kstreams_cpu"])
    v = r.get("leadpulse/naive")
    row(f"(c) ≥ {TARGETS['vs_naive']:g} × (b)", f"{v} ×" if v is not None else "n/a",
        None if v is None else v >= TARGETS["vs_naive"])
    mid = next((lv for lv in lp.get("latency", []) if lv["fraction_of_max"] == 0.5), None)
    p99 = mid["p99_ms"] if mid else None
    row(f"p99 ≤ {TARGETS['p99_ms_at_50pct']:g} ms at 50 % of max", f"{p99} ms" if p99 is not None else "n/a",
        None if p99 is None else (p99 <= TARGETS["p99_ms_at_50pct"] and mid["probes_missing"] == 0))
    rec = lp.get("recovery", {})
    rr = rec.get("contacts_per_s_restore_phase")
    row(f"recovery ≥ {TARGETS['recovery_per_s']:,} contacts/s", f"{rr:,}/s" if rr else "n/a",
        None if not rr else rr >= TARGETS["recovery_per_s"])
    sb = lp.get("state_bytes_after_drain", {})
    row(f"≤ {TARGETS['state_bytes']} B state per contact (after the drain)",
        f"mean {sb.get('mean')} B, p99 {sb.get('p99')} B" if sb else "n/a",
        None if not sb else sb["p99"] <= TARGETS["state_bytes"])
    return rows


def _fmt(v, spec: str = ",") -> str:
    return "—" if v is None else format(v, spec)


def markdown(res: dict) -> str:
    c = res["contenders"]
    inp = res["input"]
    m = res["machine"]
    errors, not_run = res.get("errors", {}), res.get("not_run", {})
    lines = [
        f"# bench/compare.py — run {res['run']} ({res['mode']}, {res['started']})", "",
        f"{inp['events']:,} Avro behaviour events over {inp['contacts']:,} contacts, {inp['partitions']} partitions, "
        f"input `{inp.get('kind', 'late')}`, produced once; one process per contender, one after the other, on the "
        f"local broker. Machine: {m['cpus']} CPUs, shared (load average {m['loadavg_at_start'][0]} at start, "
        f"{m.get('loadavg_at_end', ['?'])[0]} at end).", "",
    ]
    if "late_events" in inp:
        lp_dl = c.get("leadpulse", {}).get("dead_letters")
        lines += [f"Late events in the input (older than the {inp['late_tolerance_days']:g}-day tolerance relative to "
                  f"their contact's newest event when they arrive): {inp['late_events']:,} = "
                  f"{100 * inp['late_share']:.3f} %"
                  + (f"; leadpulse dead-lettered {lp_dl:,} = {100 * lp_dl / inp['events']:.3f} %." if lp_dl is not None
                     else "."), ""]
    lines += [
        "| contender | events/s (sustained) | first→done | from ready | CPU s / 1k events | steady CPU s / 1k | "
        "events / CPU s | peak RSS MB | dead letters | broker CPU s / 1k | machine load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = [k for k in ORDER if k in c or k in errors or k in not_run]
    names += [k for k in list(c) + list(errors) if k not in names]
    for key in names:
        label = LABELS.get(key, key)
        if key in errors:
            lines.append(f"| {label} | **FAILED**: {errors[key][:300]} | | | | | | | | | |")
            continue
        if key not in c:
            lines.append(f"| {label} | not run: {not_run[key]} | | | | | | | | | |")
            continue
        r = c[key]
        partial = "" if r.get("complete", True) else f" (partial: {r['consumed']:,} events)"
        dl = r.get("dead_letters")
        lines.append(f"| {label}{partial} | {r['events_per_s']:,} | {_fmt(r.get('first_to_done_events_per_s'))} | "
                     f"{_fmt(r.get('from_ready_events_per_s'))} | {r.get('cpu_s_per_1k_events')} | "
                     f"{_fmt(r.get('steady_cpu_s_per_1k_events'), '')} | {_fmt(r.get('events_per_cpu_s'))} | "
                     f"{r.get('peak_rss_mb')} | {_fmt(dl) if 'dead_letters' in r else 'n/a'} | "
                     f"{r.get('broker_cpu_s_per_1k_events')} | "
                     f"{'→'.join(str(x) for x in r.get('loadavg_1m', [])) or '—'} |")
    lines += ["", "Ratios: " + ", ".join(f"{k} = {v}" for k, v in res["ratios"].items() if v is not None), "",
              "CPU s / 1k is ready → all committed, start-up and the JVM's JIT warm-up included. Steady CPU s / 1k "
              f"runs from the first commit past {res.get('warmup_fraction', 0.2):.0%} of the input to the next-to-last "
              "commit, for every contender alike (— when the drain had too few commits for it).", ""]
    written = {k: r["records_written"] for k, r in c.items() if r.get("records_written")}
    if written:
        lines += ["Records each contender wrote (its outputs, dead letters and changelog; end offsets):", ""]
        for k, topics in written.items():
            lines.append(f"- {LABELS.get(k, k)}: " + ", ".join(f"`{t}` {n:,}" for t, n in topics.items() if n))
        lines.append("")
    checks = {k: r["check"] for k, r in c.items() if r.get("check")}
    if checks:
        lines += ["## Kafka Streams peer: checked against the scoring core", "",
                  "Final temperature of every contact, and the dead letters, against leadpulse's core on the same "
                  "input with the base-points-only model (default rules without caps and property rules):", ""]
        for k, ck in checks.items():
            lines.append(f"- {LABELS.get(k, k)}: **{'OK' if ck['ok'] else 'FAILED'}**, {ck['mismatched']} of "
                         f"{ck['contacts']:,} contacts differ (expected {ck['expected_temperatures']}); dead letters "
                         f"{ck['dead_letters']:,}, core's late events {ck['expected_late']:,}"
                         + (f"; e.g. {', '.join(ck['mismatched_examples'])}" if ck["mismatched"] else "")
                         + f"; {c[k]['threads']} stream thread(s), {c[k]['processing_guarantee']}.")
        lines.append("")
    lp = c.get("leadpulse", {})
    if lp.get("latency"):
        idle = lp.get("idle_cpu_utilisation_after_drain")
        lines += ["## leadpulse: produce → LifecycleChange latency", ""]
        if idle is not None:
            lines += [f"Worker CPU with no input, in the 5 s after the drain: {idle} of a core.", ""]
        lines += [
                  "| load | target events/s | achieved | p50 ms | p99 ms | p99.9 ms | max ms | probes (missing) | worker CPU | last change after producing stopped, s | machine load avg |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for lv in lp["latency"]:
            lines.append(f"| {lv['fraction_of_max']:.0%} | {lv['target_rate']:,} | {lv['achieved_rate']:,} | {lv['p50_ms']} | "
                         f"{lv['p99_ms']} | {lv['p99_9_ms']} | {lv['max_ms']} | {lv['probes_measured']} ({lv['probes_missing']}) | "
                         f"{lv['worker_cpu_utilisation']} | {lv.get('last_change_after_producing_s', '—')} | "
                         f"{'→'.join(str(x) for x in lv.get('loadavg_1m', [])) or '—'} |")
        lines.append("")
    if lp.get("recovery"):
        rec = lp["recovery"]
        lines += ["## leadpulse: changelog recovery", "",
                  f"{rec['contacts']:,} contacts (mean {rec['state_bytes']['mean']} B): restore phase "
                  f"{rec['restore_phase_s']} s = **{rec['contacts_per_s_restore_phase'] or 0:,} contacts/s** "
                  f"(bulk restore before joining the group {(rec.get('bulk_restore') or {}).get('seconds', '—')} s, "
                  f"then Faust's own recovery {rec.get('faust_restore_phase_s') if rec.get('faust_restore_phase_s') is not None else '—'} s); "
                  f"worker start → Ready {rec['start_to_ready_s']} s ({rec['contacts_per_s_start_to_ready']:,}/s); "
                  f"peak RSS {rec['peak_rss_mb']} MB; restored contact lookup HTTP {rec['restored_contact_lookup']['http_status']}.", ""]
    for key, when in (("state_bytes_after_drain", "after the drain"),
                      ("state_bytes_after_run", "after the latency levels (their live events added)")):
        sb = lp.get(key)
        if sb:
            lines += [f"State bytes per input contact {when} ({sb['contacts']:,} contacts): mean {sb['mean']}, "
                      f"p50 {sb['p50']}, p99 {sb['p99']}, max {sb['max']}.", ""]
    if res.get("errors"):
        lines += ["## Failures", ""] + [f"- {k}: `{v[:300]}`" for k, v in res["errors"].items()] + [""]
    lines += ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t} | {mv} | {v} |" for t, mv, v, _ in verdicts(res)]
    if lp.get("profile"):
        p = lp["profile"]
        lines += ["", "## Where the leadpulse worker's time goes (cProfile, own time)", "",
                  "| package | share |", "|---|---:|"]
        lines += [f"| {k} | {v} % |" for k, v in p["own_time_share_pct"].items() if v >= 0.5]
        lines += ["", "Details: bench/results/compare-profile.txt."]
    rp = lp.get("recovery", {}).get("profile")
    if rp:
        lines += ["", "## Where a recovering leadpulse worker's time goes (cProfile, own time, start → Ready)", "",
                  "| package | share |", "|---|---:|"]
        lines += [f"| {k} | {v} % |" for k, v in rp["own_time_share_pct"].items() if v >= 0.5]
        lines += ["", "Details: bench/results/compare-profile-recovery.txt."]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = res["contenders"]
    keys = [k for k in ORDER if k in c] + [k for k in c if k not in ORDER]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    vals = [c[k]["events_per_s"] for k in keys]
    colors = {"raw": "#999999", "naive": "#d62728", "quix": "#9467bd", "leadpulse": "#1f77b4", "kstreams": "#2ca02c"}
    bars = ax1.barh([LABELS.get(k, k) for k in keys], vals, color=[colors.get(k, "#98df8a") for k in keys])
    for b, k in zip(bars, keys):
        r = c[k]
        ax1.text(b.get_width(), b.get_y() + b.get_height() / 2,
                 f" {r['events_per_s']:,}/s · {r['cpu_s_per_1k_events']} CPU s/1k · {r['peak_rss_mb']:.0f} MB",
                 va="center", fontsize=8)
    ax1.set_xlabel("events/s, one worker process (backlog drain)")
    ax1.set_xlim(0, max(vals) * 1.9 if vals else 1)
    ax1.invert_yaxis()
    ax1.set_title(f"Throughput, {res['input']['events']:,} events / {res['input']['contacts']:,} contacts")
    lat = c.get("leadpulse", {}).get("latency", [])
    if lat:
        x = [lv["achieved_rate"] for lv in lat]
        for key, style, label in (("p50_ms", "o-", "p50"), ("p99_ms", "s-", "p99"), ("p99_9_ms", "^-", "p99.9")):
            ax2.plot(x, [lv[key] for lv in lat], style, label=label)
        ax2.axhline(TARGETS["p99_ms_at_50pct"], color="grey", ls="--", lw=1, label="p99 target (at 50 %)")
        for lv in lat:
            ax2.annotate(f"{lv['fraction_of_max']:.0%}", (lv["achieved_rate"], lv["p50_ms"] or 0),
                         textcoords="offset points", xytext=(0, -12), ha="center", fontsize=8)
        ax2.set_yscale("log")
        ax2.set_xlabel("offered load, events/s")
        ax2.set_ylabel("produce → LifecycleChange, ms")
        ax2.legend(fontsize=8)
        ax2.set_title("leadpulse latency vs load")
    else:
        ax2.text(0.5, 0.5, "no latency run", ha="center", va="center")
        ax2.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="50k events / 5k contacts, 10 s latency levels, 100k-contact recovery (for development)")
    p.add_argument("--events", type=int)
    p.add_argument("--contacts", type=int)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--latency-seconds", type=float, help="per load level (default 30, quick 10; 0 skips)")
    p.add_argument("--recovery-contacts", type=int, help="default 1,000,000, quick 100,000; 0 skips")
    p.add_argument("--timeout", type=float, default=1200, help="per contender drain; past it the rate is partial")
    p.add_argument("--ready-timeout", type=float, default=180)
    p.add_argument("--recovery-timeout", type=float, default=900)
    p.add_argument("--raw-commit-interval", type=float, default=0.1,
                   help="(a) commits this often (default 0.1 s: it drains the quick input in under a second)")
    p.add_argument("--input", choices=INPUTS, default="realistic",
                   help="realistic (default: a live feed replayed, < 0.1 %% late) or late (shuffled over 20 days, "
                        "about 40 %% late: the input before issue 16)")
    p.add_argument("--only", default="raw,naive,quix,kstreams,leadpulse", help="comma-separated contenders to run")
    p.add_argument("--profile", action="store_true", help="also drain the input once under cProfile (leadpulse)")
    p.add_argument("--no-quix", action="store_true", help="leave (d) out (reported as not run)")
    p.add_argument("--quix-python", help="interpreter that has quixstreams (default: the pinned venv "
                                         ".leadpulse/bench-quix, created on first use)")
    p.add_argument("--kstreams-threads", default="1,2",
                   help="stream thread counts of the Kafka Streams peer, one run each (default 1,2)")
    p.add_argument("--kstreams-guarantee", choices=jvm_peer.GUARANTEES, default="at_least_once")
    p.add_argument("--warmup-fraction", type=float, default=0.2,
                   help="the steady CPU figures start at the first commit past this share of the input (default 0.2)")
    p.add_argument("--keep-topics", action="store_true", help="do not delete this run's topics at the end")
    p.add_argument("--out", help="result file stem under bench/results (default compare, quick: compare-quick)")
    args = p.parse_args(argv)
    q = args.quick
    args.out = args.out or ("compare-quick" if q else "compare")
    args.kstreams_threads = [int(x) for x in args.kstreams_threads.split(",") if x.strip()]
    args.events = args.events or (50_000 if q else 500_000)
    args.contacts = args.contacts or (5_000 if q else 50_000)
    if args.latency_seconds is None:
        args.latency_seconds = 10.0 if q else 30.0
    if args.recovery_contacts is None:
        args.recovery_contacts = 100_000 if q else 1_000_000
    args.only = set(args.only.split(","))
    res = run(args)
    res["warmup_fraction"] = args.warmup_fraction
    res["ratios"] = ratios(res)
    res["targets"] = [{"target": t, "measured": m, "verdict": v} for t, m, v, _ in verdicts(res)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (RESULTS / f"{args.out}.md").write_text(markdown(res))
    if res["contenders"]:
        plot(res, RESULTS / f"{args.out}.png")
    print(markdown(res))
    r = res["ratios"]
    why = {**res.get("not_run", {}), **res.get("errors", {})}

    def fmt(key: str, other: str) -> str:
        v = r.get(key)
        missing = next((f"{n}: {why[n]}" for n in ("leadpulse", other) if n in why), "not measured")
        return f"{v}" if v is not None else f"n/a ({missing[:80]})"
    ks_ok = res["contenders"].get("kstreams", {}).get("check", {}).get("ok")
    print(f"ratios: leadpulse/Kafka Streams per CPU s = {fmt('leadpulse/kstreams per CPU s', 'kstreams')} "
          f"(steady {fmt('leadpulse/kstreams per CPU s, steady', 'kstreams')}"
          + ("" if ks_ok or "kstreams" not in res["contenders"] else "; peer check FAILED") + "), "
          f"leadpulse/raw aiokafka = {fmt('leadpulse/raw', 'raw')} (per CPU s {fmt('leadpulse/raw per CPU s', 'raw')}), "
          f"(c)/(b) = {fmt('leadpulse/naive', 'naive')}, (c)/(d) = {fmt('leadpulse/quix', 'quix')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
