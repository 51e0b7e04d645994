"""What every `leadpulse` subcommand shares: the error type, exit codes, consoles, progress bars,
time parsing and a quick "is the broker there at all?" check.

Exit codes (the CLI's contract, see docs/cli.md):
    0  ok
    1  the thing checked failed (an invalid rules file, a stopped broker, an unknown contact)
    2  usage error, bad input (missing or malformed file), unreachable broker or worker
"""

from __future__ import annotations

import os
import socket
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

OK, FAILED, BAD_INPUT = 0, 1, 2
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


class CliError(Exception):
    """An error the user can act on: printed as one line `leadpulse: error: <message>`."""

    def __init__(self, message: str, code: int = BAD_INPUT):
        super().__init__(" ".join(str(message).split()))
        self.code = code


# -- consoles ------------------------------------------------------------------------------------

def console(stderr: bool = False):
    """A rich console; plain text (no colours, no live widgets) when not writing to a terminal."""
    from rich.console import Console

    c = Console(stderr=stderr, highlight=False)
    if not c.is_terminal and not os.environ.get("COLUMNS"):
        c = Console(stderr=stderr, highlight=False, width=120)  # piped: no reason to wrap at 80
    return c


def table(*columns: str, title: str | None = None, right: tuple[str, ...] = (), nowrap: tuple[str, ...] = ()):
    """A plain rich table (simple rules, no frame) with the given column headers; `nowrap` columns
    (names, numbers) are never cut, the others wrap on a narrow terminal."""
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="right" if c in right else "left", no_wrap=c in nowrap or c in right)
    return t


@contextmanager
def progress(description: str, total: float | None, *, enabled: bool = True) -> Iterator:
    """A rich progress bar on stderr, shown only on a terminal. Yields `advance(n)`."""
    err = console(stderr=True)
    if not enabled or not err.is_terminal:
        yield lambda n=1: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: building millions of small, acyclic objects (events,
    dicts) otherwise triggers full collections that rescan them all, again and again."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# -- time ----------------------------------------------------------------------------------------

def parse_instant(text: str, what: str) -> int:
    """ISO 8601 (`2024-11-05`, `2024-11-05T10:30`, `...Z`, `...+01:00`; naive = UTC) or epoch
    milliseconds → epoch milliseconds."""
    raw = text.strip()
    if raw.lstrip("-").isdigit():
        return int(raw)
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise CliError(f"{what} {text!r}: expected an ISO 8601 date/time (e.g. 2024-11-05T10:00Z) "
                       f"or epoch milliseconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def iso(ms: int | float | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def now_ms() -> int:
    return int(time.time() * 1000)


def duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= DAY_MS:
        return f"{ms / DAY_MS:.1f} d"
    if ms >= HOUR_MS:
        return f"{ms / HOUR_MS:.1f} h"
    return f"{ms / 60_000:.0f} min"


# -- inputs --------------------------------------------------------------------------------------

def readable_file(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CliError(f"{what} {path}: no such file")
    if p.is_dir():
        raise CliError(f"{what} {path}: is a directory")
    if not os.access(p, os.R_OK):
        raise CliError(f"{what} {path}: permission denied")
    return p


def writable_path(path: str | Path, what: str) -> Path:
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise CliError(f"{what} {path}: directory {parent} does not exist")
    if p.is_dir():
        raise CliError(f"{what} {path}: is a directory")
    return p


def load_rules_arg(spec: str | None, what: str = "rules file"):
    """`default` (or None: $LEADPULSE_RULES, else the packaged rules) or a TOML path → Rules.
    A rules file with an error is bad input here (exit 2); `rules check` reports it as exit 1."""
    from scoring import RulesError, default_rules, load_rules

    if spec is None:
        spec = os.environ.get("LEADPULSE_RULES") or "default"
    if spec == "default" and not Path(spec).exists():
        return default_rules()
    readable_file(spec, what)
    try:
        return load_rules(spec)
    except RulesError as exc:
        raise CliError(f"{what} {spec}: {exc.key_path}: {exc.reason}") from None


def bootstrap_arg(value: str | None) -> str:
    if value:
        return value
    from streams.settings import Settings, SettingsError

    try:
        return Settings.from_env().bootstrap_servers
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def settings():
    from streams.settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def check_broker(bootstrap: str, timeout: float = 3.0) -> None:
    """Fail fast with one line when no bootstrap server accepts a TCP connection (aiokafka would
    otherwise retry for a long while and end in a stack of errors)."""
    hosts = [h.strip() for h in bootstrap.split(",") if h.strip()]
    if not hosts:
        raise CliError("no Kafka bootstrap server given (--bootstrap or KAFKA_BOOTSTRAP_SERVERS)")
    reasons = []
    for hostport in hosts:
        hp = hostport.split("://", 1)[-1]
        host, _, port = hp.rpartition(":")
        if not host or not port.isdigit():
            raise CliError(f"Kafka bootstrap server {hostport!r}: expected HOST:PORT")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return
        except OSError as exc:
            reasons.append(exc.strerror or type(exc).__name__)
    raise CliError(f"cannot reach Kafka at {bootstrap}: {'; '.join(sorted(set(reasons)))} "
                   f"(start one with `leadpulse kafka start`)")


def check_kafka(bootstrap: str) -> None:
    """`check_broker`, then one connection the way the tool's clients will make it (TLS, SASL):
    wrong or missing credentials are one line here rather than aiokafka's "Unable to bootstrap"."""
    import asyncio
    import dataclasses

    from streams.preflight import PreflightError, check_kafka as preflight_kafka

    check_broker(bootstrap)
    try:
        asyncio.run(preflight_kafka(dataclasses.replace(settings(), bootstrap_servers=bootstrap)))
    except PreflightError as exc:
        raise CliError(str(exc)) from None


def print_json(obj) -> None:
    import json

    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
