"""Behaviour events in, a real worker process, LifecycleChange out — on a real broker."""

import time

import pytest

from tests.support import Worker, codec, consume, decoder, event, produce, topic_env

pytestmark = pytest.mark.kafka
HOUR = 3_600_000


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_a_contact_that_goes_hot_is_published(kafka_bootstrap, unique, tmp_path, guarantee):
    names = topic_env(unique)
    worker = Worker(kafka_bootstrap, unique, tmp_path, extra_env={"LEADPULSE_PROCESSING_GUARANTEE": guarantee}).start()
    try:
        worker.wait_ready()
        now = int(time.time() * 1000)
        journey = [
            ("content_download", 30, {"asset_type": "whitepaper"}),
            ("webinar_signup", 26, {}),
            ("webinar_attended", 24, {}),
            ("pricing_page_view", 6, {"url": "/pricing"}),
            ("pricing_page_view", 5, {"url": "/pricing"}),
            ("demo_request", 4, {}),
        ]
        await produce(kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"], [
            event("c-1", f"e-{i}", etype, now - hours * HOUR, **props)
            for i, (etype, hours, props) in enumerate(journey)
        ] + [event("c-2", "x-1", "page_view", now, url="/blog")])

        def hot(changes):
            return any(c["contact_id"] == "c-1" and c["to_value"] == "hot" for c in changes)

        changes = await consume(kafka_bootstrap, names["LEADPULSE_LIFECYCLE_TOPIC"], hot,
                                timeout=60, decode=decoder("LifecycleChange"))
        assert hot(changes), f"no hot change for c-1 in {changes}\n{worker.log_text()[-3000:]}"
        change = next(c for c in changes if c["to_value"] == "hot")
        assert change["kind"] == "temperature"
        assert change["score"] >= 60
        assert abs(sum(change["explanation"].values()) - change["score"]) < 1e-6
        assert not any(c["contact_id"] == "c-2" and c["to_value"] == "hot" for c in changes)
        if guarantee == "exactly_once":  # the read_committed consumer sees each change once
            ids = [c["change_id"] for c in changes]
            assert len(ids) == len(set(ids))
    finally:
        worker.stop()
