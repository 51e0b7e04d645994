"""The alert rules: valid for promtool, and each alert fires and resolves in its unit tests."""

from __future__ import annotations

import subprocess

import yaml

from tests.observability.promserver import DEPLOY, binary

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary("promtool"), *args], capture_output=True, text=True, timeout=120,
                          cwd=ALERTS.parent)


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def test_promtool_check_rules():
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass():
    result = promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_compose_prometheus_config_is_valid():
    result = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_resolved_and_documented():
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fired, quiet = set(), set()
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {r["alert"] for r in rules()}
    assert names == {"LeadpulseConsumerLagGrowing", "LeadpulseDeadLettersHigh", "LeadpulseNotConsuming",
                     "LeadpulseWorkerDown", "LeadpulseNotReady", "LeadpulseScoresStale"}
    assert names <= fired, f"never seen firing: {names - fired}"
    assert names <= quiet, f"never seen quiet/resolved: {names - quiet}"
    operating = (DEPLOY.parent / "docs" / "operating.md").read_text()
    for r in rules():
        ann = r["annotations"]
        assert ann.get("summary") and ann.get("runbook"), r["alert"]
        anchor = ann["runbook"].split("#", 1)[1]
        assert f'<a id="{anchor}"></a>' in operating, f"runbook anchor {anchor} missing in docs/operating.md"
        assert r["labels"]["severity"] in ("warning", "critical")
