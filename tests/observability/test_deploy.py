"""Deployment files: docker compose, the image, Kubernetes manifests, Grafana provisioning, the
dashboard's shape. (The dashboard's metric names are checked against a live worker in test_live.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.observability.promserver import DEPLOY, ROOT

COMPOSE = ROOT / "docker-compose.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "leadpulse.json"
K8S = DEPLOY / "k8s"


def compose_cli() -> list[str] | None:
    """`docker compose` (v2 plugin) or `docker-compose`, if one works here (no engine needed)."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]):
            try:
                if subprocess.run([*cmd, "version"], capture_output=True, timeout=20).returncode == 0:
                    return cmd
            except (OSError, subprocess.TimeoutExpired):
                pass
    return None


def test_docker_compose_config_validates():
    cmd = compose_cli()
    if cmd is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is available; the file is checked by "
                    "test_compose_services_ports_and_volumes instead")
    result = subprocess.run([*cmd, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_compose_services_ports_and_volumes():
    doc = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved
    services = doc["services"]
    assert {"kafka", "worker-1", "worker-2", "prometheus", "grafana", "simulator", "collector"} <= services.keys()
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: port {port} is not bound to 127.0.0.1"
    for name in ("worker-1", "worker-2"):
        w = services[name]
        assert w["build"] == "." and w["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert any(v.endswith(":/data") for v in w["volumes"]), f"{name}: RocksDB data not on a volume"
        assert w["environment"]["LEADPULSE_WEB_HOST"] == name
    assert services["simulator"]["command"] == ["leadpulse", "simulate", "--rate", "50", "--contacts", "2000"]
    assert services["simulator"]["entrypoint"], "the image's entrypoint runs a worker: override it"
    # Prometheus gets this repo's config and rules; Grafana its provisioning and dashboards.
    prom_mounts = services["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prom_mounts
    graf_mounts = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in graf_mounts
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in graf_mounts
    for mount in prom_mounts + graf_mounts:
        src = mount.split(":", 1)[0]
        if src.startswith("./"):
            assert (ROOT / src).is_dir(), f"bind mount source {src} missing"
    named = {m.split(":", 1)[0] for s in services.values() for m in s.get("volumes", []) if not m.startswith(".")}
    assert named <= set(doc["volumes"]), f"undeclared volumes: {named - set(doc['volumes'])}"
    # Prometheus scrapes exactly the compose workers, under the job name the alerts select on.
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "leadpulse")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {"worker-1:6066", "worker-2:6066"}
    # The collector: its own entry point, its write keys from a secret file, its own scrape job.
    col = services["collector"]
    assert col["entrypoint"] == ["python", "-m", "collector"] and col["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    port = col["environment"]["LEADPULSE_COLLECTOR_PORT"]
    assert col["ports"] == [f"127.0.0.1:{port}:{port}"] and f":{port}/health/live" in " ".join(col["healthcheck"]["test"])
    (secret,) = col["secrets"]
    assert col["environment"]["LEADPULSE_COLLECTOR_WRITE_KEYS_FILE"] == f"/run/secrets/{secret}"
    keys_file = ROOT / doc["secrets"][secret]["file"]
    from collector.auth import WriteKeys
    assert WriteKeys.from_lines(keys_file.read_text().splitlines(), str(keys_file)).sources()
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "leadpulse-collector")
    assert {t for sc in job["static_configs"] for t in sc["targets"]} == {f"collector:{port}"}


def test_grafana_provisioning_points_at_the_dashboard_and_datasource():
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/leadpulse.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    dash = json.loads(DASHBOARD.read_text())
    ds_var = next(v for v in dash["templating"]["list"] if v["type"] == "datasource")
    assert ds_var["current"]["value"] == ds["uid"]


def test_dashboard_shape():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "leadpulse"
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " | ".join(p["title"] for p in panels).lower()
    for topic in ("throughput in", "throughput out", "lag", "freshness", "temperature", "stage", "mql",
                  "dlq", "rebalances", "contacts in the table"):
        assert topic in titles, f"no panel about {topic!r}"
    for p in panels:
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
    # The committed JSON is what the generator makes.
    result = subprocess.run(
        [sys.executable, "-c", "import json,sys; sys.path.insert(0, 'deploy/grafana'); "
         "import build_dashboard as b; print(json.dumps(b.build(), indent=2, ensure_ascii=False))"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == dash, "dashboard JSON is stale: run deploy/grafana/build_dashboard.py"


def test_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(stages) >= 2 and all("slim" in s for s in stages), stages
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0", "numeric non-root USER"
    assert re.search(r'^VOLUME\s+\["/data"\]', text, re.M)
    assert "LEADPULSE_DATA_DIR=/data" in text
    assert re.search(r"^HEALTHCHECK .*\n?.*/health/live", text, re.M)
    for src in ("schemas", "streams", "agents", "tools", "collector"):
        assert re.search(rf"^COPY {src} /app/{src}", text, re.M), src
    # the scoring core as compiled in the build stage (PYTHONPATH=/app would shadow the wheel's modules)
    assert re.search(r"^COPY --from=build /src/scoring /app/scoring", text, re.M)
    assert "build_ext --inplace" in text and "COPY pyproject.toml setup.py" in text


def k8s_docs() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def test_k8s_manifests():
    docs = k8s_docs()
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    (sts,) = by_kind["StatefulSet"]
    spec = sts["spec"]
    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    headless = services[spec["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    assert spec["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    pod = spec["template"]
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
    (c,) = pod["spec"]["containers"]
    port = next(p for p in c["ports"] if p["name"] == "http")["containerPort"]
    assert ann["prometheus.io/port"] == str(port)
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert any(m["mountPath"] == "/data" and m["name"] == spec["volumeClaimTemplates"][0]["metadata"]["name"]
               for m in c["volumeMounts"])
    (cm,) = by_kind["ConfigMap"]
    assert c["envFrom"][0]["configMapRef"]["name"] == cm["metadata"]["name"]
    assert cm["data"]["LEADPULSE_DATA_DIR"] == "/data" and cm["data"]["LEADPULSE_WEB_PORT"] == str(port)
    secrets = {s["metadata"]["name"]: s for s in by_kind["Secret"]}
    secret = secrets["leadpulse-kafka"]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"} <= secret_env.keys()
    assert all(ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
               for ref in secret_env.values())
    assert not set(cm["data"]) & {"KAFKA_SASL_PASSWORD", "KAFKA_SASL_USERNAME"}, "credentials belong in the Secret"
    sc = pod["spec"]["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0 and sc["fsGroup"]
    assert int(cm["data"]["LEADPULSE_PARTITIONS"]) >= spec["replicas"]


def test_k8s_collector():
    docs = k8s_docs()
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    assert dep["metadata"]["name"] == "leadpulse-collector"
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels["app.kubernetes.io/name"] != "leadpulse", "the worker alerts' scrape job must not select collectors"
    svc = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "leadpulse-collector")
    assert svc["spec"]["selector"].items() <= labels.items()
    (c,) = pod["spec"]["containers"]
    assert c["command"] == ["python", "-m", "collector"]
    port = next(p for p in c["ports"] if p["name"] == "http")["containerPort"]
    env = {e["name"]: e for e in c["env"]}
    assert env["LEADPULSE_COLLECTOR_PORT"]["value"] == str(port) and env["LEADPULSE_COLLECTOR_BIND"]["value"] == "0.0.0.0"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert c["envFrom"][0]["configMapRef"]["name"] == "leadpulse-config"
    secrets = {s["metadata"]["name"]: s for s in docs if s["kind"] == "Secret"}
    # Write keys: a file from the collector Secret; webhook secrets optional; Kafka credentials shared.
    keys_dir = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "write-keys")
    (vol,) = [v for v in pod["spec"]["volumes"] if v["name"] == "write-keys"]
    (item,) = vol["secret"]["items"]
    assert env["LEADPULSE_COLLECTOR_WRITE_KEYS_FILE"]["value"] == f"{keys_dir}/{item['path']}"
    assert item["key"] in secrets[vol["secret"]["secretName"]]["stringData"]
    for name in ("LEADPULSE_HUBSPOT_CLIENT_SECRET", "LEADPULSE_MAUTIC_WEBHOOK_SECRET"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == vol["secret"]["secretName"] and ref["optional"] is True
    assert {env[n]["valueFrom"]["secretKeyRef"]["name"] for n in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD")} == {
        "leadpulse-kafka"}
    # The shipped placeholder key is refused at start: a manifest applied unchanged takes no events.
    from collector.auth import WriteKeyError, WriteKeys
    with pytest.raises(WriteKeyError, match="placeholder"):
        WriteKeys.from_lines(secrets["leadpulse-collector"]["stringData"][item["key"]].splitlines(), "secret")
    sc = pod["spec"]["securityContext"]
    assert sc["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    scrape = yaml.safe_load((K8S / "prometheus-scrape.yml").read_text())
    job = next(j for j in scrape["scrape_configs"] if j["job_name"] == "leadpulse-collector")
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"
            and r["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]]
    assert keep and keep[0]["regex"] == labels["app.kubernetes.io/name"]


def test_kustomize_renders():
    if not shutil.which("kubectl"):
        pytest.skip("kubectl not installed (the manifests are still checked by test_k8s_manifests)")
    result = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert all(d["metadata"].get("namespace") == "leadpulse" for d in rendered if d["kind"] != "Namespace")
    sts = next(d for d in rendered if d["kind"] == "StatefulSet")
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"].startswith("registry.example.com/leadpulse:")


def test_install_script_is_idempotent_when_installed():
    script = DEPLOY / "install-test-deps.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if shutil.which("promtool") and shutil.which("prometheus"):
        result = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "already installed" in result.stdout
