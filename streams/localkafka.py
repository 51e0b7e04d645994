"""Launch a real, local Apache Kafka broker (single KRaft broker+controller node, no Docker).

The broker jars are resolved once with Maven into
``${XDG_CACHE_HOME:-~/.cache}/leadpulse/kafka-<version>/libs`` and reused afterwards.
Each broker lives in a *state dir* (default ``<repo>/.leadpulse/kafka``) holding::

    data/               KRaft metadata + topic logs (formatted on first start)
    server.properties   generated on every start
    log4j2.properties   generated on every start
    broker.log          JVM stdout/stderr and the Log4j2 file output
    kafka.pid           pid of the broker JVM while it runs
    bootstrap           "127.0.0.1:PORT"

Several brokers can run side by side, one per state dir.  Everything binds 127.0.0.1 only.

Python::

    from streams.localkafka import LocalKafka
    kafka = LocalKafka()              # or LocalKafka(state_dir=tmp_path, port=..., extra_properties={...})
    bootstrap = kafka.start()         # "127.0.0.1:PORT"; idempotent
    kafka.stop()
    # a second listener PROXIED, advertised at a TCP fault proxy's port (tools/faultproxy.py):
    kafka = LocalKafka(state_dir=tmp_path, advertise_proxied=PROXY_PORT)
    kafka.start(); kafka.proxied_port   # the proxy's upstream: 127.0.0.1:<proxied_port>
    # authenticated: SASL_PLAINTEXT + SCRAM-SHA-512 (SASL_SSL with tls=make_tls_files(dir))
    kafka = LocalKafka.with_scram("leadpulse", password, state_dir=tmp_path)

CLI::

    python -m streams.localkafka start|stop|status|wipe [--dir D] [--port P] [--json] [--timeout S]
        [--scram-user U --scram-password-file F]     (start: an authenticated SASL_PLAINTEXT listener)
        [--advertise-proxied PORT]                   (start: a PROXIED listener advertised at PORT)

Environment: LEADPULSE_KAFKA_DIR (state dir), LEADPULSE_KAFKA_PORT (fixed port),
LEADPULSE_KAFKA_VERSION (default 4.1.1), LEADPULSE_KAFKA_CACHE (jar cache root),
LEADPULSE_KAFKA_JVM_OPTS (extra JVM options, appended).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

__all__ = ["LocalKafka", "LocalKafkaError", "TlsFiles", "main", "make_tls_files"]

DEFAULT_KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.25.3"
# Kafka's own pom drags in slf4j-api 1.7.36, which the log4j-slf4j2-impl binding cannot serve
# (SLF4J 1.7 never finds an SLF4J 2 provider, so every broker log line would be dropped).
SLF4J_VERSION = "2.0.17"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"

HOST = "127.0.0.1"
NODE_ID = 1
# The opt-in second client listener, advertised at a TCP proxy's port (see LocalKafka.__init__).
PROXIED = "PROXIED"
DEFAULT_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
LOG_ROTATE_BYTES = 20 * 1024 * 1024
JVM_OPTS = ["-Xmx512m", "-Xms256m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true"]

REPO_ROOT = Path(__file__).resolve().parents[1]
_MARKER = ".complete"

# Brokers started by this Python process: kept so they are reaped (no zombies) and never
# garbage-collected while running.
_CHILDREN: dict[int, subprocess.Popen] = {}


class LocalKafkaError(RuntimeError):
    """Any failure of the local broker launcher; ``str(err)`` is a single line.

    When the broker died while starting, the tail of ``broker.log`` is in ``err.log_tail``
    (and attached as an exception note, so pytest shows it).
    """

    def __init__(self, message: str, log_tail: str | None = None):
        super().__init__(" ".join(message.split("\n")).strip())
        self.log_tail = log_tail
        if log_tail:
            self.add_note(log_tail)


# --------------------------------------------------------------------------- helpers


def kafka_version() -> str:
    return os.environ.get("LEADPULSE_KAFKA_VERSION", "").strip() or DEFAULT_KAFKA_VERSION


def cache_root() -> Path:
    if os.environ.get("LEADPULSE_KAFKA_CACHE"):
        return Path(os.environ["LEADPULSE_KAFKA_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "leadpulse"


def default_state_dir() -> Path:
    env = os.environ.get("LEADPULSE_KAFKA_DIR")
    return Path(env).expanduser() if env else REPO_ROOT / ".leadpulse" / "kafka"


def _env_port() -> int | None:
    raw = os.environ.get("LEADPULSE_KAFKA_PORT", "").strip()
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        raise LocalKafkaError(f"LEADPULSE_KAFKA_PORT={raw!r} is not a port number") from None
    return _check_port_number(port)


def _check_port_number(port: int) -> int:
    if not 1 <= int(port) <= 65535:
        raise LocalKafkaError(f"port {port} is not a valid TCP port (1-65535)")
    return int(port)


def _port_free(port: int) -> bool:
    """True if 127.0.0.1:port can be bound (SO_REUSEADDR, like the JVM: TIME_WAIT is fine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_ports(n: int, avoid: Sequence[int] = ()) -> list[int]:
    """n distinct free ports on 127.0.0.1 chosen by the kernel (bind :0), none in ``avoid``."""
    socks: list[socket.socket] = []
    try:
        ports: list[int] = []
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((HOST, 0))
            port = s.getsockname()[1]
            if port not in avoid and port not in ports:
                ports.append(port)
        return ports
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _cause_line(text: str) -> str:
    """The most telling line of a Java failure output: the first exception message, else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for pattern in (r"\w+(Exception|Error): ", r"\b(ERROR|FATAL)\b", r"Exception|Error"):
        for ln in lines:
            if not ln.startswith("at ") and not ln.startswith("$ ") and re.search(pattern, ln):
                return ln[:300]
    return lines[-1][:300] if lines else "no output"


def _read_from(path: Path, offset: int, limit: int = 1024 * 1024) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def _proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]


def _pid_alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:  # a zombie still answers kill(0)
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    return True


def _is_kafka_cmdline(cmdline: Sequence[str] | None, props: Path | None = None) -> bool:
    """A java process running kafka.Kafka (with our server.properties, if given)."""
    if not cmdline:
        return False
    if "kafka.Kafka" not in cmdline or not os.path.basename(cmdline[0]).startswith("java"):
        return False
    return props is None or str(props) in cmdline


def _properties_escape(value: str) -> str:
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return ("\\" + out) if out.startswith(" ") else out


def _read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return props
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        props[key.strip()] = value.strip()
    return props


def new_cluster_id() -> str:
    """A Kafka-style cluster id: base64url (no padding) of 16 random bytes, not starting with '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


# ----------------------------------------------------------------- Kafka wire probe


def _kafka_request(port: int, api_key: int, api_version: int, body: bytes, timeout: float,
                   tls: bool = False) -> bytes:
    client_id = b"leadpulse-localkafka"
    header = struct.pack(">hhih", api_key, api_version, 0x4C50, len(client_id)) + client_id
    payload = header + body
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        s = raw
        if tls:  # readiness only: whose certificate it is does not matter here
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            s = ctx.wrap_socket(raw)
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(payload)) + payload)
        size_raw = _recv_exact(s, 4)
        (size,) = struct.unpack(">i", size_raw)
        if not 4 <= size <= 16 * 1024 * 1024:
            raise OSError(f"implausible Kafka response size {size}")
        data = _recv_exact(s, size)
    (corr,) = struct.unpack_from(">i", data, 0)
    if corr != 0x4C50:
        raise OSError("correlation id mismatch")
    return data[4:]


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def probe_metadata(port: int, timeout: float = 2.0) -> list[tuple[int, str, int]]:
    """Send a Metadata v1 request (no topics); return the live brokers [(node_id, host, port)]."""
    data = _kafka_request(port, 3, 1, struct.pack(">i", 0), timeout)
    (count,) = struct.unpack_from(">i", data, 0)
    off = 4
    brokers = []
    for _ in range(max(count, 0)):
        node_id, hlen = struct.unpack_from(">ih", data, off)
        off += 6
        host = data[off:off + hlen].decode()
        off += hlen
        bport, rlen = struct.unpack_from(">ih", data, off)
        off += 6 + max(rlen, 0)
        brokers.append((node_id, host, bport))
    return brokers


