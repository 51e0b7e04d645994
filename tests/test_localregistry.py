"""Tests for streams/localregistry.py: unit tests need no registry; the `registry` one starts a real one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from streams import localregistry
from streams.localregistry import LocalRegistry, LocalRegistryError, java_needed
from tests.test_localkafka import FAKE_JAVA, _script


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """No inherited LEADPULSE_REGISTRY_* / cache settings; an empty cache."""
    for var in ("LEADPULSE_REGISTRY_PORT", "LEADPULSE_REGISTRY_DIR", "LEADPULSE_REGISTRY_VERSION",
                "LEADPULSE_KAFKA_CACHE", "JAVA_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def fake_path(isolated_env: Path, monkeypatch, mvn: str | None = None) -> None:
    bin_dir = isolated_env / "bin"
    _script(bin_dir, "java", FAKE_JAVA)
    if mvn is not None:
        _script(bin_dir, "mvn", mvn)
    monkeypatch.setenv("PATH", str(bin_dir))


@pytest.mark.parametrize("version,java", [("2.6.13.Final", 17), ("2.0.2.Final", 17), ("3.3.3", 21), ("3.0.9", 21)])
def test_java_needed_by_each_line(version, java):
    assert java_needed(version) == java


def test_cache_and_version_from_the_environment(isolated_env, monkeypatch):
    monkeypatch.setenv("LEADPULSE_REGISTRY_VERSION", "3.3.3")
    registry = LocalRegistry(state_dir=isolated_env / "state")
    assert registry.version == "3.3.3"
    assert registry.cache_dir == isolated_env / "cache" / "leadpulse" / "apicurio-registry-3.3.3"
    assert registry.url is None


def test_the_jvm_binds_loopback_only_and_carries_the_state_dir_marker(isolated_env):
    registry = LocalRegistry(state_dir=isolated_env / "state", persistent=True)
    registry.dist_dir.mkdir(parents=True)
    (registry.dist_dir / "apicurio-registry-app-2.6.13.Final-runner.jar").touch()
    cmd = registry.jvm_command("java", 18081, 18082)
    assert "-Dquarkus.http.host=127.0.0.1" in cmd and "-Dquarkus.management.host=127.0.0.1" in cmd
    assert "-Dquarkus.http.port=18081" in cmd
    assert f"-Dleadpulse.registry.dir={registry.state_dir}" in cmd
    assert f"-Dquarkus.datasource.jdbc.url=jdbc:h2:file:{registry.state_dir / 'db'}" in cmd
    assert cmd[-2:] == ["-jar", str(registry.dist_dir / "apicurio-registry-app-2.6.13.Final-runner.jar")]
    assert not any("0.0.0.0" in c for c in cmd)


def test_missing_maven_is_one_line(isolated_env, monkeypatch):
    fake_path(isolated_env, monkeypatch)
    with pytest.raises(LocalRegistryError) as err:
        LocalRegistry(state_dir=isolated_env / "state").start(timeout=5)
    assert str(err.value).startswith("Maven (mvn) not found: install it (apt-get install maven)")
    assert "\n" not in str(err.value)


def test_a_failed_download_names_the_artifact_and_the_log(isolated_env, monkeypatch):
    fake_path(isolated_env, monkeypatch, "#!/bin/sh\necho '[ERROR] Could not resolve artifact: network is down'\nexit 1\n")
    registry = LocalRegistry(state_dir=isolated_env / "state")
    with pytest.raises(LocalRegistryError) as err:
        registry.start(timeout=5)
    msg = str(err.value)
    assert "\n" not in msg
    assert "io.apicurio:apicurio-registry-app:2.6.13.Final:tar.gz:all" in msg and "network is down" in msg
    assert str(registry.cache_dir / "mvn.log") in msg
    assert not (registry.cache_dir / ".complete").exists() and not registry.dist_dir.exists()


def test_the_cli_reports_a_failure_in_one_line_exit_2(isolated_env, monkeypatch, capsys):
    fake_path(isolated_env, monkeypatch)
    assert localregistry.main(["start", "--dir", str(isolated_env / "state")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("localregistry: error: Maven (mvn) not found")


def test_stop_never_signals_a_process_that_is_not_this_registry(isolated_env):
    registry = LocalRegistry(state_dir=isolated_env / "state")
    registry.state_dir.mkdir(parents=True)
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        registry.pid_path.write_text(f"{victim.pid}\n")
        assert registry.status()["running"] is False
        assert registry.stop(timeout=1) is False
        registry._terminate(victim.pid, timeout=0.5)
        time.sleep(0.2)
        assert victim.poll() is None, "stop() signalled a process that is not our registry"
    finally:
        victim.kill()
        victim.wait()


def _listening_addresses(pid: int) -> set[str]:
    """Local addresses of the TCP sockets `pid` listens on (from /proc: no `ss` needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                addr = cols[1].split(":")[0]
                if v6:  # ::ffff:127.0.0.1 is stored as 0000000000000000FFFF00000100007F
                    found.add("127.0.0.1" if addr.endswith("0100007F") and addr[16:24] == "FFFF0000" else addr)
                else:
                    found.add(".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


@pytest.mark.registry
def test_start_reuse_stop_and_a_persistent_restart(tmp_path):
    registry = LocalRegistry(state_dir=tmp_path / "state", persistent=True)
    url = registry.start()
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/apis/ccompat/v7")
        st = registry.status()
        assert st["running"] and st["ready"] and st["url"] == url
        assert _listening_addresses(st["pid"]) == {"127.0.0.1"}
        assert registry.start() == url and registry.status()["pid"] == st["pid"]  # reused, not a second JVM
        req = urllib.request.Request(f"{url}/subjects/kept-value/versions", method="POST",
                                     data=json.dumps({"schema": '"string"'}).encode(),
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        urllib.request.urlopen(req, timeout=10).read()
        assert registry.stop() is True and registry.status()["state"] == "stopped"
        assert registry.stop() is False
        assert LocalRegistry(state_dir=tmp_path / "state", persistent=True).start() == url  # same port, same data
        with urllib.request.urlopen(f"{url}/subjects", timeout=10) as resp:
            assert json.loads(resp.read()) == ["kept-value"]
        assert "started in" in registry.log_path.read_text()
    finally:
        registry.stop()
