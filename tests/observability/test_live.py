"""A real worker on a real broker, scraped by a real Prometheus (1 s interval): PromQL through the
HTTP API sees the counters of known events; health endpoints; the contact gauges survive a restart
(recounted from the table); the dashboard and alert queries name only metrics the worker exposes and
evaluate on a real Prometheus; the worker logs JSON lines without personal data."""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest
import yaml
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streams.routing import murmur2_partition
from tests.observability.promserver import DEPLOY, Prometheus, binary
from tests.support import Worker, codec, event, produce, topic_env

pytestmark = pytest.mark.kafka

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "leadpulse.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\b(leadpulse_[A-Za-z0-9_]+|up)\b")
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "info": ("_info",)}


def scrape(worker: Worker) -> tuple[str, str]:
    with urllib.request.urlopen(worker.url + "/metrics", timeout=5) as resp:
        return resp.headers["Content-Type"], resp.read().decode()


def exposed(text: str) -> dict[str, str]:
    """Every name a query may use → the family's type: family names, and the sample names
    (`_bucket`/`_sum`/`_count` of a histogram, `_total` of a counter, `_info`) mapped to them."""
    names: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        names[family.name] = family.type
        for suffix in SUFFIXES.get(family.type, ()):
            names[family.name + suffix] = family.type
    return names


def dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return out


def alert_queries() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(r["alert"], r["expr"]) for g in groups for r in g["rules"]]


def grafana_to_promql(expr: str) -> str:
    return expr.replace("$__rate_interval", "1m").replace('=~"$job"', '=~".+"')


