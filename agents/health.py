"""Health endpoints of a worker, served by the Faust web server (which starts before table recovery,
so both answer from the first seconds of a worker's life).

* ``GET /health/live``  — 200 ``{"status": "live"}`` while the worker makes progress; 503 with the
  reason once the watchdog (streams.watchdog) sees a failed batch, a stall with input waiting, a
  table recovery that reads nothing, or a blocked event loop — the worker then exits within
  seconds. A worker recovering a big table that keeps reading is alive and must not be restarted.
* ``GET /health/ready`` — 200 ``{"status": "ready", "active_partitions": N}`` (N: the contact
  partitions this worker owns) once table recovery has finished, the worker owns partitions and no
  rebalance or recovery is in progress; otherwise 503 with ``{"status": "not ready", "reason": ...}``.

The same readiness feeds the ``leadpulse_ready`` gauge (evaluated at scrape time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from faust.web import Request, Response, View

from streams import metrics

if TYPE_CHECKING:
    from streams.bootstrap import Runtime


def readiness(app, owned, live: tuple[bool, str] = (True, "")) -> tuple[bool, str]:
    """(ready?, why not) — the reason is for people (JSON body, logs), not for parsing."""
    if not live[0]:
        return live
    if not app.tables.recovery.completed.is_set():
        return False, "table recovery has not finished"
    if app.rebalancing:
        return False, "rebalancing"
    if getattr(app, "in_recovery", False):
        return False, "recovering table partitions after a rebalance"
    if not owned:
        return False, "no partitions assigned"
    return True, ""


def register(rt: "Runtime") -> None:
    app = rt.app

    @app.page("/health/live")
    class Live(View):
        async def get(self, request: Request) -> Response:
            ok, reason = rt.watchdog.live()
            if ok:
                return self.json({"status": "live"})
            return self.json({"status": "not live", "reason": reason}, status=503)

    @app.page("/health/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            ok, reason = readiness(rt.app, rt.owned, rt.watchdog.live())
            if ok:
                return self.json({"status": "ready", "active_partitions": len(rt.owned)})
            return self.json({"status": "not ready", "reason": reason}, status=503)

    metrics.set_ready_check(lambda: readiness(rt.app, rt.owned, rt.watchdog.live())[0])
