"""A broker outage: the collector answers 503 (never 200) while the broker is down, within its
acknowledgement timeout, and 200 again once it is back; every message it answered 200 for is on
the topic. A broker of its own (stopped and restarted here), so the session's keeps running."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from confluent_kafka import Consumer
from segment.analytics.client import Client
from segment.analytics.request import APIError

from tests.support import CollectorProcess, codec, topic_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

WRITE_KEY = "wk-outage-" + uuid.uuid4().hex
ACK_TIMEOUT_S = 4.0


@pytest.fixture
def broker(tmp_path):
    from streams.localkafka import LocalKafka, LocalKafkaError

    kafka = LocalKafka(state_dir=tmp_path / "kafka")
    try:
        kafka.start()
    except LocalKafkaError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no broker for the outage test: {exc}", pytrace=False)
        pytest.skip(f"no broker for the outage test: {exc}")
    try:
        yield kafka
    finally:
        kafka.stop()


def message_ids_on(bootstrap: str, topic: str, expected: set[str], timeout: float = 60.0) -> set[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t-" + uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not expected <= seen:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                seen.add(codec.decode("BehaviourEvent", msg.value())["event_id"].split(":", 1)[1])
    finally:
        consumer.close()
    return seen


def test_a_broker_outage_is_503_never_200_then_200_again(broker, tmp_path):
    bootstrap = broker.bootstrap
    suffix = uuid.uuid4().hex[:8]
    collector = CollectorProcess(bootstrap, suffix, tmp_path, write_keys={"website": WRITE_KEY},
                                 extra_env={"LEADPULSE_COLLECTOR_ACK_TIMEOUT_S": str(ACK_TIMEOUT_S)}).start()
    client = Client(WRITE_KEY, host=collector.url, sync_mode=True, timeout=30)
    stored: set[str] = set()

    def track(n: int) -> tuple[int, str]:
        try:
            ok, msg = client.track(user_id=f"lead-{n % 5}", event="Demo Requested", properties={"n": n})
        except APIError as exc:
            return exc.status, ""
        assert ok
        stored.add(msg["messageId"])
        return 200, msg["messageId"]

    try:
        collector.wait_ready(60)
        assert all(track(n)[0] == 200 for n in range(5))
        broker.stop()
        statuses = []
        for n in range(5, 10):
            started = time.monotonic()
            status, _ = track(n)
            took = time.monotonic() - started
            statuses.append(status)
            assert status == 503, f"answered {status} with the broker down\n{collector.log_text()[-3000:]}"
            assert took < ACK_TIMEOUT_S + 3.0, f"503 after {took:.1f} s"
        assert collector.get_json("/health/ready")[0] == 503
        broker.start()
        deadline, status, n = time.monotonic() + 60, 503, 10
        while status != 200 and time.monotonic() < deadline:
            status, _ = track(n)
            n += 1
            time.sleep(0.5 if status != 200 else 0)
        assert status == 200, f"still {status} a minute after the restart\n{collector.log_text()[-3000:]}"
        assert collector.get_json("/health/ready")[0] == 200
        assert all(track(n)[0] == 200 for n in range(1000, 1005))
        # Never 200 for data not stored: every message answered 200 is on the topic.
        on_topic = message_ids_on(bootstrap, topic_env(suffix)["LEADPULSE_EVENTS_TOPIC"], stored)
        assert stored <= on_topic, f"answered 200 but not stored: {stored - on_topic}"
    finally:
        collector.stop()
