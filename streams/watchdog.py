"""Is the worker making progress? If not, it fails its liveness and exits, so it is replaced.

Why: a worker that cannot make progress must not look healthy. Faust can leave a worker up with
nothing moving — an agent crashed and its supervisor stuck stopping, table recovery waiting for a
record that never comes, a commit waiting on a broker that never answers — while its health page
says 200 and its partitions' contacts stop scoring. Here a watchdog thread (a thread, so a blocked
event loop cannot silence it) checks once a second:

* fatal: a batch failed half-way (`fatal()`): exit at once; its inputs are read again elsewhere;
* batches: work is waiting (fetches queued or batches in flight) and no batch completed for
  `stall_after` seconds;
* recovery: the worker has been rebalancing or restoring its partitions for `stall_after` seconds
  without reading a changelog record (a recovery task that died leaves it so, healthy-looking);
* the event loop: its heartbeat is older than `stall_after` seconds.

A stall fails `/health/live` (503, with the reason) and, `exit_after` seconds later if it has not
cleared, exits the process with `EXIT_STALLED`. Nothing here decides what is durable: the
checkpoint's order makes any exit safe (inputs are replayed against the states as committed).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("leadpulse.watchdog")

EXIT_FATAL = 70  # EX_SOFTWARE: a batch failed; replayed on restart
EXIT_STALLED = 75  # EX_TEMPFAIL: no progress; restart it


@dataclass
class Signals:
    """What the watchdog reads, each a cheap call into the running worker."""

    work_waiting: Callable[[], bool]  # fetches queued, or batches taken and not yet durable
    last_progress: Callable[[], float]  # monotonic time a batch last completed (or work began)
    recovering: Callable[[], bool]  # rebalancing, or the assigned partitions' stores not up to date yet
    recovery_progress: Callable[[], int]  # grows with every changelog record read while recovering
    heartbeat: Callable[[], float]  # monotonic time the event loop last ran its heartbeat


def stall_reason(s: Signals, now: float, stall_after: float, recovery_seen: tuple[int, float]) -> tuple[str, tuple[int, float]]:
    """('' if live, else why), and the recovery progress marker to pass next time. Pure."""
    beat = s.heartbeat()
    if now - beat > stall_after:
        return f"the event loop has not run for {now - beat:.0f} s", recovery_seen
    if s.recovering():
        progress = s.recovery_progress()
        last, since = recovery_seen
        if progress != last:
            recovery_seen = (progress, now)
        elif now - since > stall_after:
            return (f"rebalancing or restoring the assigned partitions for {now - since:.0f} s without reading a "
                    f"changelog record"), recovery_seen
    else:
        recovery_seen = (-1, now)
    if s.work_waiting() and now - s.last_progress() > stall_after:
        return f"no batch has completed for {now - s.last_progress():.0f} s with input waiting", recovery_seen
    return "", recovery_seen


class Watchdog:
    """The thread; `live()` is what /health/live answers."""

    def __init__(self, signals: Signals, stall_after: float, exit_after: float = 5.0,
                 exit: Callable[[int], None] = os._exit, clock: Callable[[], float] = time.monotonic):
        self.signals = signals
        self.stall_after = stall_after
        self.exit_after = exit_after
        self._exit = exit
        self._clock = clock
        self.reason = ""
        self._since: float | None = None
        self._recovery = (-1, clock())
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def live(self) -> tuple[bool, str]:
        return (not self.reason), self.reason

    def check(self) -> None:
        """One look (the thread calls it every second)."""
        if self.reason.startswith("fatal"):
            return
        now = self._clock()
        reason, self._recovery = stall_reason(self.signals, now, self.stall_after, self._recovery)
        if not reason:
            if self.reason:
                log.warning("the worker is making progress again (was: %s)", self.reason)
            self.reason, self._since = "", None
            return
        if not self.reason:
            log.error("the worker is not making progress: %s; failing /health/live, exiting in %.0f s unless it "
                      "recovers", reason, self.exit_after)
            self._since = now
        self.reason = reason
        if now - (self._since or now) >= self.exit_after:
            log.error("exiting (%d): %s", EXIT_STALLED, reason)
            _flush_logs()
            self._exit(EXIT_STALLED)

    def fatal(self, reason: str) -> None:
        """A batch failed half-way: fail liveness and exit almost at once (logs flushed first)."""
        self.reason = f"fatal: {reason}"
        _flush_logs()
        timer = threading.Timer(0.5, self._exit, (EXIT_FATAL,))
        timer.daemon = True
        timer.start()

    def start(self) -> None:
        if self.stall_after <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="leadpulse-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(1.0):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watchdog itself must never die
                log.exception("watchdog check failed")


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers + logging.getLogger("leadpulse").handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001
            pass
