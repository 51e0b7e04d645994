"""One settings object, read from the environment (12-factor), with defaults that run on a laptop."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


class SettingsError(ValueError):
    """A setting from the environment has a value that cannot be used; names the variable."""


def _int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number") from None


def _float(name: str, default: float) -> float:
    raw = _env(name, str(default))
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a number") from None


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = _env(name, default)
    if raw not in allowed:
        raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(allowed)}")
    return raw


@dataclass(frozen=True)
class Settings:
    app_id: str
    bootstrap_servers: str
    schema_registry_url: str | None
    # topics
    events_topic: str
    profiles_topic: str
    qualifications_topic: str
    erasures_topic: str
    lifecycle_topic: str
    ticks_topic: str
    scores_topic: str
    dlq_topic: str
    partitions: int
    replication_factor: int
    # state
    store: str
    data_dir: Path
    standby_replicas: int
    rules_path: str | None
    # processing
    processing_guarantee: str
    batch_max: int
    batch_within_s: float
    cooling_interval_s: float
    # web (score lookup, metrics, health)
    web_bind: str
    web_host: str
    web_port: int
    # faster group joins for tests and demos
    fast_rebalance: bool
    log_level: str

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            app_id=_env("LEADPULSE_APP_ID", "leadpulse"),
            bootstrap_servers=_env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            schema_registry_url=os.environ.get("SCHEMA_REGISTRY_URL") or None,
            events_topic=_env("LEADPULSE_EVENTS_TOPIC", "lead-events"),
            profiles_topic=_env("LEADPULSE_PROFILES_TOPIC", "lead-profiles"),
            qualifications_topic=_env("LEADPULSE_QUALIFICATIONS_TOPIC", "lead-qualifications"),
            erasures_topic=_env("LEADPULSE_ERASURES_TOPIC", "lead-erasures"),
            lifecycle_topic=_env("LEADPULSE_LIFECYCLE_TOPIC", "lead-lifecycle"),
            ticks_topic=_env("LEADPULSE_TICKS_TOPIC", "") or f"{_env('LEADPULSE_APP_ID', 'leadpulse')}-cooling-ticks",
            scores_topic=_env("LEADPULSE_SCORES_TOPIC", "lead-scores"),
            dlq_topic=_env("LEADPULSE_DLQ_TOPIC", "lead-dlq"),
            partitions=_int("LEADPULSE_PARTITIONS", 4),
            replication_factor=_int("LEADPULSE_REPLICATION_FACTOR", 1),
            store=_choice("LEADPULSE_STORE", "rocksdb://", ("rocksdb://", "memory://")),
            data_dir=Path(_env("LEADPULSE_DATA_DIR", ".leadpulse/data")),
            standby_replicas=_int("LEADPULSE_STANDBY_REPLICAS", 0),
            rules_path=os.environ.get("LEADPULSE_RULES") or None,
            # at_least_once by default: faust-streaming's transactions stall partitions taken over in a
            # rebalance (faust-streaming/faust#323, reproduced by tests/integration). Replays never
            # count twice either way (event-id dedup in the contact state, deterministic change ids).
            processing_guarantee=_choice(
                "LEADPULSE_PROCESSING_GUARANTEE", "at_least_once", ("exactly_once", "at_least_once")
            ),
            batch_max=_int("LEADPULSE_BATCH_MAX", 2000),
            batch_within_s=_float("LEADPULSE_BATCH_WITHIN_MS", 20) / 1000.0,
            cooling_interval_s=_float("LEADPULSE_COOLING_INTERVAL_S", 1.0),
            web_bind=_env("LEADPULSE_WEB_BIND", "127.0.0.1"),
            # The name other workers reach this one by (score lookups are routed to the owner).
            web_host=_env("LEADPULSE_WEB_HOST", "127.0.0.1"),
            web_port=_int("LEADPULSE_WEB_PORT", 6066),
            fast_rebalance=_env("LEADPULSE_FAST_REBALANCE", "0") in ("1", "true", "yes"),
            log_level=_env("LEADPULSE_LOG_LEVEL", "info"),
        )

    def describe(self) -> dict[str, str]:
        """For logs and `leadpulse worker --help`: every setting, no secrets (none are held here)."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}
