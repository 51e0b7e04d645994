"""Create the worker's topics before its consumer subscribes: a topic that appears after the group
has formed is only noticed at the next metadata refresh (minutes), and its events would wait."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.settings import Settings


def topic_specs(s: Settings) -> dict[str, dict[str, str]]:
    """Every topic leadpulse reads or writes, with its configuration; all co-partitioned."""
    big = {"max.message.bytes": str(s.max_message_bytes)}  # an input that large is dead-lettered whole
    return {
        s.events_topic: big,
        s.profiles_topic: big,
        s.qualifications_topic: big,
        s.erasures_topic: big,
        s.ticks_topic: {"retention.ms": str(24 * 3600 * 1000)},
        s.lifecycle_topic: {},
        s.scores_topic: {"cleanup.policy": "compact"},
        s.dlq_topic: big,
        # accounts and identity inputs (written by the collector; read by the worker in issue 13)
        s.identity_topic: {},
        s.accounts_input_topic: {},
        s.merges_topic: {},
    }


async def ensure_topics(s: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create the missing ones; returns the names created. Existing topics are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap_servers, request_timeout_ms=int(timeout_s * 1000),
                                **s.kafka_client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=s.partitions, replication_factor=s.replication_factor, topic_configs=cfg)
            for name, cfg in topic_specs(s).items() if name not in existing
        ]
        created = []
        for topic in wanted:  # one by one: a concurrent creator must not fail the others
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()


def ensure_topics_sync(s: Settings) -> list[str]:
    return asyncio.run(ensure_topics(s))
