"""Create the worker's topics before its consumer subscribes (a topic that appears after the group
has formed is only noticed at the next metadata refresh, minutes, and its events would wait), and
check that every topic has the partition count the worker routes by."""

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
        # Inputs forwarded to their contact's partition: read within seconds, kept a week for replays.
        s.repartition_topic: {**big, "retention.ms": str(7 * 24 * 3600 * 1000)},
        s.lifecycle_topic: {},
        s.scores_topic: {"cleanup.policy": "compact"},
        s.dlq_topic: big,
        # identity and account inputs (written by the collector)
        s.identity_topic: big,
        s.merges_topic: big,
        s.accounts_input_topic: big,
        # Contacts' shares re-keyed by account (internal), and the accounts' changes.
        s.account_shares_topic: {"retention.ms": str(7 * 24 * 3600 * 1000)},
        s.accounts_topic: {},
    }


class TopicLayoutError(RuntimeError):
    """A topic the worker reads or writes does not have LEADPULSE_PARTITIONS partitions."""


def check_layout(partitions_of: dict[str, int], s: Settings) -> None:
    """Every topic must have `s.partitions` partitions: a contact's inputs, state and outputs live in
    the partition its id hashes to (murmur2 over that count), and one agent reads the inputs of a
    partition together."""
    wrong = {name: n for name, n in partitions_of.items() if n != s.partitions}
    if wrong:
        listed = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
        raise TopicLayoutError(f"every leadpulse topic needs LEADPULSE_PARTITIONS={s.partitions} partitions, but "
                               f"{listed}: set LEADPULSE_PARTITIONS to the input topics' count (on a new "
                               f"LEADPULSE_APP_ID, whose internal topics are created with it), or repartition them")


async def ensure_topics(s: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create the missing ones and check the layout of all; returns the names created. Existing
    topics are left as they are."""
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
        described = await admin.describe_topics(list(topic_specs(s)))
        check_layout({d["topic"]: len(d["partitions"]) for d in described if not d.get("error_code")}, s)
        return created
    finally:
        await admin.close()


def ensure_topics_sync(s: Settings) -> list[str]:
    return asyncio.run(ensure_topics(s))
