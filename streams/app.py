"""The one wiring place: the Faust app, its topics and its table, built from `Settings`.

Topics carry raw bytes; decoding happens in the agents' batch step so a bad message becomes a dead
letter instead of a crash inside Faust's deserialiser.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faust

from scoring.model import ScoringModel
from scoring.rules import default_rules, load_rules
from streams import bulk, faustfixes, logs
from streams.codec import AvroCodec, codec_from_env
from streams.settings import Settings


def broker_urls(bootstrap_servers: str) -> str:
    """`host1:9092,host2:9092` → Faust's `kafka://host1:9092;kafka://host2:9092`."""
    hosts = [h.strip() for h in bootstrap_servers.split(",") if h.strip()]
    return ";".join(h if "://" in h else f"kafka://{h}" for h in hosts)


def create_app(settings: Settings) -> faust.App:
    faustfixes.apply()
    bulk.apply()
    if settings.processing_guarantee == "exactly_once":
        logging.getLogger("leadpulse.app").warning(
            "exactly_once is not safe under worker crashes with faust-streaming 0.15.3 (the fault suite "
            "loses events); at_least_once is the default and is (see README, Faults)")
    extra: dict = {}
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
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_max_request_size=settings.max_message_bytes,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_host=settings.web_host,
        # Our table values are opaque bytes: the stock /table pages would show nothing useful.
        web_tables_enabled=False,
        **logs.faust_settings(settings.log_level),
        **extra,
    )


@dataclass
class Topics:
    """Every topic the worker reads or writes; all co-partitioned and keyed by contact_id."""

    events: faust.TopicT
    profiles: faust.TopicT
    qualifications: faust.TopicT
    erasures: faust.TopicT
    ticks: faust.TopicT
    inputs: faust.TopicT  # all of the above, read by one agent so a contact's inputs stay in order
    lifecycle: faust.TopicT
    scores: faust.TopicT
    dlq: faust.TopicT

    @classmethod
    def declare(cls, app: faust.App, s: Settings) -> "Topics":
        def topic(*names: str, **kw) -> faust.TopicT:
            return app.topic(
                *names, key_type=bytes, value_type=bytes, partitions=s.partitions,
                key_serializer="raw", value_serializer="raw", **kw,
            )

        inputs = (s.events_topic, s.profiles_topic, s.qualifications_topic, s.erasures_topic, s.ticks_topic)
        return cls(
            events=topic(s.events_topic),
            profiles=topic(s.profiles_topic),
            qualifications=topic(s.qualifications_topic),
            erasures=topic(s.erasures_topic),
            ticks=topic(s.ticks_topic),
            inputs=topic(*inputs),
            lifecycle=topic(s.lifecycle_topic),
            scores=topic(s.scores_topic, compacting=True),
            dlq=topic(s.dlq_topic),
        )


settings = Settings.from_env()
app = create_app(settings)
topics = Topics.declare(app, settings)
# contact_id (bytes) → encoded ContactState (bytes); changelog-backed, RocksDB by default.
contacts = app.Table(
    "contacts", key_type=bytes, value_type=bytes, partitions=settings.partitions,
)  # serialisers: the app's defaults, raw
rules = load_rules(settings.rules_path) if settings.rules_path else default_rules()
model = ScoringModel(rules)
codec: AvroCodec = codec_from_env(settings.schema_registry_url)
