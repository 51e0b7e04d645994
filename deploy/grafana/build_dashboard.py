"""Writes deploy/grafana/dashboards/leadpulse.json (the JSON is committed; this is how it is made).

    python deploy/grafana/build_dashboard.py

Every query names only metrics a worker exposes (tests/observability checks it against a live
/metrics scrape and runs each query on a real Prometheus).
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards" / "leadpulse.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
SEL = 'job=~"$job"'

_ids = iter(range(1, 1000))


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict:
    t = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref, "range": not instant}
    if instant:
        t["instant"] = True
    return t


def panel(title: str, targets: list[dict], *, x: int, y: int, w: int = 12, h: int = 8, unit: str = "short",
          kind: str = "timeseries", stack: bool = False, description: str = "", min0: bool = True) -> dict:
    refs = "ABCDEFGH"
    for i, t in enumerate(targets):
        t["refId"] = refs[i]
    custom: dict = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": False}
    if stack:
        custom.update(stacking={"mode": "normal", "group": "A"}, fillOpacity=40)
    p = {
        "id": next(_ids),
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = custom
        if min0:
            p["fieldConfig"]["defaults"]["min"] = 0
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    elif kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto", "justifyMode": "auto"}
    return p


def row(title: str, y: int) -> dict:
    return {"id": next(_ids), "type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}}


def quantiles(metric: str, qs=(0.5, 0.9, 0.99)) -> list[dict]:
    return [target(f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{SEL}}}[{RI}])))", f"p{round(q * 100)}")
            for q in qs]


def build() -> dict:
    panels = [
        row("At a glance", 0),
        panel("Workers up / ready", [
            target(f'sum(up{{{SEL}}})', "up"),
            target(f"sum(leadpulse_ready{{{SEL}}})", "ready"),
        ], x=0, y=1, w=4, h=5, kind="stat"),
        panel("Events in /s", [target(f"sum(rate(leadpulse_events_consumed_total{{{SEL}}}[{RI}]))", "consumed")],
              x=4, y=1, w=4, h=5, kind="stat", unit="ops"),
        panel("Consumer lag (messages)", [target(f"sum(leadpulse_consumer_lag_messages{{{SEL}}})", "lag")],
              x=8, y=1, w=4, h=5, kind="stat"),
        panel("Freshness p99", quantiles("leadpulse_event_freshness_seconds", (0.99,)),
              x=12, y=1, w=4, h=5, kind="stat", unit="s"),
        panel("Dead letters /s", [target(f"sum(rate(leadpulse_events_rejected_total{{{SEL}}}[{RI}])) or vector(0)", "dlq")],
              x=16, y=1, w=4, h=5, kind="stat", unit="ops"),
        panel("Contacts in the table", [target(f"sum(leadpulse_contacts{{{SEL}}})", "contacts")],
              x=20, y=1, w=4, h=5, kind="stat"),

        row("Flow", 6),
        panel("Throughput in: inputs consumed /s by type", [
            target(f"sum by (event_type) (rate(leadpulse_events_consumed_total{{{SEL}}}[{RI}]))", "{{event_type}}"),
            target(f"sum(rate(leadpulse_events_rejected_total{{{SEL}}}[{RI}]))", "rejected"),
        ], x=0, y=7, unit="ops", stack=True,
            description="Valid inputs by behaviour event type (or input kind), and inputs sent to the DLQ."),
        panel("Throughput out: records published /s", [
            target(f"sum by (output) (rate(leadpulse_records_published_total{{{SEL}}}[{RI}]))", "{{output}}"),
        ], x=12, y=7, unit="ops", stack=True,
            description="lifecycle changes, score snapshots, dead letters, inputs forwarded to their contact's partition."),
        panel("Consumer lag by topic", [
            target(f"sum by (topic) (leadpulse_consumer_lag_messages{{{SEL}}})", "{{topic}}"),
        ], x=0, y=15, description="High watermark minus committed offset, summed over partitions and workers."),
        panel("Consumer lag by worker", [
            target(f"sum by (instance) (leadpulse_consumer_lag_messages{{{SEL}}})", "{{instance}}"),
        ], x=12, y=15),
        panel("Freshness: event time to scored", quantiles("leadpulse_event_freshness_seconds"), x=0, y=23, unit="s",
              description="Percentiles of (scored wall-clock time - event occurred_at) per behaviour event. Late "
                          "events upstream show here too."),
        panel("Batch duration", quantiles("leadpulse_batch_duration_seconds") + [
            target(f"sum(rate(leadpulse_batch_duration_seconds_count{{{SEL}}}[{RI}]))", "batches/s"),
        ], x=12, y=23, unit="s"),

        row("Contacts and lifecycle", 31),
        panel("Temperature mix", [
            target(f"sum by (temperature) (leadpulse_contacts_by_temperature{{{SEL}}})", "{{temperature}}"),
        ], x=0, y=32, stack=True),
        panel("Stage mix", [
            target(f"sum by (stage) (leadpulse_contacts_by_stage{{{SEL}}})", "{{stage}}"),
        ], x=12, y=32, stack=True),
        panel("New MQLs and SQLs per hour", [
            target(f'3600 * sum(rate(leadpulse_lifecycle_transitions_total{{{SEL},kind="stage",to="mql"}}[{RI}]))', "MQL"),
            target(f'3600 * sum(rate(leadpulse_lifecycle_transitions_total{{{SEL},kind="stage",to="sql"}}[{RI}]))', "SQL"),
        ], x=0, y=40, unit="short"),
        panel("Temperature changes /s", [
            target(f'sum by (from, to) (rate(leadpulse_lifecycle_transitions_total{{{SEL},kind="temperature"}}[{RI}]))',
                   "{{from}} → {{to}}"),
        ], x=12, y=40, unit="ops"),
        panel("Contacts in the table, by worker", [
            target(f"sum by (instance) (leadpulse_contacts{{{SEL}}})", "{{instance}}"),
        ], x=0, y=48, stack=True),
        panel("Cooling timers pending", [
            target(f"sum by (instance) (leadpulse_cooling_timers_pending{{{SEL}}})", "{{instance}}"),
        ], x=12, y=48, stack=True),

        row("Errors", 56),
        panel("DLQ rate by reason", [
            target(f"sum by (reason) (rate(leadpulse_events_rejected_total{{{SEL}}}[{RI}]))", "{{reason}}"),
        ], x=0, y=57, unit="ops", stack=True, description="Inputs rejected to the dead-letter topic, by error class."),
        panel("Erasures /s", [
            target(f'sum(rate(leadpulse_lifecycle_transitions_total{{{SEL},kind="erasure"}}[{RI}]))', "erased"),
        ], x=12, y=57, unit="ops"),

        row("Workers (Faust)", 65),
        panel("Rebalances", [
            target(f'sum by (instance) (increase(leadpulse_faust_assignment_operations_total{{{SEL},operation="completed"}}[{RI}]))',
                   "assignments {{instance}}"),
            target(f"sum(leadpulse_faust_total_rebalances{{{SEL}}})", "in progress"),
            target(f"sum(leadpulse_faust_total_rebalances_recovering{{{SEL}}})", "recovering"),
        ], x=0, y=66, description="Completed partition assignments per worker; rebalances in progress and in "
                                  "table recovery."),
        panel("Producer send latency (ms)", [
            target(f"histogram_quantile(0.99, sum by (le) (rate(leadpulse_faust_producer_send_latency_bucket{{{SEL}}}[{RI}])))",
                   "send p99"),
            target(f"histogram_quantile(0.99, sum by (le) (rate(leadpulse_faust_consumer_commit_latency_bucket{{{SEL}}}[{RI}])))",
                   "commit p99"),
        ], x=12, y=66, unit="ms"),
        panel("Rules version in use", [
            target(f"count by (version) (leadpulse_rules_info{{{SEL}}})", "{{version}}", instant=True),
        ], x=0, y=74, w=12, h=5, kind="stat",
            description="Number of workers per scoring rules version; more than one version = a rollout in progress."),
        panel("Messages received by Faust /s", [
            target(f"sum by (instance) (rate(leadpulse_faust_messages_received_total{{{SEL}}}[{RI}]))", "{{instance}}"),
        ], x=12, y=74, h=5, unit="ops"),
    ]
    return {
        "uid": "leadpulse",
        "title": "leadpulse",
        "description": "Real-time lead scoring: flow, lag, freshness, lifecycle mix, rejects, workers.",
        "tags": ["leadpulse", "kafka", "faust"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {"text": "Prometheus", "value": "leadpulse-prometheus"}, "hide": 0, "refresh": 1,
             "options": [], "regex": ""},
            {"name": "job", "label": "Job", "type": "query", "datasource": DS,
             "query": {"query": "label_values(leadpulse_ready, job)", "refId": "job"},
             "definition": "label_values(leadpulse_ready, job)", "refresh": 2, "includeAll": True,
             "multi": False, "allValue": ".+", "current": {"text": "All", "value": "$__all"}, "options": [],
             "hide": 0, "sort": 1, "regex": ""},
        ]},
        "panels": panels,
    }


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n")
    print(OUT)


if __name__ == "__main__":
    main()
