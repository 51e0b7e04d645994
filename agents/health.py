"""Health endpoints of a worker, served by the Faust web server (which starts before table recovery,
so both answer from the first seconds of a worker's life).

* ``GET /health/live``  — 200 ``{"status": "live"}`` as long as the event loop answers. Liveness only:
  a worker recovering a big table is alive and must not be restarted.
* ``GET /health/ready`` — 200 ``{"status": "ready", ...}`` once table recovery has finished, the
  worker has active partitions and no rebalance or recovery is in progress; otherwise 503 with
  ``{"status": "not ready", "reason": ...}``.

The same readiness feeds the ``leadpulse_ready`` gauge (evaluated at scrape time).
Importing this module registers the pages: ``import agents.health`` in the worker.
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from streams import metrics
from streams.app import app


def readiness(app: Any = app) -> tuple[bool, str]:
    """(ready?, why not) — the reason is for people (JSON body, logs), not for parsing."""
    tables = app.tables
    if not tables.recovery.completed.is_set():
        return False, "table recovery has not finished"
    if app.rebalancing:
        return False, "rebalancing"
    if getattr(app, "in_recovery", False):
        return False, "recovering table partitions after a rebalance"
    if not app.assignor.assigned_actives():
        return False, "no partitions assigned"
    return True, ""


@app.page("/health/live")
class Live(View):
    async def get(self, request: Request) -> Response:
        return self.json({"status": "live"})


@app.page("/health/ready")
class Ready(View):
    async def get(self, request: Request) -> Response:
        ok, reason = readiness(self.app)
        if ok:
            actives = self.app.assignor.assigned_actives()
            return self.json({"status": "ready", "active_partitions": len(actives)})
        return self.json({"status": "not ready", "reason": reason}, status=503)


metrics.set_ready_check(lambda: readiness(app)[0])
