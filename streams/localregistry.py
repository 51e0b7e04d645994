"""Launch a real, local Confluent-compatible Schema Registry: Apicurio Registry (no Docker).

Apicurio publishes its server on Maven Central as a ready-to-run Quarkus distribution
(``io.apicurio:apicurio-registry-app:<version>:tar.gz:all``). It is resolved once with Maven and
unpacked into ``${XDG_CACHE_HOME:-~/.cache}/leadpulse/apicurio-registry-<version>/`` and reused
afterwards. Storage is in memory (H2): every start is an empty registry (``persistent=True`` keeps
it in an H2 file in the state dir instead). Its Confluent-compatible
API is ``http://127.0.0.1:PORT/apis/ccompat/v7``, the URL ``start()`` returns (SCHEMA_REGISTRY_URL).

2.6.x (the default) runs on Java 17; 3.x needs Java 21 or newer (found on PATH, in JAVA_HOME, or in
/usr/lib/jvm). Each registry lives in a *state dir* (default ``<repo>/.leadpulse/registry``)::

    registry.log    the JVM's output (Quarkus log, one access-log line per request)
    registry.pid    pid of the JVM while it runs
    url             "http://127.0.0.1:PORT/apis/ccompat/v7"

Everything binds 127.0.0.1 only (HTTP and Quarkus's management interface).

Python::

    from streams.localregistry import LocalRegistry
    registry = LocalRegistry()        # or LocalRegistry(state_dir=tmp_path, port=...)
    url = registry.start()            # idempotent
    registry.stop()

CLI::

    python -m streams.localregistry start|stop|status [--dir D] [--port P] [--json] [--timeout S]

Environment: LEADPULSE_REGISTRY_DIR (state dir), LEADPULSE_REGISTRY_PORT (fixed port),
LEADPULSE_REGISTRY_VERSION (default 2.6.13.Final), LEADPULSE_REGISTRY_JVM_OPTS (extra JVM options).
The cache root is the Kafka launcher's (LEADPULSE_KAFKA_CACHE, else ~/.cache/leadpulse).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from streams.localkafka import (
    DEPENDENCY_PLUGIN_VERSION, HOST, REPO_ROOT, LocalKafka, LocalKafkaError, _atomic_write, _cause_line,
    _check_port_number, _free_ports, _pid_alive, _port_free, _proc_cmdline, _read_from, _tail, cache_root,
    find_java, maven_cause, print_cli_error, run_maven,
)

__all__ = ["LocalRegistry", "LocalRegistryError", "main"]

DEFAULT_VERSION = "2.6.13.Final"
CCOMPAT_PATH = "/apis/ccompat/v7"
DEFAULT_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
# A small registry: a few hundred schemas at most in tests and demos.
JVM_OPTS = ["-Xmx384m", "-Xms64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]
_MARKER = ".complete"
_lock = LocalKafka._lock
_CHILDREN: dict[int, subprocess.Popen] = {}


class LocalRegistryError(LocalKafkaError):
    """Any failure of the local registry launcher; ``str(err)`` is a single line."""


def registry_version() -> str:
    return os.environ.get("LEADPULSE_REGISTRY_VERSION", "").strip() or DEFAULT_VERSION


def _major(version: str) -> int:
    m = re.match(r"(\d+)", version)
    return int(m.group(1)) if m else 0


def java_needed(version: str) -> int:
    """Apicurio 3.x is compiled for Java 21; 2.x runs on 17."""
    return 21 if _major(version) >= 3 else 17


def default_state_dir() -> Path:
    env = os.environ.get("LEADPULSE_REGISTRY_DIR")
    return Path(env).expanduser() if env else REPO_ROOT / ".leadpulse" / "registry"


def _env_port() -> int | None:
    raw = os.environ.get("LEADPULSE_REGISTRY_PORT", "").strip()
    if not raw:
        return None
    try:
        return _check_port_number(int(raw))
    except ValueError:
        raise LocalRegistryError(f"LEADPULSE_REGISTRY_PORT={raw!r} is not a port number") from None


class LocalRegistry:
    """One local Apicurio Registry (in-memory storage) living in ``state_dir``."""

    def __init__(self, state_dir: Path | str | None = None, port: int | None = None, *, version: str | None = None,
                 persistent: bool = False):
        """persistent: keep the schemas in an H2 file in the state dir (``db.mv.db``) across restarts,
        instead of in memory."""
        self.persistent = persistent
        self.state_dir = Path(state_dir).expanduser().resolve() if state_dir else default_state_dir().resolve()
        self._port_arg = _check_port_number(port) if port is not None else None
        self.version = version or registry_version()
        self.cache_dir = cache_root() / f"apicurio-registry-{self.version}"
        self.dist_dir = self.cache_dir / "dist"
        self.log_path = self.state_dir / "registry.log"
        self.pid_path = self.state_dir / "registry.pid"
        self.url_path = self.state_dir / "url"
        self._port: int | None = None
        self._log_offset = 0

    def __repr__(self) -> str:
        return f"LocalRegistry(state_dir={str(self.state_dir)!r}, url={self.url!r})"

    # -- public ---------------------------------------------------------------------

    @property
    def url(self) -> str | None:
        """The Confluent-compatible API base URL of the (last) started registry, or None."""
        if self._port:
            return f"http://{HOST}:{self._port}{CCOMPAT_PATH}"
        try:
            return self.url_path.read_text().strip() or None
        except OSError:
            return None

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Start the registry (or reuse the running one); return its ccompat URL."""
        deadline = time.monotonic() + timeout
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with _lock(self.state_dir / ".lock"):
            pid = self._running_pid()
            if pid is not None:
                port = self._file_port()
                if port is None:
                    raise LocalRegistryError(f"a registry (pid {pid}) runs on {self.state_dir} but its url file is "
                                             f"missing: run `python -m streams.localregistry stop --dir {self.state_dir}`")
                self._port = port
                self._wait_ready(pid, port, deadline, timeout)
                return self.url  # type: ignore[return-value]
            self.pid_path.unlink(missing_ok=True)
            java = find_java(java_needed(self.version), f"Apicurio Registry {self.version}", search_jvm_dir=True)
            self._ensure_dist(java)
            port, management_port = self._choose_ports()
            proc = self._launch(java, port, management_port)
            self._port = port
            try:
                self._wait_ready(proc.pid, port, deadline, timeout)
            except BaseException:
                self._terminate(proc.pid)
                self.pid_path.unlink(missing_ok=True)
                raise
            return self.url  # type: ignore[return-value]

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """SIGTERM our registry (SIGKILL after ``timeout`` s); True if one was stopped. Only a JVM whose
        command line carries this state dir's marker is ever signalled."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with _lock(self.state_dir / ".lock"):
            pid = self._running_pid()
            if pid is not None:
                self._terminate(pid, timeout)
            self.pid_path.unlink(missing_ok=True)
            return pid is not None

    def status(self) -> dict:
        pid = self._running_pid()
        port = self._file_port()
        ready = pid is not None and port is not None and self._answers(port)
        return {"state": ("running" if ready else "starting") if pid is not None else "stopped",
                "running": pid is not None, "ready": ready, "pid": pid, "url": self.url,
                "state_dir": str(self.state_dir), "log": str(self.log_path), "version": self.version}

    def __enter__(self) -> "LocalRegistry":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the distribution -------------------------------------------------------------

    def runner_jar(self) -> Path | None:
        """quarkus-run.jar (3.x) or apicurio-registry-app-<v>-runner.jar (2.x) of the cached distribution."""
        for candidate in [self.dist_dir / "quarkus-run.jar", *sorted(self.dist_dir.glob("*-runner.jar"))]:
            if candidate.is_file():
                return candidate
        return None

    def dist_ready(self) -> bool:
        return (self.cache_dir / _MARKER).is_file() and self.runner_jar() is not None

    def _ensure_dist(self, java: str) -> None:
        if self.dist_ready():
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with _lock(self.cache_dir / ".lock"):
            if self.dist_ready():  # another process finished it meanwhile
                return
            mvn = shutil.which("mvn")
            if mvn is None:
                raise LocalRegistryError(f"Maven (mvn) not found: install it (apt-get install maven) so Apicurio "
                                         f"Registry {self.version} can be downloaded into {self.cache_dir}")
            (self.cache_dir / _MARKER).unlink(missing_ok=True)
            tmp = self.cache_dir / f"download.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            mvn_log = self.cache_dir / "mvn.log"
            artifact = f"io.apicurio:apicurio-registry-app:{self.version}:tar.gz:all"
            cmd = [mvn, "-q", "-B", f"org.apache.maven.plugins:maven-dependency-plugin:{DEPENDENCY_PLUGIN_VERSION}:copy",
                   f"-Dartifact={artifact}", f"-DoutputDirectory={tmp}"]
            started = time.monotonic()
            rc = run_maven(cmd, self.cache_dir, java, mvn_log)
            archives = sorted(tmp.glob("*.tar.gz")) if tmp.is_dir() else []
            if rc != 0 or not archives:
                shutil.rmtree(tmp, ignore_errors=True)
                raise LocalRegistryError(f"downloading {artifact} with Maven failed (exit {rc}): {maven_cause(mvn_log)} "
                                         f"(full log: {mvn_log})")
            unpacked = tmp / "dist"
            try:
                with tarfile.open(archives[0]) as tar:
                    tar.extractall(unpacked, filter="data")
            except (tarfile.TarError, OSError) as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise LocalRegistryError(f"unpacking {archives[0].name} failed: {exc}") from None
            shutil.rmtree(self.dist_dir, ignore_errors=True)
            os.replace(unpacked, self.dist_dir)
            shutil.rmtree(tmp, ignore_errors=True)
            if self.runner_jar() is None:
                raise LocalRegistryError(f"{artifact} has no quarkus-run.jar or *-runner.jar (in {self.dist_dir})")
            _atomic_write(self.cache_dir / _MARKER, json.dumps(
                {"artifact": artifact, "seconds": round(time.monotonic() - started, 1)}) + "\n")

    # -- launch / wait / stop -------------------------------------------------------------

    def _marker(self) -> str:
        return f"-Dleadpulse.registry.dir={self.state_dir}"

    def _choose_ports(self) -> tuple[int, int]:
        fixed = self._port_arg if self._port_arg is not None else _env_port()
        if fixed is not None:
            if not _port_free(fixed):
                raise LocalRegistryError(f"port {fixed} on {HOST} is in use: set LEADPULSE_REGISTRY_PORT to a free "
                                         f"port or stop what uses it")
            return fixed, _free_ports(1, avoid=[fixed])[0]
        old = self._file_port()
        if old and _port_free(old):  # keep the URL stable across restarts of the same state dir
            return old, _free_ports(1, avoid=[old])[0]
        port, management = _free_ports(2)
        return port, management

    def jvm_command(self, java: str, port: int, management_port: int) -> list[str]:
        jar = self.runner_jar()
        props = {
            "quarkus.http.host": HOST, "quarkus.http.port": port,
            "quarkus.management.host": HOST, "quarkus.management.port": management_port,
            "quarkus.banner.enabled": "false",
        }
        if self.persistent:
            db = f"jdbc:h2:file:{self.state_dir / 'db'}"
            props["apicurio.datasource.url" if _major(self.version) >= 3 else "quarkus.datasource.jdbc.url"] = db
        return [java, *JVM_OPTS, *shlex.split(os.environ.get("LEADPULSE_REGISTRY_JVM_OPTS", "")), self._marker(),
                *(f"-D{k}={v}" for k, v in props.items()), "-jar", str(jar)]

    def _launch(self, java: str, port: int, management_port: int) -> subprocess.Popen:
        cmd = self.jvm_command(java, port, management_port)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            log.write(f"=== leadpulse localregistry: starting {time.strftime('%Y-%m-%dT%H:%M:%S')} ===\n"
                      f"$ {shlex.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, cwd=self.state_dir, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        _CHILDREN[proc.pid] = proc
        _atomic_write(self.pid_path, f"{proc.pid}\n")
        _atomic_write(self.url_path, f"http://{HOST}:{port}{CCOMPAT_PATH}\n")
        return proc

    @staticmethod
    def _answers(port: int) -> bool:
        """The ccompat API lists subjects (a JSON array): the registry and its storage are up."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}{CCOMPAT_PATH}/subjects", timeout=2.0) as resp:
                return resp.status == 200 and isinstance(json.loads(resp.read()), list)
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def _wait_ready(self, pid: int, port: int, deadline: float, timeout: float) -> None:
        while True:
            if not self._alive(pid):
                child = _CHILDREN.pop(pid, None)
                code = f" with code {child.returncode}" if child is not None else ""
                raise LocalRegistryError(f"the Schema Registry (pid {pid}) exited{code} while starting: "
                                         f"{_cause_line(_read_from(self.log_path, self._log_offset))} "
                                         f"(see {self.log_path})", log_tail=_tail(self.log_path, 20))
            if self._answers(port):
                return
            if time.monotonic() >= deadline:
                raise LocalRegistryError(f"the Schema Registry on {HOST}:{port} did not answer within {timeout:.0f}s "
                                         f"(stopped it); see {self.log_path}", log_tail=_tail(self.log_path, 20))
            time.sleep(0.2)

    @staticmethod
    def _alive(pid: int) -> bool:
        child = _CHILDREN.get(pid)
        return child.poll() is None if child is not None else _pid_alive(pid)

    def _ours(self, pid: int) -> bool:
        cmdline = _proc_cmdline(pid)
        return bool(cmdline) and os.path.basename(cmdline[0]).startswith("java") and self._marker() in cmdline

    def _file_port(self) -> int | None:
        m = re.match(r"http://[^:]+:(\d+)/", self.url or "")
        return int(m.group(1)) if m else None

    def _running_pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._alive(pid) and self._ours(pid) else None

    def _terminate(self, pid: int, timeout: float = STOP_TIMEOUT) -> None:
        if not self._ours(pid):
            return  # never signal anything but the registry JVM of this state dir
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while self._alive(pid) and time.monotonic() < end:
            time.sleep(0.1)
        if self._alive(pid) and self._ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            end = time.monotonic() + 10
            while self._alive(pid) and time.monotonic() < end:
                time.sleep(0.1)
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.localregistry",
                                     description="Run a local Confluent-compatible Schema Registry (Apicurio, "
                                                 "in-memory, 127.0.0.1 only).")
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=None,
                        help="state dir (default: $LEADPULSE_REGISTRY_DIR or <repo>/.leadpulse/registry)")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default: $LEADPULSE_REGISTRY_PORT or free)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="start timeout in seconds")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    args = parser.parse_args(argv)
    try:
        registry = LocalRegistry(state_dir=args.dir, port=args.port)
        if args.command == "start":
            url = registry.start(timeout=args.timeout)
            print(json.dumps(registry.status()) if args.json else url)
        elif args.command == "stop":
            stopped = registry.stop()
            print(json.dumps({"stopped": stopped, **registry.status()}) if args.json else
                  f"{'stopped' if stopped else 'not running'} ({registry.state_dir})")
        else:
            st = registry.status()
            print(json.dumps(st) if args.json else
                  f"{st['state']}{' ' + st['url'] + ' pid ' + str(st['pid']) if st['running'] else ''} "
                  f"({st['state_dir']})")
            return 0 if st["running"] else 1
    except LocalKafkaError as exc:
        return print_cli_error("localregistry", exc)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