def probe_api_versions(port: int, timeout: float = 2.0, tls: bool = False) -> bool:
    """ApiVersions v0 (answered even before SASL authentication); True if error_code == 0."""
    data = _kafka_request(port, 18, 0, b"", timeout, tls)
    (error_code,) = struct.unpack_from(">h", data, 0)
    return error_code == 0


# ------------------------------------------------------------------------ launcher


class LocalKafka:
    """One local single-node KRaft Kafka broker living in ``state_dir``."""

    def __init__(self, state_dir: Path | str | None = None, port: int | None = None,
                 extra_properties: Mapping[str, object] | None = None, *,
                 format_args: Sequence[str] = (), version: str | None = None,
                 advertise_proxied: int | None = None):
        """
        advertise_proxied: also open a second client listener ``PROXIED`` (same security protocol
            and settings as the inter-broker listener) and advertise it at ``127.0.0.1:<this port>``,
            where a TCP proxy forwards to it (its upstream is ``127.0.0.1:<proxied_port>``). Clients
            reconnect to the addresses metadata advertises, so a proxy in front of the one listener
            would be bypassed after the first metadata answer; clients bootstrapped at the proxy get
            the proxy's address for every broker and coordinator, and all others (the normal
            listener) talk to the broker directly. Off by default.
        extra_properties: added to / overriding the generated server.properties; the strings
            ``{port}`` and ``{controller_port}`` in values are replaced by the actual ports
            (e.g. for a SASL listener: ``{"listeners": "SASL_PLAINTEXT://127.0.0.1:{port},..."}``).
        format_args: extra ``kafka-storage format`` arguments used when the data dir is first
            formatted (e.g. ``["--add-scram", "SCRAM-SHA-256=[name=alice,password=secret]"]``).
        """
        self.state_dir = Path(state_dir).expanduser().resolve() if state_dir else default_state_dir().resolve()
        self._port_arg = _check_port_number(port) if port is not None else None
        self.extra_properties = {str(k): str(v) for k, v in (extra_properties or {}).items()}
        self.format_args = list(format_args)
        self.version = version or kafka_version()
        self.cache_dir = cache_root() / f"kafka-{self.version}"
        self.libs_dir = self.cache_dir / "libs"
        self.data_dir = self.state_dir / "data"
        self.properties_path = self.state_dir / "server.properties"
        self.log4j_path = self.state_dir / "log4j2.properties"
        self.log_path = self.state_dir / "broker.log"
        self.pid_path = self.state_dir / "kafka.pid"
        self.bootstrap_path = self.state_dir / "bootstrap"
        self._port: int | None = None
        self.advertise_proxied = _check_port_number(advertise_proxied) if advertise_proxied is not None else None

    @classmethod
    def with_scram(cls, username: str, password: str, state_dir: Path | str | None = None,
                   port: int | None = None, *, mechanism: str = "SCRAM-SHA-512",
                   tls: "TlsFiles | None" = None, extra_properties: Mapping[str, object] | None = None,
                   format_args: Sequence[str] = (), version: str | None = None,
                   advertise_proxied: int | None = None) -> "LocalKafka":
        """A broker whose client listener is SASL_PLAINTEXT (SASL_SSL with ``tls``) with SCRAM only.

        KRaft keeps SCRAM credentials in its metadata, so ``username``/``password`` are created when
        the data dir is first formatted (an already formatted state dir keeps its old credentials).
        The broker authenticates to itself with them (inter-broker traffic uses the same listener),
        so no advertised listener accepts an unauthenticated client; the controller listener stays
        PLAINTEXT on 127.0.0.1. The readiness probe uses ApiVersions, answered before authentication.
        """
        if mechanism not in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
            raise LocalKafkaError(f"SCRAM mechanism {mechanism!r}: expected SCRAM-SHA-512 or SCRAM-SHA-256")
        for what, value in (("user name", username), ("password", password)):
            if not re.fullmatch(r'[^\s",=\[\];\\]+', value or ""):
                # They go into `kafka-storage format --add-scram` and a JAAS line unquoted/quoted as is.
                raise LocalKafkaError(f"SCRAM {what}: must be non-empty, without spaces or any of \" , = [ ] ; \\")
        jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
                f'username="{username}" password="{password}";')
        name = "SASL_SSL" if tls else "SASL_PLAINTEXT"
        props = {
            "listeners": f"{name}://{HOST}:{{port}},CONTROLLER://{HOST}:{{controller_port}}",
            "advertised.listeners": f"{name}://{HOST}:{{port}}",
            "inter.broker.listener.name": name,
            "sasl.enabled.mechanisms": mechanism,
            "sasl.mechanism.inter.broker.protocol": mechanism,
            f"listener.name.{name.lower()}.{mechanism.lower()}.sasl.jaas.config": jaas,
        }
        if tls:  # PEM files straight from openssl; the broker verifies itself (inter-broker) with the CA
            props.update({"ssl.keystore.type": "PEM", "ssl.keystore.location": str(tls.keystore),
                          "ssl.truststore.type": "PEM", "ssl.truststore.location": str(tls.ca)})
        props.update(extra_properties or {})
        scram = ["--add-scram", f"{mechanism}=[name={username},password={password}]"]
        return cls(state_dir, port, props, format_args=[*scram, *format_args], version=version,
                   advertise_proxied=advertise_proxied)

    def __repr__(self) -> str:
        return f"LocalKafka(state_dir={str(self.state_dir)!r}, bootstrap={self.bootstrap!r})"

    # -- public ---------------------------------------------------------------------

    @property
    def bootstrap(self) -> str | None:
        """``"127.0.0.1:PORT"`` of the (last) started broker, or None if never started."""
        if self._port:
            return f"{HOST}:{self._port}"
        try:
            text = self.bootstrap_path.read_text().strip()
        except OSError:
            return None
        return text or None

    @property
    def port(self) -> int | None:
        bs = self.bootstrap
        return int(bs.rsplit(":", 1)[1]) if bs else None

    @property
    def proxied_port(self) -> int | None:
        """The port the PROXIED listener binds (a proxy's upstream), or None without one."""
        return self._listener_port(PROXIED, _read_properties(self.properties_path).get("listeners", ""))

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Start the broker (or reuse the running one); return its bootstrap ``127.0.0.1:PORT``."""
        deadline = time.monotonic() + timeout
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._lock(self.state_dir / ".lock"):
            pid = self._running_pid()
            if pid is not None:
                return self._reuse(pid, deadline)
            self.pid_path.unlink(missing_ok=True)
            port, cport = self._choose_ports()
            pport = self._choose_proxied_port(avoid=[port, cport]) if self.advertise_proxied else None
            java = find_java()
            self._ensure_jars(java)
            self._write_configs(port, cport, pport)
            self._format_if_needed(java)
            proc = self._launch(java)
            self._port = port
            try:
                self._wait_ready(proc.pid, port, deadline, timeout)
            except BaseException:
                self._terminate(proc.pid)
                self.pid_path.unlink(missing_ok=True)
                raise
            return self.bootstrap  # type: ignore[return-value]

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """SIGTERM our broker (SIGKILL after ``timeout`` s); True if a broker was stopped.

        Only a pid whose command line is ``java ... kafka.Kafka <this state dir's
        server.properties>`` is ever signalled; a stale pid file is just removed.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._lock(self.state_dir / ".lock"):
            pids = set()
            pid = self._pid_from_file()
            if pid is not None and _pid_alive(pid) and _is_kafka_cmdline(_proc_cmdline(pid), self.properties_path):
                pids.add(pid)
            pids.update(self._find_broker_pids())
            for p in sorted(pids):
                self._terminate(p, timeout)
            self.pid_path.unlink(missing_ok=True)
            return bool(pids)

    def status(self) -> dict:
        """``{"running", "ready", "pid", "bootstrap", "state_dir", "log", "version"}``."""
        pid = self._running_pid()
        bootstrap = self.bootstrap
        ready = False
        if pid is not None and bootstrap:
            ready = self._answers(int(bootstrap.rsplit(":", 1)[1]))
        return {
            "state": ("running" if ready else "starting") if pid is not None else "stopped",
            "running": pid is not None,
            "ready": ready,
            "pid": pid,
            "bootstrap": bootstrap,
            "state_dir": str(self.state_dir),
            "log": str(self.log_path),
            "version": self.version,
            "proxied_port": self.proxied_port,
        }

    def wipe(self) -> None:
        """Stop the broker and delete its data (topics, offsets, KRaft metadata)."""
        self.stop()
        with self._lock(self.state_dir / ".lock"):
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.bootstrap_path.unlink(missing_ok=True)
            self._port = None

    def __enter__(self) -> "LocalKafka":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- process bookkeeping --------------------------------------------------------

    @staticmethod
    @contextlib.contextmanager
    def _lock(path: Path) -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _pid_from_file(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def _find_broker_pids(self) -> list[int]:
        """Live broker JVMs started on this state dir's server.properties (pid file or not)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                pid = int(entry.name)
                if _is_kafka_cmdline(_proc_cmdline(pid), self.properties_path) and _pid_alive(pid):
                    found.append(pid)
        return found

    def _running_pid(self) -> int | None:
        pid = self._pid_from_file()
        if pid is not None and _pid_alive(pid) and _is_kafka_cmdline(_proc_cmdline(pid), self.properties_path):
            return pid
        others = self._find_broker_pids()
        return others[0] if others else None

    def _terminate(self, pid: int, timeout: float = STOP_TIMEOUT) -> None:
        if not _is_kafka_cmdline(_proc_cmdline(pid)):
            return  # never signal something that is not a Kafka broker JVM
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout):
            if _is_kafka_cmdline(_proc_cmdline(pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._wait_exit(pid, 10.0)
        _CHILDREN.pop(pid, None)

    @staticmethod
    def _wait_exit(pid: int, timeout: float) -> bool:
        end = time.monotonic() + timeout
        child = _CHILDREN.get(pid)
        while time.monotonic() < end:
            if child is not None:
                if child.poll() is not None:
                    return True
            elif not _pid_alive(pid):
                return True
            time.sleep(0.1)
        return False

    def _file_port(self) -> int | None:
        try:
            return int(self.bootstrap_path.read_text().strip().rsplit(":", 1)[1])
        except (OSError, ValueError, IndexError):
            return None

    def _reuse(self, pid: int, deadline: float) -> str:
        port = self._file_port()
        if port is None:
            raise LocalKafkaError(f"a broker (pid {pid}) runs on {self.state_dir} but its bootstrap file is "
                                  f"missing: run `python -m streams.localkafka stop --dir {self.state_dir}`")
        wanted = self._port_arg or _env_port()
        if wanted is not None and wanted != port:
            raise LocalKafkaError(f"the broker in {self.state_dir} already runs on port {port}, not {wanted}: "
                                  f"stop it first")
        self._port = port
        if not self.pid_path.exists():
            self.pid_path.write_text(f"{pid}\n")
        self._wait_ready(pid, port, deadline, max(deadline - time.monotonic(), 0.0))
        return self.bootstrap  # type: ignore[return-value]

    # -- ports / config -------------------------------------------------------------

    def _choose_ports(self) -> tuple[int, int]:
        fixed = self._port_arg if self._port_arg is not None else _env_port()
        old_port = self._file_port() if (self.data_dir / "meta.properties").exists() else None
        old_cport = self._controller_port(_read_properties(self.properties_path).get("listeners", ""))
        if fixed is not None:
            if not _port_free(fixed):
                raise LocalKafkaError(f"port {fixed} on {HOST} is in use: set LEADPULSE_KAFKA_PORT to a free "
                                      f"port or stop what uses it")
            port = fixed
        elif old_port and _port_free(old_port):
            port = old_port  # keep the bootstrap stable across restarts of the same state dir
        else:
            port = _free_ports(1)[0]
        if old_cport and old_cport != port and _port_free(old_cport):
            cport = old_cport
        else:
            cport = _free_ports(1, avoid=[port])[0]
        return port, cport

    def _choose_proxied_port(self, avoid: Sequence[int]) -> int:
        """The PROXIED listener's port: the previous one if still free (a proxy created before a
        broker restart keeps its upstream), else a free one."""
        old = self.proxied_port
        if old and old not in avoid and old != self.advertise_proxied and _port_free(old):
            return old
        return _free_ports(1, avoid=[*avoid, self.advertise_proxied])[0]

    @staticmethod
    def _listener_port(name: str, listeners: str) -> int | None:
        m = re.search(rf"(?:^|,)\s*{name}://[^,]*:(\d+)", listeners)
        return int(m.group(1)) if m else None

    @classmethod
    def _controller_port(cls, listeners: str) -> int | None:
        return cls._listener_port("CONTROLLER", listeners)

    def server_properties(self, port: int, controller_port: int, proxied_port: int | None = None) -> dict[str, str]:
        """The broker configuration (defaults + ``extra_properties``) for the given ports; with
        ``advertise_proxied``, the PROXIED listener on ``proxied_port``."""
        props = {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            "controller.quorum.bootstrap.servers": f"{HOST}:{controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ("CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,"
                                               "SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"),
            "log.dirs": str(self.data_dir),
            "num.partitions": "4",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "8",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "num.network.threads": "3",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "message.max.bytes": str(MAX_MESSAGE_BYTES),
            "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
            "replica.fetch.response.max.bytes": str(2 * MAX_MESSAGE_BYTES),
            "socket.request.max.bytes": str(100 * 1024 * 1024),
            "log.retention.hours": "168",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "log.retention.check.interval.ms": "300000",
        }
        for key, value in self.extra_properties.items():
            props[key] = value.replace("{port}", str(port)).replace("{controller_port}", str(controller_port))
        if self.advertise_proxied is not None:
            self._add_proxied_listener(props, proxied_port)
        return props

    def _add_proxied_listener(self, props: dict[str, str], proxied_port: int | None) -> None:
        """PROXIED binds ``proxied_port`` and is advertised at the proxy; it speaks the
        inter-broker listener's protocol with that listener's per-listener settings (a SCRAM JAAS
        line, say), so a proxied client authenticates exactly like a direct one. The controller
        listener and inter-broker traffic never go through the proxy."""
        if proxied_port is None:
            raise LocalKafkaError("advertise_proxied is set but no port was chosen for the PROXIED listener")
        inter = props.get("inter.broker.listener.name", "PLAINTEXT")
        pmap = dict(item.split(":", 1) for item in props["listener.security.protocol.map"].split(",") if ":" in item)
        pmap[PROXIED] = pmap.get(inter, inter)
        props["listener.security.protocol.map"] = ",".join(f"{k}:{v}" for k, v in pmap.items())
        props["listeners"] += f",{PROXIED}://{HOST}:{proxied_port}"
        props["advertised.listeners"] += f",{PROXIED}://{HOST}:{self.advertise_proxied}"
        prefix = f"listener.name.{inter.lower()}."
        for key in [k for k in props if k.startswith(prefix)]:
            props[f"listener.name.{PROXIED.lower()}.{key[len(prefix):]}"] = props[key]

    def _write_configs(self, port: int, cport: int, proxied_port: int | None = None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.server_properties(port, cport, proxied_port)
        lines = ["# Generated by streams/localkafka.py on every start; edits are overwritten."]
        lines += [f"{k}={_properties_escape(v)}" for k, v in props.items()]
        _atomic_write(self.properties_path, "\n".join(lines) + "\n")
        _atomic_write(self.log4j_path, LOG4J2_TEMPLATE.replace("@LOGFILE@", str(self.log_path)))
        _atomic_write(self.bootstrap_path, f"{HOST}:{port}\n")
        self._probe_kind = self._listener_protocol(props, port)

    @staticmethod
    def _listener_protocol(props: Mapping[str, str], port: int) -> str:
        pmap = dict(item.split(":", 1) for item in props.get("listener.security.protocol.map", "").split(",")
                    if ":" in item)
        for item in (props.get("advertised.listeners") or props.get("listeners", "")).split(","):
            m = re.fullmatch(r"\s*(\w+)://[^:]*:(\d+)\s*", item)
            if m and int(m.group(2)) == port:
                return pmap.get(m.group(1), m.group(1))
        return "PLAINTEXT"

    def _answers(self, port: int) -> bool:
        kind = getattr(self, "_probe_kind", None)
        if kind is None:
            kind = self._listener_protocol(_read_properties(self.properties_path), port)
        try:
            if kind == "PLAINTEXT":
                return any(node == NODE_ID for node, _, _ in probe_metadata(port))
            if kind in ("SASL_PLAINTEXT", "SASL_SSL", "SSL"):
                return probe_api_versions(port, tls=kind.endswith("SSL"))
            with socket.create_connection((HOST, port), timeout=2.0):
                return True  # an unknown protocol: a TCP accept is the best we can do
        except (OSError, struct.error, UnicodeDecodeError):
            return False

    # -- jars -------------------------------------------------------------------------

    def pom_xml(self) -> str:
        return POM_TEMPLATE.format(kafka=self.version, scala=SCALA_VERSION, log4j=LOG4J_VERSION,
                                   slf4j=SLF4J_VERSION, plugin=DEPENDENCY_PLUGIN_VERSION)

    def jars_ready(self) -> bool:
        return (self.cache_dir / _MARKER).is_file() and any(self.libs_dir.glob(f"kafka_{SCALA_VERSION}-*.jar"))

    def _ensure_jars(self, java: str) -> None:
        if self.jars_ready():
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with self._lock(self.cache_dir / ".lock"):
            if self.jars_ready():  # another process finished the download meanwhile
                return
            mvn = shutil.which("mvn")
            if mvn is None:
                raise LocalKafkaError(f"Maven (mvn) not found: install it (apt-get install maven) so the Kafka "
                                      f"{self.version} jars can be downloaded into {self.libs_dir}")
            (self.cache_dir / _MARKER).unlink(missing_ok=True)
            pom = self.cache_dir / "pom.xml"
            pom.write_text(self.pom_xml())
            tmp_libs = self.cache_dir / f"libs.tmp-{os.getpid()}"
            shutil.rmtree(tmp_libs, ignore_errors=True)
            mvn_log = self.cache_dir / "mvn.log"
            cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", "-DincludeScope=runtime",
                   f"-DoutputDirectory={tmp_libs}"]
            started = time.monotonic()
            rc = run_maven(cmd, self.cache_dir, java, mvn_log)
            jars = sorted(p.name for p in tmp_libs.glob("*.jar")) if tmp_libs.is_dir() else []
            problem = None
            if rc != 0:
                problem = f"exit {rc}"
            elif f"kafka_{SCALA_VERSION}-{self.version}.jar" not in jars:
                problem = f"kafka_{SCALA_VERSION}-{self.version}.jar missing from the result"
            elif not any(j.startswith("slf4j-api-2.") for j in jars):
                problem = "slf4j-api 2.x missing from the result"
            if problem:
                shutil.rmtree(tmp_libs, ignore_errors=True)
                raise LocalKafkaError(f"downloading Kafka {self.version} jars with Maven failed ({problem}): "
                                      f"{maven_cause(mvn_log)} (full log: {mvn_log})")
            shutil.rmtree(self.libs_dir, ignore_errors=True)
            os.replace(tmp_libs, self.libs_dir)
            marker = {"kafka": self.version, "scala": SCALA_VERSION, "log4j": LOG4J_VERSION, "slf4j": SLF4J_VERSION,
                      "jars": jars, "seconds": round(time.monotonic() - started, 1)}
            _atomic_write(self.cache_dir / _MARKER, json.dumps(marker, indent=1) + "\n")

    def _classpath(self) -> str:
        return str(self.libs_dir / "*")

    # -- format / launch / wait -----------------------------------------------------

    def _format_if_needed(self, java: str) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cmd = [java, "-Xmx256m", f"-Dlog4j2.configurationFile={self.log4j_path}", "-cp", self._classpath(),
               "kafka.tools.StorageTool", "format", "--standalone", "-t", new_cluster_id(),
               "-c", str(self.properties_path), *self.format_args]
        self._rotate_log()
        with open(self.log_path, "ab") as log:
            log.write(f"=== leadpulse localkafka: formatting {self.data_dir} ===\n$ {_redacted(cmd)}\n".encode())
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=120)
        out = res.stdout.decode("utf-8", "replace")
        with open(self.log_path, "ab") as log:
            log.write(out.encode())
        if res.returncode != 0:
            raise LocalKafkaError(f"formatting the KRaft storage in {self.data_dir} failed (exit "
                                  f"{res.returncode}): {_cause_line(out)} (see {self.log_path})",
                                  log_tail="\n".join(out.splitlines()[-20:]))

    def jvm_command(self, java: str) -> list[str]:
        return [java, *JVM_OPTS, *shlex.split(os.environ.get("LEADPULSE_KAFKA_JVM_OPTS", "")),
                f"-Dlog4j2.configurationFile={self.log4j_path}", f"-Dkafka.logs.dir={self.state_dir}",
                "-cp", self._classpath(), "kafka.Kafka", str(self.properties_path)]

    def _rotate_log(self) -> None:
        with contextlib.suppress(OSError):
            if self.log_path.stat().st_size > LOG_ROTATE_BYTES:
                os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))

    def _launch(self, java: str) -> subprocess.Popen:
        cmd = self.jvm_command(java)
        self._rotate_log()
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            log.write(f"=== leadpulse localkafka: starting broker {time.strftime('%Y-%m-%dT%H:%M:%S')} ===\n"
                      f"$ {shlex.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, cwd=self.state_dir, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        _CHILDREN[proc.pid] = proc
        _atomic_write(self.pid_path, f"{proc.pid}\n")
        return proc

    def _wait_ready(self, pid: int, port: int, deadline: float, timeout: float) -> None:
        while True:
            if not _pid_alive(pid):
                child = _CHILDREN.pop(pid, None)
                code = f" with code {child.returncode}" if child is not None else ""
                new_output = _read_from(self.log_path, getattr(self, "_log_offset", 0))
                raise LocalKafkaError(f"the Kafka broker (pid {pid}) exited{code} while starting: "
                                      f"{_cause_line(new_output)} (see {self.log_path})",
                                      log_tail=_tail(self.log_path, 20))
            if self._answers(port):
                return
            if time.monotonic() >= deadline:
                raise LocalKafkaError(f"the Kafka broker on {HOST}:{port} did not answer a metadata request "
                                      f"within {timeout:.0f}s (stopped it); see {self.log_path}",
                                      log_tail=_tail(self.log_path, 20))
            time.sleep(0.2)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path        # the CA certificate clients trust (KAFKA_SSL_CAFILE)
    keystore: Path  # the broker's private key and certificate chain, PEM


def make_tls_files(directory: Path | str, host: str = HOST) -> TlsFiles:
    """A throw-away CA and a broker certificate for ``host`` (IP and DNS SAN), made with openssl:
    enough for a TLS listener in tests and demos, never for anything else."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise LocalKafkaError("openssl not found: install it (apt-get install openssl) to make test certificates")
    san = f"subjectAltName=IP:{host},DNS:localhost" if re.fullmatch(r"[\d.]+", host) else f"subjectAltName=DNS:{host}"
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7", "-subj", "/CN=leadpulse test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-keyout", "ca.key", "-out", "ca.pem"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}", "-keyout", "broker.key", "-out", "broker.csr"],
        ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "7",
         "-extfile", "broker.ext", "-out", "broker.crt"],
    ]
    (d / "broker.ext").write_text(f"{san}\nextendedKeyUsage=serverAuth,clientAuth\n")
    for args in steps:
        res = subprocess.run([openssl, *args], cwd=d, capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise LocalKafkaError(f"openssl {args[0]} failed: {_cause_line(res.stderr)}")
    keystore = d / "broker.pem"  # Kafka's PEM keystore: PKCS#8 key, then the certificate
    keystore.write_text((d / "broker.key").read_text() + (d / "broker.crt").read_text())
    keystore.chmod(0o600)
    return TlsFiles(ca=d / "ca.pem", keystore=keystore)


def _redacted(cmd: Sequence[str]) -> str:
    """The command line for the log, with `--add-scram ...password=...` values masked."""
    return re.sub(r"(password=)[^,\]\s']*", r"\1***", shlex.join(cmd))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def find_java(minimum: int = 17, purpose: str | None = None, search_jvm_dir: bool = False) -> str:
    """Path of a Java >= ``minimum`` ``java`` (PATH first, then $JAVA_HOME/bin, then, with
    ``search_jvm_dir``, the JDKs in /usr/lib/jvm, newest first)."""
    purpose = purpose or f"Kafka {kafka_version()}"
    candidates = []
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    if os.environ.get("JAVA_HOME"):
        jh = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        if jh.is_file() and os.access(jh, os.X_OK):
            candidates.append(str(jh))
    if search_jvm_dir:
        candidates += sorted((str(p) for p in Path("/usr/lib/jvm").glob("*/bin/java") if os.access(p, os.X_OK)),
                             key=lambda p: [int(n) for n in re.findall(r"-(\d+)(?=[-.])", p)[:1]] or [0],
                             reverse=True)
    if not candidates:
        raise LocalKafkaError(f"Java not found (no java on PATH, no JAVA_HOME): install Java {minimum} "
                              f"(apt-get install openjdk-{minimum}-jre-headless) to run {purpose}")
    seen = []
    for java in candidates:
        try:
            out = subprocess.run([java, "-version"], stdin=subprocess.DEVNULL, capture_output=True,
                                 timeout=30).stderr.decode("utf-8", "replace")
        except (OSError, subprocess.TimeoutExpired):
            continue
        m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
        if not m:
            continue
        major = int(m.group(1)) if m.group(1) != "1" else int(m.group(2) or 0)
        if major >= minimum:
            return java
        seen.append(f"{java} is Java {major}")
    raise LocalKafkaError(f"{purpose} needs Java {minimum} or newer ({'; '.join(seen) or 'java did not run'}): "
                          f"install Java {minimum} (apt-get install openjdk-{minimum}-jre-headless) and put it on "
                          f"PATH or set JAVA_HOME")


def run_maven(cmd: Sequence[str], cwd: Path, java: str, log_path: Path, timeout: float = 900) -> int | str:
    """Run Maven (JAVA_HOME from ``java`` unless set), its output into ``log_path``: the exit code, or
    ``"timeout after Ns"``."""
    env = dict(os.environ)
    env.setdefault("JAVA_HOME", str(Path(os.path.realpath(java)).parents[1]))
    try:
        with open(log_path, "w") as log:
            log.write("$ " + shlex.join(cmd) + "\n")
            log.flush()
            return subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=env, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return f"timeout after {timeout:g}s"


def maven_cause(log_path: Path) -> str:
    """The telling line of a failed Maven run's log (its last error, without the help boilerplate)."""
    last = next((ln for ln in reversed(_tail(log_path, 40).splitlines())
                 if ln.strip() and "[ERROR] -> [Help" not in ln and ln.strip() != "[ERROR]"), "")
    return last.strip()[:300]


def print_cli_error(prog: str, exc: LocalKafkaError) -> int:
    """A launcher CLI's failure: one line (and the log tail of a process that died), exit code 2."""
    print(f"{prog}: error: {exc}", file=sys.stderr)
    if exc.log_tail:
        print(exc.log_tail, file=sys.stderr)
    return 2


POM_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by leadpulse streams/localkafka.py: resolves the Kafka broker runtime classpath. -->
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 https://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.leadpulse</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencyManagement>
    <dependencies>
      <!-- kafka pulls slf4j-api 1.7.36; log4j-slf4j2-impl needs the 2.x API -->
      <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version></dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{scala}</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version></dependency>
  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>{plugin}</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
"""

LOG4J2_TEMPLATE = """# Generated by leadpulse streams/localkafka.py on every start.
status = warn
name = leadpulse-localkafka
# Kafka logs from its own shutdown hook; Log4j2's hook would otherwise stop logging first.
shutdownHook = disable

appender.file.type = File
appender.file.name = FILE
appender.file.fileName = @LOGFILE@
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d{ISO8601}] %-5p %m (%c{1})%n

rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE

# The full config dumps ("... values:") are ~1,600 lines per start: the config is in server.properties.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.metadataloader.name = org.apache.kafka.image.loader.MetadataLoader
logger.metadataloader.level = WARN
logger.appinfo.name = org.apache.kafka.common.utils.AppInfoParser
logger.appinfo.level = WARN
"""


# ---------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.localkafka",
                                     description="Run a local single-node KRaft Kafka broker (127.0.0.1 only).")
    parser.add_argument("command", choices=["start", "stop", "status", "wipe"])
    parser.add_argument("--dir", type=Path, default=None,
                        help="state dir (default: $LEADPULSE_KAFKA_DIR or <repo>/.leadpulse/kafka)")
    parser.add_argument("--port", type=int, default=None, help="broker port (default: $LEADPULSE_KAFKA_PORT or free)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="start timeout in seconds")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--advertise-proxied", type=int, default=None, metavar="PORT",
                        help="start: a second listener PROXIED advertised at 127.0.0.1:PORT, where a TCP proxy "
                             "forwards to it (status --json shows its port as proxied_port)")
    parser.add_argument("--scram-user", default=None,
                        help="start: a SASL_PLAINTEXT SCRAM-SHA-512 listener for this user (the credentials are "
                             "created when the state dir is first formatted)")
    parser.add_argument("--scram-password-file", type=Path, default=None,
                        help="start: the file holding that user's password (trailing newline ignored)")
    args = parser.parse_args(argv)
    if bool(args.scram_user) != bool(args.scram_password_file):
        parser.error("--scram-user and --scram-password-file go together")
    try:
        if args.scram_user:
            try:
                password = args.scram_password_file.read_text().rstrip("\r\n")
            except OSError as exc:
                raise LocalKafkaError(f"--scram-password-file {args.scram_password_file}: {exc.strerror}") from None
            kafka = LocalKafka.with_scram(args.scram_user, password, args.dir, args.port,
                                          advertise_proxied=args.advertise_proxied)
        else:
            kafka = LocalKafka(state_dir=args.dir, port=args.port, advertise_proxied=args.advertise_proxied)
        if args.command == "start":
            bootstrap = kafka.start(timeout=args.timeout)
            print(json.dumps(kafka.status()) if args.json else bootstrap)
        elif args.command in ("stop", "wipe"):
            stopped = kafka.stop()
            if args.command == "wipe":
                kafka.wipe()
            if args.json:
                print(json.dumps({"stopped": stopped, "wiped": args.command == "wipe", **kafka.status()}))
            else:
                what = "stopped" if stopped else "not running"
                print(f"{what}{'; data wiped' if args.command == 'wipe' else ''} ({kafka.state_dir})")
        else:
            st = kafka.status()
            if args.json:
                print(json.dumps(st))
            else:
                extra = f" {st['bootstrap']} pid {st['pid']}" if st["running"] else ""
                print(f"{st['state']}{extra} ({st['state_dir']})")
            return 0 if st["running"] else 1
    except LocalKafkaError as exc:
        return print_cli_error("localkafka", exc)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
