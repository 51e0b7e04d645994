"""Where the collector's records go: Kafka, Confluent-framed Avro (streams.codec), one idempotent
aiokafka producer with acks=all, keyed by contact id.

`publish` returns only when the broker has acknowledged every record of the call (all in-sync
replicas, acks=all), and raises `Unavailable` otherwise, so the HTTP shell answers 200 only for
stored data. `ready` follows the broker: a metadata probe every second, and any failed publish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol, Sequence

from collector.records import ACCOUNTS, DLQ, ERASURES, EVENTS, IDENTITIES, MERGES, PROFILES, Output
from streams.settings import Settings

log = logging.getLogger("leadpulse.collector")

PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 2.0


class Unavailable(Exception):
    """The broker did not acknowledge everything in time (or cannot be reached)."""


class Sink(Protocol):
    ready: bool
    reason: str

    async def publish(self, records: Sequence[tuple[Output, bytes]]) -> float:
        """Returns once every record is acknowledged (the seconds it took); raises Unavailable."""
        ...


def topics_of(s: Settings) -> dict[str, str]:
    """Output kind → topic name, from the one settings object."""
    return {EVENTS: s.events_topic, PROFILES: s.profiles_topic, IDENTITIES: s.identity_topic,
            ACCOUNTS: s.accounts_input_topic, MERGES: s.merges_topic, ERASURES: s.erasures_topic,
            DLQ: s.dlq_topic}


class KafkaSink:
    def __init__(self, settings: Settings, ack_timeout_s: float):
        self.settings = settings
        self.topics = topics_of(settings)
        self.ack_timeout_s = ack_timeout_s
        self.producer = None
        self.ready = False
        self.reason = "not started"
        self._probe: asyncio.Task | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,  # a few ms gathers concurrent requests into one produce request
            max_request_size=self.settings.max_message_bytes,
            request_timeout_ms=int(self.ack_timeout_s * 1000),
            **self.settings.kafka_client_kwargs(),
        )
        await self.producer.start()
        self.ready, self.reason = True, ""
        self._probe = asyncio.create_task(self._probe_loop(), name="collector-broker-probe")

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        if self.producer is not None:
            await self.producer.stop()
        self.ready, self.reason = False, "stopped"

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            try:
                await asyncio.wait_for(self.producer.client.fetch_all_metadata(), PROBE_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - any failure means: not ready
                if self.ready:
                    log.warning("collector: broker unreachable (%s): answering 503", type(exc).__name__)
                self.ready, self.reason = False, f"broker unreachable ({type(exc).__name__})"
            else:
                if not self.ready:
                    log.info("collector: broker reachable again")
                self.ready, self.reason = True, ""

    async def publish(self, records: Sequence[tuple[Output, bytes]]) -> float:
        """Send every record, wait for every acknowledgement; returns the seconds it took."""
        if not records:
            return 0.0
        started = time.perf_counter()

        async def send_all():
            futures = [await self.producer.send(self.topics[out.kind], value=value, key=out.key.encode())
                       for out, value in records]
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(send_all(), self.ack_timeout_s)
        except Exception as exc:  # noqa: BLE001 - timeout, KafkaError, connection: all mean "not stored"
            self.ready, self.reason = False, f"publish failed ({type(exc).__name__})"
            raise Unavailable(f"the broker did not acknowledge the records ({type(exc).__name__})") from exc
        return time.perf_counter() - started
