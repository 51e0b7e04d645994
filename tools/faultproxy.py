"""A TCP fault proxy on loopback: toxiproxy, driven through its HTTP API.

Why toxiproxy: it is a plain TCP proxy whose faults ("toxics": latency with jitter, connection
resets, silence, slicing) are switched on and off at run time through an HTTP API, which is what a
fault schedule needs; it is one static Go binary. It is built once from the Go module proxy with
the machine's Go (``go install github.com/Shopify/toxiproxy/v2/cmd/server@vX``) into
``~/.cache/leadpulse/toxiproxy-<version>/server`` (``LEADPULSE_KAFKA_CACHE`` moves the cache root,
as for the broker jars) and reused afterwards; the binary is never part of the repository.

    with FaultProxy.start(workdir) as toxi:
        link = toxi.create("workers", listen_port=port, upstream="127.0.0.1:9093")
        link.latency(300, jitter=100)    # until link.clear()
        link.reset_peers(0.5)            # every connection that moves a byte gets a TCP RST
        link.silence(); ...; link.restore()  # a blackout: no byte either way, then connections cut

Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from streams.localkafka import HOST, _free_ports, cache_root

__all__ = ["FaultProxy", "FaultProxyError", "Link", "TOXIPROXY_VERSION", "toxiproxy_binary"]

#: The toxiproxy release built; the newest the Go module proxy served when this was written.
TOXIPROXY_VERSION = "2.5.0"
MODULE = "github.com/Shopify/toxiproxy/v2"

_started: list[subprocess.Popen] = []


@atexit.register
def _kill_orphans() -> None:
    """A proxy never outlives the run that started it, even one that crashed before its cleanup."""
    for proc in _started:
        if proc.poll() is None:
            proc.kill()


class FaultProxyError(RuntimeError):
    """Building, starting or driving toxiproxy failed; ``str(err)`` is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


def toxiproxy_binary(version: str = TOXIPROXY_VERSION) -> Path:
    """The cached toxiproxy server binary, built with ``go install`` on first use (a lock keeps two
    runs from building it at once)."""
    cache = cache_root() / f"toxiproxy-{version}"
    binary = cache / "server"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    go = shutil.which("go")
    if go is None:
        raise FaultProxyError(f"Go not found (no go on PATH): install Go (apt-get install golang) so toxiproxy "
                              f"v{version} can be built into {cache}, or put a toxiproxy server binary there")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if binary.is_file():
            return binary
        log = cache / "go-install.log"
        tmp = cache / f"bin.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [go, "install", f"{MODULE}/cmd/server@v{version}"]
        env = {**os.environ, "GOBIN": str(tmp), "CGO_ENABLED": "0"}
        try:
            with open(log, "w") as out:
                out.write("$ GOBIN=" + str(tmp) + " " + " ".join(cmd) + "\n")
                out.flush()
                rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=cache, timeout=900).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout after 900 s"
        if rc != 0 or not (tmp / "server").is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines()[1:] if ln.strip()]
            cause = next((ln for ln in reversed(lines) if not ln.startswith("go: downloading")), "no output")
            raise FaultProxyError(f"building toxiproxy v{version} with `go install` failed (exit {rc}): "
                                  f"{cause[:300]} (full log: {log})")
        os.replace(tmp / "server", binary)
        shutil.rmtree(tmp, ignore_errors=True)
    return binary


