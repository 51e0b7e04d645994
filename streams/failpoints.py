"""Named fault-injection points, off unless `LEADPULSE_FAILPOINTS` names them (tests and drills;
`streams.bootstrap` configures them from the settings).

Why: the promises that matter most — a batch that fails half-way is replayed, a worker that cannot
make progress is replaced — are about moments a test cannot reach from outside (between a batch's
outputs and its offsets, inside a commit). A failpoint makes the real code path fail there, in a
real worker on a real broker, as FoundationDB's and TiKV's do. Off, a point costs one dict look-up.

`LEADPULSE_FAILPOINTS="checkpoint.after_outputs=raise,checkpoint.commit=hang"`; an action may take
a count: `raise@3` fires on the third time the point is reached (and every time after it).
"""

from __future__ import annotations

import asyncio


class FailpointError(RuntimeError):
    """Raised by a failpoint set to `raise`."""


ACTIONS = ("raise", "hang")


def parse(spec: str) -> dict[str, tuple[str, int]]:
    points: dict[str, tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, action = item.partition("=")
        action, _, nth = action.partition("@")
        if not sep or not name.strip() or action not in ACTIONS or (nth and not nth.isdigit()):
            raise ValueError(f"LEADPULSE_FAILPOINTS: {item!r}: expected NAME=raise|hang[@N]")
        points[name.strip()] = (action, int(nth or 1))
    return points


_points: dict[str, tuple[str, int]] = {}
_hits: dict[str, int] = {}


def configure(spec: str) -> None:
    """Replace the active failpoints (the worker at start, tests in-process)."""
    global _points
    _points = parse(spec)
    _hits.clear()


async def hit(name: str) -> None:
    """Do what the failpoint `name` is set to, if anything."""
    if not _points:
        return
    point = _points.get(name)
    if point is None:
        return
    action, nth = point
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] < nth:
        return
    if action == "raise":
        raise FailpointError(f"failpoint {name} (LEADPULSE_FAILPOINTS)")
    await asyncio.Event().wait()  # hang: never set
