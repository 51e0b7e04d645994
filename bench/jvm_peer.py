"""Contender (e) of `bench/compare.py`: the Kafka Streams peer (`bench/kstreams/`, Java 17, Maven).

Its job is leadpulse's reduced to what a Kafka Streams user would write first: Confluent-framed Avro
BehaviourEvents in, base points per event type from `scoring/default_rules.toml`, exact event-time
decay with the same half-life (one decayed sum in a reference frame, as `scoring/engagement.py` keeps
per rule), a persistent RocksDB store per contact with its changelog, a LifecycleChange out per
temperature change (same thresholds, same hysteresis), late events (beyond the 7-day tolerance) and
undecodable ones to a dead-letter topic. What it leaves out is listed in docs/bench.md.

This module builds the jar, says how to start it, and checks it: the peer's final temperature of
every contact must equal the scoring core's on the same input with the base-points-only model (the
default rules without caps and property rules), and its dead letters the core's late events.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from scoring import ScoringModel, default_rules
from scoring.events import BehaviourEvent
from scoring.rules import Rules

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "bench" / "kstreams"
BUILD = ROOT / ".leadpulse" / "bench-kstreams"
JAR = BUILD / "leadpulse-kstreams-peer.jar"
RULES = ROOT / "scoring" / "default_rules.toml"
#: The JVM's options. A heap bound as any deployment sets one (the broker's launcher uses 512 MiB);
#: RocksDB's memory is off-heap and counted in the peak RSS all the same.
JVM_OPTS = ["-Xms256m", "-Xmx1g", "-XX:+UseG1GC"]
GUARANTEES = ("at_least_once", "exactly_once_v2")


class PeerUnavailable(RuntimeError):
    """The peer cannot be built or started here (no Java/Maven, a failed build): a failed line in the results."""


def _sources() -> list[Path]:
    return [PROJECT / "pom.xml", *sorted((PROJECT / "src").rglob("*")),
            ROOT / "schemas" / "behaviour_event.v2.avsc", ROOT / "schemas" / "lifecycle_change.v1.avsc"]


def build(log=print) -> Path:
    """The runnable jar, rebuilt with Maven when it is missing or older than its sources (offline once
    Maven's local repository has the dependencies; the first build downloads them from Maven Central)."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise PeerUnavailable(f"`{tool}` is not on PATH (the Kafka Streams peer needs Java 17 and Maven)")
    newest = max(p.stat().st_mtime for p in _sources() if p.is_file())
    if JAR.exists() and JAR.stat().st_mtime >= newest:
        return JAR
    log(f"building the Kafka Streams peer with Maven into {JAR.relative_to(ROOT)}")
    p = subprocess.run(["mvn", "-q", "-B", "-f", str(PROJECT / "pom.xml"), "package"], cwd=ROOT,
                       capture_output=True, text=True)
    if p.returncode != 0 or not JAR.exists():
        raise PeerUnavailable(f"mvn package failed ({p.returncode}): {(p.stdout + p.stderr)[-1500:]}")
    JAR.touch()
    return JAR


def command(jar: Path, bootstrap: str, input_topic: str, changes: str, dlq: str, app_id: str, state_dir: Path,
            threads: int = 1, guarantee: str = "at_least_once", commit_interval_ms: int = 1000,
            cache_bytes: int | None = None) -> list[str]:
    if guarantee not in GUARANTEES:
        raise ValueError(f"guarantee must be one of {', '.join(GUARANTEES)}, got {guarantee!r}")
    cmd = ["java", *JVM_OPTS, "-jar", str(jar), "--bootstrap", bootstrap, "--input", input_topic,
           "--changes", changes, "--dlq", dlq, "--app-id", app_id, "--state-dir", str(state_dir),
           "--rules", str(RULES), "--threads", str(threads), "--guarantee", guarantee,
           "--commit-interval-ms", str(commit_interval_ms)]
    if cache_bytes is not None:
        cmd += ["--cache-bytes", str(cache_bytes)]
    return cmd


READY = "Ready ("  # printed by PeerApp when the instance reaches RUNNING


# -- the check -------------------------------------------------------------------------------------

def base_points_rules() -> Rules:
    """leadpulse's default rules with only what the peer implements: base points, half-life, late
    tolerance, total cap, temperature bands (no per-type caps, no property rules)."""
    return replace(default_rules(), caps=MappingProxyType({}), rules=())


def expected(records: list[dict]) -> tuple[dict[str, str], int]:
    """(contact -> final temperature, number of late events) by the scoring core on the base-points-only
    model, applying `records` in their produced order (one contact's events keep that order in its partition)."""
    model = ScoringModel(base_points_rules())
    states: dict = {}
    rejected: list = []
    for rec in records:
        cid = rec["contact_id"]
        ev = BehaviourEvent(rec["event_id"], cid, rec["event_type"], rec["occurred_at"], rec["properties"],
                            rec["source"], rec["anonymous_id"])
        st, _ = model.apply_events(states.get(cid), (ev,), rejected=rejected, inplace=True)
        states[cid] = st
    return {cid: st.temperature for cid, st in states.items()}, len(rejected)


def check(want: dict[str, str], want_late: int, latest_changes: dict[bytes, bytes], dead_letters: int,
          decode) -> dict:
    """Compare the peer's last LifecycleChange per contact (`latest_changes`, key -> value; a contact with
    none is cold) and its dead-letter count with the core's. `decode(value) -> dict` decodes a change."""
    got = {k.decode(): decode(v)["to_value"] for k, v in latest_changes.items()}
    mismatched = sorted(c for c in set(want) | set(got) if want.get(c) != got.get(c, "cold"))
    counts: dict[str, int] = {}
    for t in want.values():
        counts[t] = counts.get(t, 0) + 1
    return {
        "ok": not mismatched and dead_letters == want_late,
        "contacts": len(want), "mismatched": len(mismatched), "mismatched_examples": mismatched[:10],
        "expected_temperatures": dict(sorted(counts.items())),
        "dead_letters": dead_letters, "expected_late": want_late,
    }
