"""A worker that cannot make progress is replaced: a batch that fails half-way makes the worker
exit at once, and one stuck mid-commit fails /health/live and exits within seconds; either way the
batch is replayed on restart and counted once. Failpoints (streams.failpoints) make the real code
path fail at the named step, in a real worker on a real broker."""

from __future__ import annotations

import asyncio
import time

import pytest

from scoring import BehaviourEvent, ScoringModel, default_rules
from streams.watchdog import EXIT_FATAL, EXIT_STALLED
from tests.support import Worker, codec, consume, decoder, event, produce, topic_env

pytestmark = pytest.mark.kafka
model = ScoringModel(default_rules())


def now_ms() -> int:
    return int(time.time() * 1000)


def wait_exit(w: Worker, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = w.proc.poll()
        if code is not None:
            return code
        time.sleep(0.1)
    return None


def expected_score(records) -> float:
    state, _ = model.apply_events(None, [BehaviourEvent(**codec.decode("BehaviourEvent", v)) for _, v in records])
    return model.snapshot(state).score


async def scored(w: Worker, cid: str, score: float, timeout: float = 40.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = w.get_json(f"/contacts/{cid}")
        if status == 200 and abs(body["score"] - score) < 1e-6:
            return True
        await asyncio.sleep(0.3)
    return False


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_a_batch_that_fails_half_way_stops_the_worker_and_is_replayed_once(kafka_bootstrap, unique, tmp_path,
                                                                                 guarantee):
    names = topic_env(unique)
    point = "checkpoint.after_outputs" if guarantee == "at_least_once" else "checkpoint.before_commit"
    env = {"LEADPULSE_PROCESSING_GUARANTEE": guarantee}
    w = Worker(kafka_bootstrap, unique, tmp_path, name="f1", extra_env={**env, "LEADPULSE_FAILPOINTS": f"{point}=raise"})
    w.start().wait_ready()
    cid = "fails-once"
    records = [event(cid, "f-1", "demo_request", now_ms() - 1000), event(cid, "f-2", "free_trial_signup", now_ms() - 900)]
    sent_at = time.monotonic()
    await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"], records)
    code = wait_exit(w, 15)
    assert code == EXIT_FATAL, f"exit {code} after {time.monotonic() - sent_at:.1f} s\n{w.log_text()[-3000:]}"
    assert time.monotonic() - sent_at < 10, "the worker must stop within seconds"
    assert "could not be made durable" in w.log_text()
    # The same data directory, no failpoint: the batch is read again and counted once.
    w.extra_env = env
    w.start().wait_ready()
    assert await scored(w, cid, expected_score(records)), w.log_text()[-3000:]
    _, want = model.apply_events(None, [BehaviourEvent(**codec.decode("BehaviourEvent", v)) for _, v in records])
    assert want, "the two events must change the contact's temperature"
    want_ids = {c.change_id for c in want}
    changes = await consume(kafka_bootstrap, names["LEADPULSE_LIFECYCLE_TOPIC"],
                            lambda got: {c["change_id"] for c in got} >= want_ids, decode=decoder("LifecycleChange"))
    assert {c["change_id"] for c in changes} == want_ids  # replayed under the same ids, nothing else
    if guarantee == "exactly_once":
        # The aborted transaction's copy is never visible to a read_committed consumer.
        assert len(changes) == len(want_ids), changes
    w.stop()


async def test_a_worker_stuck_committing_fails_liveness_and_exits(kafka_bootstrap, unique, tmp_path):
    names = topic_env(unique)
    w = Worker(kafka_bootstrap, unique, tmp_path, name="h1",
               extra_env={"LEADPULSE_FAILPOINTS": "checkpoint.before_offsets=hang", "LEADPULSE_STALL_TIMEOUT_S": "2"})
    w.start().wait_ready()
    assert w.get_json("/health/live")[0] == 200
    await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"], [event("stuck", "s-1", "page_view", now_ms())])
    sent_at = time.monotonic()
    failed_at = None
    while time.monotonic() - sent_at < 10 and w.proc.poll() is None:
        try:
            status, body = w.get_json("/health/live", timeout=1.0)
        except OSError:
            break
        if status == 503:
            failed_at = time.monotonic()
            assert "no batch has completed" in body["reason"]
            break
        time.sleep(0.2)
    assert failed_at is not None and failed_at - sent_at < 10, w.log_text()[-3000:]
    code = wait_exit(w, 15)
    assert code == EXIT_STALLED and time.monotonic() - sent_at < 15, w.log_text()[-3000:]
