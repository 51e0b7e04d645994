"""agents.health.readiness: the conditions, in order, with the reason a person reads."""

from __future__ import annotations

from types import SimpleNamespace

from agents.health import readiness


def app(*, recovered=True, rebalancing=False, in_recovery=False, actives=("tp",)):
    completed = SimpleNamespace(is_set=lambda: recovered)
    return SimpleNamespace(
        tables=SimpleNamespace(recovery=SimpleNamespace(completed=completed)),
        rebalancing=rebalancing, in_recovery=in_recovery,
        assignor=SimpleNamespace(assigned_actives=lambda: set(actives)),
    )


def test_ready_only_when_everything_holds():
    assert readiness(app()) == (True, "")
    assert readiness(app(recovered=False)) == (False, "table recovery has not finished")
    assert readiness(app(rebalancing=True)) == (False, "rebalancing")
    assert readiness(app(in_recovery=True)) == (False, "recovering table partitions after a rebalance")
    assert readiness(app(actives=())) == (False, "no partitions assigned")
