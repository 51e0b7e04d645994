"""The Faust app, its topics and its table, built from `Settings` (called by `streams.bootstrap`).

Topics carry raw bytes; decoding happens in the agents' batch step so a bad message becomes a dead
letter instead of a crash inside Faust's deserialiser. Faust always runs at_least_once here: under
exactly_once the checkpoint runs the transactions itself (see `streams.checkpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams import logs, webauth
from streams.settings import Settings


def broker_urls(bootstrap_servers: str) -> str:
    """`host1:9092,host2:9092` → Faust's `kafka://host1:9092;kafka://host2:9092`."""
    hosts = [h.strip() for h in bootstrap_servers.split(",") if h.strip()]
    return ";".join(h if "://" in h else f"kafka://{h}" for h in hosts)


def create_app(settings: Settings) -> faust.App:
    extra: dict = {}
    if settings.web_tls_cert:
        extra.update(web_ssl_context=webauth.server_ssl_context(settings.web_tls_cert, settings.web_tls_key),
                     canonical_url=f"https://{settings.web_host}:{settings.web_port}")
    if settings.fast_rebalance:
        # A worker in a test or a demo must be ready in seconds, not after a 10 s+ group dance.
        extra.update(
            broker_session_timeout=6.0,
            broker_heartbeat_interval=0.5,
            broker_rebalance_timeout=10.0,
            stream_recovery_delay=0.0,
        )
    return faust.App(
        settings.app_id,
        broker=broker_urls(settings.bootstrap_servers),
        broker_credentials=settings.faust_credentials(),
        store=settings.store,
        datadir=str(settings.data_dir),
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        # Faust would refuse a store "ahead" of the changelog's last stable offset. Under exactly_once
        # the store is written only after a transaction commits, but the broker writes the commit
        # markers just after acknowledging the commit: until they land the store is legitimately
        # ahead, and after a broker restart that lasts long enough for a recovery to trip on it.
        recovery_consistency_check=False,
        producer_max_request_size=settings.max_message_bytes,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_host=settings.web_host,
        # Our table values are opaque bytes: the stock /table pages would show nothing useful.
        web_tables_enabled=False,
        # Bearer tokens with roles on every page but health and metrics (streams.webauth): no
        # contact's data without a token.
        web_application_options={"middlewares": [webauth.middleware_from_settings(settings)]},
        autodiscover=False,
        **logs.faust_settings(settings.log_level),
        **extra,
    )


@dataclass
class Topics:
    """Every topic the worker reads or writes; all co-partitioned (LEADPULSE_PARTITIONS)."""

    inputs: faust.TopicT  # every input, read by one agent so a contact's inputs stay in order
    input_names: tuple[str, ...]

    @classmethod
    def declare(cls, app: faust.App, s: Settings) -> "Topics":
        names = (s.events_topic, s.profiles_topic, s.qualifications_topic, s.erasures_topic,
                 s.identity_topic, s.merges_topic, s.accounts_input_topic, s.account_shares_topic,
                 s.repartition_topic, s.ticks_topic)
        inputs = app.topic(*names, key_type=bytes, value_type=bytes, partitions=s.partitions,
                           key_serializer="raw", value_serializer="raw")
        return cls(inputs=inputs, input_names=names)


def contacts_table(app: faust.App, s: Settings):
    """contact_id (bytes) → encoded ContactState (bytes); changelog-backed, RocksDB by default."""
    return app.Table("contacts", key_type=bytes, value_type=bytes, partitions=s.partitions)
