"""A real Prometheus server for tests: generated config, TSDB in a temp dir, 127.0.0.1 only, a free
port. Also finds the Prometheus binaries (Debian's `prometheus` package; deploy/install-test-deps.sh
installs it): missing binaries fail the run in CI and skip it elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tools.runtime import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IN_CI = bool(os.environ.get("CI"))


def binary(name: str) -> str:
    """Path of `prometheus` / `promtool`, or fail (CI) / skip (elsewhere) with what to do."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} not found on PATH: run deploy/install-test-deps.sh (Debian/Ubuntu: apt-get install prometheus)"
    if IN_CI:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


class Prometheus:
    def __init__(self, workdir: Path, targets: list[str], rule_files: list[Path] = (), interval: str = "1s"):
        self.workdir = workdir
        self.targets = targets
        self.rule_files = list(rule_files)
        self.interval = interval
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        lines = [
            "global:",
            f"  scrape_interval: {self.interval}",
            f"  evaluation_interval: {self.interval}",
            "  scrape_timeout: 1s",
        ]
        if self.rule_files:
            lines.append("rule_files:")
            lines += [f"  - {json.dumps(str(p))}" for p in self.rule_files]
        lines += [
            "scrape_configs:",
            "  - job_name: leadpulse",
            "    metrics_path: /metrics",
            "    static_configs:",
            f"      - targets: {json.dumps(self.targets)}",
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 30.0) -> "Prometheus":
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "prometheus.yml"
        cfg.write_text(self.config())
        log = open(self.workdir / "prometheus.log", "ab")
        self.proc = subprocess.Popen(
            [binary("prometheus"), f"--config.file={cfg}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
             "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready in {timeout}s:\n{self.log_text()}")

    def log_text(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def api(self, path: str, **params: str) -> dict:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        """Instant vector result: [{"metric": {...}, "value": [ts, "v"]}, ...]."""
        return self.api("query", query=promql)["result"]

    def scalar(self, promql: str) -> float | None:
        """The single value of a one-element result (e.g. a sum), or None when empty."""
        result = self.query(promql)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def wait_for(self, promql: str, expected: float, timeout: float = 30.0) -> float | None:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.scalar(promql)
            if value == expected:
                return value
            time.sleep(0.5)
        return value