async def produce_in_transaction(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """As an exactly-once upstream does: the records, then a commit marker that takes an offset."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"upstream-{time.time_ns()}")
    await producer.start()
    try:
        async with producer.transaction():
            for key, value in records:
                await producer.send(topic, key=key, value=value)
    finally:
        await producer.stop()


def erase(contact_id: str, request_id: str, at: int) -> tuple[bytes, bytes]:
    value = codec.encode("EraseRequest", {"request_id": request_id, "contact_id": contact_id, "requested_at": at})
    return contact_id.encode(), value


async def test_a_worker_scraped_by_prometheus(kafka_bootstrap, unique, tmp_path):
    binary("prometheus")
    binary("promtool")
    names = topic_env(unique)
    env = {"LEADPULSE_LOG_FORMAT": "json", "LEADPULSE_LAG_INTERVAL_S": "1"}
    worker = Worker(kafka_bootstrap, unique, tmp_path, extra_env=env).start()
    prom: Prometheus | None = None
    restarted: Worker | None = None
    try:
        # -- health ---------------------------------------------------------------------------
        worker.wait_ready()
        assert worker.get_json("/health/live") == (200, {"status": "live"})
        deadline = time.monotonic() + 20
        while (ready := worker.get_json("/health/ready"))[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready[0] == 200 and ready[1]["status"] == "ready", ready
        content_type, text = scrape(worker)
        assert content_type == "text/plain; version=0.0.4; charset=utf-8"

        prom = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{worker.web_port}"], rule_files=[ALERTS]).start()

        # -- known events -----------------------------------------------------------------------
        now = int(time.time() * 1000)
        # From an exactly-once upstream: each partition ends with a commit marker, which is no lag.
        await produce_in_transaction(
            kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"],
            [event(f"c-{i}", f"e-{i}", "page_view", now - 2000, url="/blog") for i in range(5)],
        )
        await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"], [(b"c-bad", b"this is not avro")])
        # Keyed by something else, landing in another partition than its contact's owner: forwarded
        # to the owner partition of the repartition topic, then scored there.
        wrong_key = next(k for k in (f"not-the-contact-{i}".encode() for i in range(100))
                         if murmur2_partition(k, 4) != murmur2_partition(b"c-9", 4))
        await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"],
                      [(wrong_key, event("c-9", "e-9", "demo_request", now)[1])])

        checks = {
            'sum(leadpulse_events_consumed_total{event_type="page_view"})': 5,
            'sum(leadpulse_events_consumed_total{event_type="demo_request"})': 1,
            "sum(leadpulse_events_rejected_total)": 1,
            'sum(leadpulse_events_rejected_total{reason="WireFormatError"})': 1,
            'sum(leadpulse_records_published_total{output="dlq"})': 1,
            'sum(leadpulse_records_published_total{output="forwarded"})': 1,
            "clamp_max(sum(leadpulse_event_freshness_seconds_count), 6)": 6,
            "sum(leadpulse_contacts)": 6,
            "sum(leadpulse_contacts_by_temperature)": 6,  # c-9's demo request may have warmed it
            'sum(leadpulse_contacts_by_stage{stage="lead"})': 6,
            "sum(leadpulse_batch_duration_seconds_count) > bool 0": 1,
            'sum(up{job="leadpulse"})': 1,
            "sum(leadpulse_ready)": 1,
            # Every input partition has a lag series, and nothing is left behind: the commit markers
            # of the upstream transaction are not counted as lag.
            # 4 partitions x 10 input topics (identity, merges, memberships, account shares, repartition, ticks too)
            "count(leadpulse_consumer_lag_messages)": 40,
            "max(leadpulse_consumer_lag_messages)": 0,
            'count(leadpulse_rules_info{version!=""})': 1,
        }
        for promql, expected in checks.items():
            value = prom.wait_for(promql, expected, timeout=30)
            assert value == expected, f"{promql} = {value}, expected {expected}\n{worker.log_text()[-3000:]}"

        # An erasure takes the contact out of the gauges.
        await produce(kafka_bootstrap, names["LEADPULSE_ERASURES_TOPIC"], [erase("c-0", "r-1", now)])
        for promql, expected in {
            "sum(leadpulse_contacts)": 5,
            "sum(leadpulse_contacts_by_temperature)": 5,
            "sum(leadpulse_contacts_by_stage)": 5,
            'sum(leadpulse_lifecycle_transitions_total{kind="erasure",to="erased"})': 1,
            'sum(leadpulse_events_consumed_total{event_type="erasures"})': 1,
        }.items():
            value = prom.wait_for(promql, expected, timeout=30)
            assert value == expected, f"{promql} = {value}, expected {expected}"

        # -- dashboard and alert queries: live names, valid PromQL ------------------------------
        _, text = scrape(worker)
        live = exposed(text)
        for where, expr in dashboard_queries() + alert_queries():
            unknown = {m for m in METRIC.findall(expr) if m != "up" and m not in live}
            assert not unknown, f"{where}: {expr} names metrics the worker does not expose: {unknown}"
            prom.query(grafana_to_promql(expr))  # raises unless Prometheus accepts and evaluates it
        rules = prom.api("rules")["groups"]
        evaluated = [r for g in rules for r in g["rules"]]
        assert len(evaluated) == len(alert_queries())
        deadline = time.monotonic() + 15
        while any(r.get("health") != "ok" for r in evaluated) and time.monotonic() < deadline:
            time.sleep(1)
            evaluated = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        assert all(r.get("health") == "ok" for r in evaluated), evaluated
        firing = [r["name"] for r in evaluated if r["state"] != "inactive"]
        assert not firing, f"no alert should be pending on a healthy worker: {firing}"

        # -- restart: gauges recounted from the table ------------------------------------------
        worker.stop()
        assert prom.wait_for('sum(up{job="leadpulse"})', 0, timeout=15) == 0
        restarted = Worker(kafka_bootstrap, unique, tmp_path, name=worker.name, extra_env=env,
                           web_port=worker.web_port).start()
        restarted.wait_ready()
        for promql, expected in {
            'sum(up{job="leadpulse"})': 1,
            "sum(leadpulse_contacts)": 5,
            "sum(leadpulse_contacts_by_temperature)": 5,
            'sum(leadpulse_contacts_by_stage{stage="lead"})': 5,
            "sum(leadpulse_ready)": 1,
        }.items():
            value = prom.wait_for(promql, expected, timeout=30)
            assert value == expected, f"after restart: {promql} = {value}, expected {expected}"

        # -- logs: JSON lines, contact ids and no personal data -------------------------------------
        lines = [ln for ln in worker.log_text().splitlines() if ln.strip()]
        parsed = []
        for ln in lines:
            try:
                parsed.append(json.loads(ln))
            except ValueError:
                pass
        assert len(parsed) == len(lines), "not JSON: " + "\n".join(ln for ln in lines if not ln.startswith("{"))[:3000]
        assert all({"ts", "level", "logger", "msg"} <= d.keys() for d in parsed)
        erased = [d for d in parsed if d.get("kind") == "erasure"]
        assert erased and erased[0]["contact_id"] == "c-0", [d for d in parsed if "lifecycle" in d["msg"]]
    finally:
        for w in (worker, restarted):
            if w is not None:
                w.stop()
        if prom is not None:
            prom.stop()


async def test_two_workers_split_the_partitions(kafka_bootstrap, unique, tmp_path):
    """After a rebalance each worker reports only what it owns: contact gauges recounted, lag series
    of revoked partitions gone, both ready; the sums over workers stay exact."""
    binary("prometheus")
    names = topic_env(unique)
    env = {"LEADPULSE_LAG_INTERVAL_S": "1"}
    w1 = Worker(kafka_bootstrap, unique, tmp_path, name="w1", extra_env=env).start()
    w2 = Worker(kafka_bootstrap, unique, tmp_path, name="w2", extra_env=env)
    prom: Prometheus | None = None
    try:
        w1.wait_ready()
        prom = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{w1.web_port}", f"127.0.0.1:{w2.web_port}"]).start()
        now = int(time.time() * 1000)
        await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"],
                      [event(f"c-{i}", f"e-{i}", "page_view", now - 1000) for i in range(40)])
        assert prom.wait_for("sum(leadpulse_contacts)", 40) == 40
        w2.start()
        # From its first answer until it is ready, the joining worker says why it is not.
        answers: list[tuple[int, dict]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (answers and answers[-1][0] == 200):
            try:
                answers.append(w2.get_json("/health/ready", timeout=2))
            except OSError:  # web server not listening yet
                pass
            time.sleep(0.05)
        assert answers and answers[-1][0] == 200, f"{answers[-3:]}\n{w2.log_text()[-2000:]}"
        not_ready = [body for status, body in answers if status != 200]
        assert not_ready, "the joining worker was never seen not ready"
        assert all(b["status"] == "not ready" and b["reason"] for b in not_ready), not_ready
        assert w2.get_json("/health/live") == (200, {"status": "live"})
        w2.wait_ready()
        for promql, expected in {
            'sum(up{job="leadpulse"})': 2,
            "sum(leadpulse_ready)": 2,
            "count(leadpulse_consumer_lag_messages)": 40,  # 4 partitions x 10 input topics, no duplicates
            'count(count by (instance) (leadpulse_consumer_lag_messages))': 2,
            "sum(leadpulse_contacts)": 40,
            "sum(leadpulse_contacts_by_temperature)": 40,
            "sum(leadpulse_contacts_by_stage)": 40,
            "count(leadpulse_contacts > 0)": 2,  # the contacts are spread over both workers
            'sum(leadpulse_events_consumed_total{event_type="page_view"})': 40,
        }.items():
            value = prom.wait_for(promql, expected, timeout=45)
            assert value == expected, f"{promql} = {value}, expected {expected}\n{w2.log_text()[-2000:]}"
        assert prom.scalar('sum(leadpulse_faust_assignment_operations_total{operation="completed"}) > bool 1') == 1
    finally:
        w2.stop()
        w1.stop()
        if prom is not None:
            prom.stop()