@dataclass
class Link:
    """One proxy (listen → upstream) of a toxiproxy server, and the faults on it."""

    server: "FaultProxy"
    name: str
    listen_port: int
    upstream: str

    @property
    def address(self) -> str:
        return f"{HOST}:{self.listen_port}"

    def toxic(self, kind: str, stream: str = "downstream", toxicity: float = 1.0, name: str | None = None,
              **attributes: float) -> str:
        """Add a toxic (see toxiproxy's README for the kinds); returns its name."""
        name = name or f"{kind}_{stream}"
        self.server.call("POST", f"/proxies/{self.name}/toxics", {
            "name": name, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes})
        return name

    def remove(self, toxic: str) -> None:
        self.server.call("DELETE", f"/proxies/{self.name}/toxics/{toxic}")

    def toxics(self) -> list[dict]:
        return self.server.call("GET", f"/proxies/{self.name}/toxics")

    def remove_kind(self, kind: str) -> None:
        """Remove every toxic of one type (both directions)."""
        for t in self.toxics():
            if t["type"] == kind:
                self.remove(t["name"])

    def set_upstream(self, upstream: str) -> None:
        """Point the proxy elsewhere (drops its connections)."""
        self.server.call("POST", f"/proxies/{self.name}", {"upstream": upstream})
        self.upstream = upstream

    def clear(self) -> None:
        """Remove every toxic of this proxy."""
        for t in self.toxics():
            self.remove(t["name"])

    def set_enabled(self, enabled: bool) -> None:
        """Disabled: the listener is closed and every connection through it dropped."""
        self.server.call("POST", f"/proxies/{self.name}", {"enabled": enabled})

    # the faults chaos uses

    def latency(self, ms: int, jitter: int = 0) -> None:
        """Every chunk either way is held ``ms`` ± ``jitter`` ms (in order: TCP never reorders)."""
        for stream in ("upstream", "downstream"):
            self.toxic("latency", stream, latency=int(ms), jitter=int(jitter))

    def slicer(self, average_size: int = 512, variation: int = 256, delay_us: int = 50) -> None:
        """Replies cut into small writes: every client read path sees partial frames."""
        self.toxic("slicer", "downstream", average_size=average_size, size_variation=variation, delay=delay_us)

    def reset_peers(self, for_s: float = 0.5) -> None:
        """For ``for_s`` seconds every connection that sends a byte is closed with a TCP RST
        (clients reconnect, and their next attempts inside the window are reset too)."""
        name = self.toxic("reset_peer", "upstream", name="reset", timeout=0)
        try:
            time.sleep(for_s)
        finally:
            self.remove(name)

    def silence(self) -> None:
        """Start a blackout: from now on no byte goes through either way, on open connections and
        on new ones (which are accepted and then hear nothing), as if a cable were pulled."""
        for stream in ("upstream", "downstream"):
            self.toxic("timeout", stream, name=f"blackout_{stream}", timeout=0)

    def restore(self) -> None:
        """End a blackout: cut every connection (toxiproxy dropped the bytes sent during the
        silence, so no stream that lived through it could be trusted; clients' timeouts would cut
        them too) and let bytes through again."""
        self.set_enabled(False)
        for stream in ("upstream", "downstream"):
            with contextlib.suppress(FaultProxyError):
                self.remove(f"blackout_{stream}")
        self.set_enabled(True)


class FaultProxy:
    """A toxiproxy server process on 127.0.0.1 (its API on a free port), log in ``workdir``."""

    def __init__(self, proc: subprocess.Popen, api_port: int, log_path: Path):
        self.proc, self.api_port, self.log_path = proc, api_port, log_path
        self.links: dict[str, Link] = {}

    @classmethod
    def start(cls, workdir: Path, seed: int = 1, timeout: float = 15.0) -> "FaultProxy":
        """Start a server; ``seed`` fixes its randomness (jitter, toxicity)."""
        binary = toxiproxy_binary()
        workdir.mkdir(parents=True, exist_ok=True)
        (api_port,) = _free_ports(1)
        log_path = workdir / "toxiproxy.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([str(binary), "-host", HOST, "-port", str(api_port), "-seed", str(seed)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        _started.append(proc)
        server = cls(proc, api_port, log_path)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise FaultProxyError(f"toxiproxy exited with code {proc.returncode} at start: {tail[0][:300]}")
            try:
                server.call("GET", "/version")
                return server
            except FaultProxyError:
                if time.monotonic() > deadline:
                    server.stop()
                    raise FaultProxyError(f"toxiproxy did not answer on {HOST}:{api_port} within {timeout:.0f} s "
                                          f"(see {log_path})") from None
                time.sleep(0.1)

    def call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{HOST}:{self.api_port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise FaultProxyError(f"toxiproxy {method} {path}: HTTP {exc.code} "
                                  f"{exc.read().decode(errors='replace')[:200]}") from None
        except (OSError, urllib.error.URLError) as exc:
            raise FaultProxyError(f"toxiproxy {method} {path}: {exc}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def create(self, name: str, upstream: str, listen_port: int | None = None) -> Link:
        """A proxy from 127.0.0.1:``listen_port`` (a free one if None) to ``upstream``."""
        port = listen_port if listen_port is not None else _free_ports(1)[0]
        got = self.call("POST", "/proxies", {"name": name, "listen": f"{HOST}:{port}", "upstream": upstream,
                                             "enabled": True})
        link = Link(self, name, int(got["listen"].rsplit(":", 1)[1]), upstream)
        self.links[name] = link
        return link

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        self.call("POST", "/reset")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
