"""agents.health.readiness: the conditions, in order, with the reason a person reads."""

from __future__ import annotations

from types import SimpleNamespace

from agents.health import readiness


def app(*, recovered=True, rebalancing=False, in_recovery=False):
    completed = SimpleNamespace(is_set=lambda: recovered)
    return SimpleNamespace(tables=SimpleNamespace(recovery=SimpleNamespace(completed=completed)),
                           rebalancing=rebalancing, in_recovery=in_recovery)


def test_ready_only_when_everything_holds():
    owned = {0, 1}
    assert readiness(app(), owned) == (True, "")
    assert readiness(app(recovered=False), owned) == (False, "table recovery has not finished")
    assert readiness(app(rebalancing=True), owned) == (False, "rebalancing")
    assert readiness(app(in_recovery=True), owned) == (False, "recovering table partitions after a rebalance")
    assert readiness(app(), set()) == (False, "no partitions assigned")


def test_a_worker_that_is_not_live_is_not_ready_and_says_why():
    assert readiness(app(), {0}, (False, "fatal: a batch failed")) == (False, "fatal: a batch failed")
