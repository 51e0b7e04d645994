"""Throughput of `leadpulse backtest` (one process, one core) on a simulated history of 1M events.

    python bench/backtest.py [--events N] [--seed S] [--budget SECONDS] [--regenerate] [--json]

The history is generated once with `leadpulse simulate --events N --seed S` (pinned end instant) into
``.leadpulse/bench/`` and reused; the generation rate is reported when it is (re)generated.  Then:

  * replay, rules A only: read the Avro file, feed the scoring core, final snapshots (in process);
  * replay, A vs B (B: the default rules with the MQL bar at 75): the same with two models;
  * the full command line as a user runs it (a fresh `leadpulse` process: interpreter start-up and
    imports included): rules A alone, then A vs B with the Markdown report and the PNG chart.

Times are wall clock and CPU (one process, one core); on a busy machine the CPU time is the
meaningful one.  Exit status 1 when `leadpulse backtest` (rules A, whole process) needs more than
--budget CPU seconds (default 30).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

END = "2025-01-01T00:00:00Z"


def generate(path: Path, events: int, seed: int) -> dict:
    from tools.common import no_gc, parse_instant
    from tools.simulate import SimConfig, simulate, write_file

    cfg = SimConfig(events=events, seed=seed, end_ms=parse_instant(END, "--end"))
    path.parent.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    with no_gc():
        sim = simulate(cfg, show_progress=False)
        t1 = time.perf_counter()
        write_file(sim, cfg, path, show_progress=False)
    t2, c2 = time.perf_counter(), time.process_time()
    n = sim.stats["behaviour_deliveries"]
    del sim
    gc.collect()
    return {"behaviour_deliveries": n, "generate_s": round(t1 - t0, 2), "write_s": round(t2 - t1, 2),
            "cpu_s": round(c2 - c0, 2), "events_per_s": round(n / (t2 - t0)),
            "events_per_cpu_s": round(n / (c2 - c0)), "bytes": path.stat().st_size}


def replay(path: Path, rules_files: list[str]) -> dict:
    from tools.backtest import _Window, read_avro, run_backtest
    from tools.common import load_rules_arg, no_gc

    rules = [(label, load_rules_arg(f)) for label, f in zip("AB", rules_files)]
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    with no_gc():
        source, chunks = read_avro(path, _Window(None, None), show_progress=False)
        res = run_backtest(rules, source, chunks, by_time=False, end=None)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    res.pop("_replays")
    return {"seconds": round(dt, 2), "cpu_s": round(cpu, 2), "behaviour_events": res["behaviour_events"],
            "events_per_s": round(res["behaviour_events"] / dt), "events_per_cpu_s": round(res["behaviour_events"] / cpu),
            "records_per_s": round(res["input"]["records"] / dt), "mqls": [r["mqls"] for r in res["rules"]]}


def cli(path: Path, args: list[str]) -> dict:
    """`leadpulse backtest --events FILE ARGS --json` in a fresh process: wall and CPU time."""
    cmd = [sys.executable, "-m", "tools.cli", "backtest", "--events", str(path), *args, "--json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if p.returncode != 0:
        raise SystemExit(f"leadpulse backtest failed ({p.returncode}): {p.stderr.strip()}")
    res = json.loads(p.stdout)
    return {"seconds": round(dt, 2), "cpu_s": round(cpu, 2), "events_per_s": round(res["behaviour_events"] / dt),
            "events_per_cpu_s": round(res["behaviour_events"] / cpu), "stage_differs": res.get("diff", {}).get("stage_differs")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--budget", type=float, default=30.0, help="seconds allowed for the full command (default 30)")
    ap.add_argument("--regenerate", action="store_true", help="generate the history even if it exists")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    path = ROOT / ".leadpulse" / "bench" / f"simulated-{args.events}-seed{args.seed}.avro"
    res: dict = {"python": platform.python_version(), "machine": platform.machine(), "file": str(path)}
    if args.regenerate or not path.exists():
        if not args.json:
            print(f"generating {args.events:,} events into {path} …", flush=True)
        res["simulate"] = generate(path, args.events, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        strict = Path(tmp) / "strict.toml"
        text = resources.files("scoring").joinpath("default_rules.toml").read_text(encoding="utf-8")
        strict.write_text(text.replace("\nmin_score = 65\n", "\nmin_score = 75\n")
                          .replace('version = "', 'version = "bench-strict-', 1), encoding="utf-8")
        res["replay_a"] = replay(path, ["default"])
        res["replay_a_vs_b"] = replay(path, ["default", str(strict)])
        res["cli_a"] = cli(path, ["--rules", "default"])
        res["cli_a_vs_b_report_chart"] = cli(path, ["--rules", "default", "--compare", str(strict), "--report",
                                                    str(Path(tmp) / "report.md"), "--chart", str(Path(tmp) / "chart.png")])
    # The budget: `leadpulse backtest` of the 1M events with one rules file, whole process, on one core.
    # CPU time, so that a busy machine does not fail it (wall time is shown too).
    ok = res["cli_a"]["cpu_s"] <= args.budget
    res["budget_s"] = args.budget
    res["within_budget"] = ok
    if args.json:
        print(json.dumps(res, indent=2))
        return 0 if ok else 1
    print(f"leadpulse backtest — Python {res['python']} {res['machine']}, {path.name}")
    if "simulate" in res:
        s = res["simulate"]
        print(f"  simulate: {s['behaviour_deliveries']:,} behaviour deliveries generated in {s['generate_s']} s "
              f"+ written in {s['write_s']} s (CPU {s['cpu_s']} s) → {s['events_per_s']:,} events/s wall, "
              f"{s['events_per_cpu_s']:,} per CPU s ({s['bytes']:,} bytes)")
    for key, label in (("replay_a", "replay, rules A"), ("replay_a_vs_b", "replay, A vs B")):
        r = res[key]
        print(f"  {label:26s} {r['behaviour_events']:,} events in {r['seconds']:6.2f} s (CPU {r['cpu_s']:6.2f} s) → "
              f"{r['events_per_s']:>8,} events/s, {r['events_per_cpu_s']:>8,} per CPU s (MQLs {' / '.join(map(str, r['mqls']))})")
    for key, label in (("cli_a", "leadpulse backtest (A)"), ("cli_a_vs_b_report_chart", "… A vs B + report + chart")):
        c = res[key]
        print(f"  {label:26s} whole process: {c['seconds']:6.2f} s (CPU {c['cpu_s']:6.2f} s) → "
              f"{c['events_per_s']:>8,} events/s, {c['events_per_cpu_s']:>8,} per CPU s")
    print(f"  budget: `leadpulse backtest` of {res['replay_a']['behaviour_events']:,} events within {args.budget:g} CPU s: "
          f"{'ok' if ok else 'EXCEEDED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
