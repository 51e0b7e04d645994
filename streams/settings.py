"""One settings object, read from the environment (12-factor), with defaults that run on a laptop."""

from __future__ import annotations

import hmac
import os
import ssl
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


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


class Secret:
    """A value that never shows itself (repr and str are `***`), so it cannot leak through
    `describe()`, `repr(settings)`, a log line or an error message; `reveal()` is the one way out."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(Secret)


def _secret(name: str) -> Secret | None:
    """From the variable `name` or, better for orchestrators, `<name>_FILE` (a mounted Secret;
    trailing newlines stripped). Both set is an error rather than a silent precedence rule."""
    direct, path = os.environ.get(name, ""), os.environ.get(f"{name}_FILE", "")
    if direct and path:
        raise SettingsError(f"{name} and {name}_FILE are both set: set only one")
    if not path:
        return Secret(direct) if direct else None
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise SettingsError(f"{name}_FILE={path!r}: cannot read it ({reason})") from None
    if not value:
        raise SettingsError(f"{name}_FILE={path!r}: the file is empty")
    return Secret(value)


def _sasl_password() -> Secret | None:
    return _secret("KAFKA_SASL_PASSWORD")


def _ssl_context(cafile: str | None) -> ssl.SSLContext:
    """Server certificates verified against `cafile`, else the system trust store; hostnames checked."""
    return ssl.create_default_context(cafile=cafile)


def _kafka_security() -> dict[str, Any]:
    """The KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* / KAFKA_SSL_CAFILE settings, checked together:
    credentials that a protocol would silently ignore, or a SASL protocol without them, are errors."""
    protocol = _choice("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", SECURITY_PROTOCOLS)
    sasl = protocol.startswith("SASL_")
    username = os.environ.get("KAFKA_SASL_USERNAME") or None
    password = _sasl_password()
    mechanism_set = bool(os.environ.get("KAFKA_SASL_MECHANISM"))
    mechanism = _choice("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", SASL_MECHANISMS)
    cafile = os.environ.get("KAFKA_SSL_CAFILE") or None
    if sasl and not (username and password):
        raise SettingsError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                            f"KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)")
    if not sasl and (username or password or mechanism_set):
        raise SettingsError(f"KAFKA_SASL_* settings are ignored with KAFKA_SECURITY_PROTOCOL={protocol}: "
                            f"set it to SASL_SSL (or SASL_PLAINTEXT) to authenticate")
    if cafile and not protocol.endswith("SSL"):
        raise SettingsError(f"KAFKA_SSL_CAFILE is ignored with KAFKA_SECURITY_PROTOCOL={protocol}: "
                            f"set it to SASL_SSL or SSL")
    if cafile:
        try:
            _ssl_context(cafile)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(f"KAFKA_SSL_CAFILE={cafile!r}: not a readable PEM CA file "
                                f"({getattr(exc, 'strerror', None) or exc})") from None
    return dict(security_protocol=protocol, sasl_mechanism=mechanism if sasl else None,
                sasl_username=username if sasl else None, sasl_password=password if sasl else None,
                ssl_cafile=cafile)


# -- Schema Registry (issue 12: subject name strategy, basic auth, outage budget) ----------------

SUBJECT_STRATEGIES = ("topic", "record", "topic_record")


def _schema_registry() -> dict[str, Any]:
    """SCHEMA_REGISTRY_URL, _SUBJECT_STRATEGY, _BASIC_AUTH_USER_INFO and _RETRY_S. Credentials in the
    URL (http://user:pw@host) are moved into the Secret, so the URL can be shown anywhere."""
    url = os.environ.get("SCHEMA_REGISTRY_URL") or None
    user_info = os.environ.get("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO") or None
    if url is not None:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https") or not rest.strip("/"):
            raise SettingsError("SCHEMA_REGISTRY_URL: expected http://HOST:PORT[/path] or https://...")
        authority, slash, path = rest.partition("/")
        if "@" in authority:
            if user_info:
                raise SettingsError("SCHEMA_REGISTRY_URL has credentials and SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO "
                                    "is set too: set only one")
            user_info, _, authority = authority.rpartition("@")
        url = f"{scheme}://{authority}{slash}{path}".rstrip("/")
    if user_info is not None and ":" not in user_info:
        raise SettingsError("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO: expected USER:PASSWORD")
    retry_s = _float("SCHEMA_REGISTRY_RETRY_S", 10.0)
    if retry_s < 0:
        raise SettingsError(f"SCHEMA_REGISTRY_RETRY_S={retry_s:g}: must be >= 0")
    return dict(schema_registry_url=url,
                schema_registry_subject_strategy=_choice("SCHEMA_REGISTRY_SUBJECT_STRATEGY", "topic",
                                                         SUBJECT_STRATEGIES),
                schema_registry_user_info=Secret(user_info) if user_info else None,
                schema_registry_retry_s=retry_s)


def _failpoints() -> str:
    from streams.failpoints import parse

    raw = os.environ.get("LEADPULSE_FAILPOINTS", "")
    try:
        parse(raw)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return raw


def _web_tls() -> dict[str, str | None]:
    """LEADPULSE_WEB_TLS_CERT and LEADPULSE_WEB_TLS_KEY (PEM files), both or neither."""
    cert = os.environ.get("LEADPULSE_WEB_TLS_CERT") or None
    key = os.environ.get("LEADPULSE_WEB_TLS_KEY") or None
    if bool(cert) != bool(key):
        raise SettingsError("LEADPULSE_WEB_TLS_CERT and LEADPULSE_WEB_TLS_KEY go together: set both or neither")
    return {"web_tls_cert": cert, "web_tls_key": key}


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
    repartition_topic: str
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
    max_message_bytes: int
    restore_at_start: bool
    fetch_wait_ms: int
    cooling_interval_s: float
    # a worker that makes no progress for this long fails /health/live and exits (0: never)
    stall_timeout_s: float
    # fault injection for tests and drills (streams.failpoints), never in production
    failpoints: str
    # web (score lookup, metrics, health)
    web_bind: str
    web_host: str
    web_port: int
    # faster group joins for tests and demos
    fast_rebalance: bool
    log_level: str
    # the worker refuses to start with less free space than this in data_dir
    data_dir_min_free_mb: int = 64
    # Kafka security (clients get them through kafka_client_kwargs / faust_credentials only)
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    # Schema Registry (issue 12): see _schema_registry
    schema_registry_subject_strategy: str = "topic"
    schema_registry_user_info: Secret | None = None
    schema_registry_retry_s: float = 10.0
    # -- accounts and identity (issues 13 and 15) -------------------------------------------------
    # Inputs the HTTP collector writes (keyed by contact id, co-partitioned with the others) and
    # the worker's lookup API authentication (streams.webauth).
    identity_topic: str = "lead-identities"
    accounts_input_topic: str = "lead-account-memberships"
    merges_topic: str = "lead-contact-merges"
    accounts_topic: str = "lead-accounts"  # AccountChange records (output)
    account_shares_topic: str = "leadpulse-account-shares"  # internal: contact shares re-keyed by account
    api_tokens_file: str | None = None
    api_auth: str = "required"
    api_token: Secret | None = None  # the CLI's own token (`leadpulse explain`)
    web_tls_cert: str | None = None  # TLS for the worker's web server (lookups, health, metrics)
    web_tls_key: str | None = None
    # -- end of accounts and identity -------------------------------------------------------------

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            app_id=_env("LEADPULSE_APP_ID", "leadpulse"),
            bootstrap_servers=_env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            events_topic=_env("LEADPULSE_EVENTS_TOPIC", "lead-events"),
            profiles_topic=_env("LEADPULSE_PROFILES_TOPIC", "lead-profiles"),
            qualifications_topic=_env("LEADPULSE_QUALIFICATIONS_TOPIC", "lead-qualifications"),
            erasures_topic=_env("LEADPULSE_ERASURES_TOPIC", "lead-erasures"),
            lifecycle_topic=_env("LEADPULSE_LIFECYCLE_TOPIC", "lead-lifecycle"),
            ticks_topic=_env("LEADPULSE_TICKS_TOPIC", "") or f"{_env('LEADPULSE_APP_ID', 'leadpulse')}-cooling-ticks",
            # Inputs that arrived in another partition than their contact's owner are forwarded here.
            repartition_topic=(_env("LEADPULSE_REPARTITION_TOPIC", "")
                               or f"{_env('LEADPULSE_APP_ID', 'leadpulse')}-repartition"),
            scores_topic=_env("LEADPULSE_SCORES_TOPIC", "lead-scores"),
            dlq_topic=_env("LEADPULSE_DLQ_TOPIC", "lead-dlq"),
            partitions=_int("LEADPULSE_PARTITIONS", 4),
            replication_factor=_int("LEADPULSE_REPLICATION_FACTOR", 1),
            store=_choice("LEADPULSE_STORE", "rocksdb://", ("rocksdb://", "memory://")),
            data_dir=Path(_env("LEADPULSE_DATA_DIR", ".leadpulse/data")),
            standby_replicas=_int("LEADPULSE_STANDBY_REPLICAS", 0),
            rules_path=os.environ.get("LEADPULSE_RULES") or None,
            # at_least_once: outputs may be published twice after a crash (same change ids);
            # exactly_once: each batch's outputs, states and offsets commit in one transaction.
            processing_guarantee=_choice(
                "LEADPULSE_PROCESSING_GUARANTEE", "at_least_once", ("exactly_once", "at_least_once")
            ),
            batch_max=_int("LEADPULSE_BATCH_MAX", 2000),
            # The largest message an input may carry and a dead letter may hold (topic
            # max.message.bytes of the topics leadpulse creates, and its producer's request size).
            max_message_bytes=_int("LEADPULSE_MAX_MESSAGE_BYTES", 8 * 1024 * 1024),
            # Restore the contact table from its changelog in bulk before joining the group (streams.restore).
            restore_at_start=_env("LEADPULSE_RESTORE_AT_START", "1") in ("1", "true", "yes"),
            # How long the broker may hold a fetch to fill a batch (streams.bulk): latency for CPU.
            fetch_wait_ms=_int("LEADPULSE_FETCH_WAIT_MS", 10),
            cooling_interval_s=_float("LEADPULSE_COOLING_INTERVAL_S", 1.0),
            stall_timeout_s=_float("LEADPULSE_STALL_TIMEOUT_S", 60.0),
            failpoints=_failpoints(),
            web_bind=_env("LEADPULSE_WEB_BIND", "127.0.0.1"),
            # The name other workers reach this one by (score lookups are routed to the owner).
            web_host=_env("LEADPULSE_WEB_HOST", "127.0.0.1"),
            web_port=_int("LEADPULSE_WEB_PORT", 6066),
            fast_rebalance=_env("LEADPULSE_FAST_REBALANCE", "0") in ("1", "true", "yes"),
            log_level=_env("LEADPULSE_LOG_LEVEL", "info"),
            data_dir_min_free_mb=_int("LEADPULSE_DATA_DIR_MIN_FREE_MB", 64),
            **_kafka_security(),
            **_schema_registry(),
            # -- accounts and identity (issues 13 and 15) --
            identity_topic=_env("LEADPULSE_IDENTITY_TOPIC", "lead-identities"),
            accounts_input_topic=_env("LEADPULSE_ACCOUNTS_INPUT_TOPIC", "lead-account-memberships"),
            merges_topic=_env("LEADPULSE_MERGES_TOPIC", "lead-contact-merges"),
            accounts_topic=_env("LEADPULSE_ACCOUNTS_TOPIC", "lead-accounts"),
            account_shares_topic=(_env("LEADPULSE_ACCOUNT_SHARES_TOPIC", "")
                                  or f"{_env('LEADPULSE_APP_ID', 'leadpulse')}-account-shares"),
            api_tokens_file=os.environ.get("LEADPULSE_API_TOKENS_FILE") or None,
            api_auth=_choice("LEADPULSE_API_AUTH", "required", ("required", "disabled")),
            api_token=_secret("LEADPULSE_API_TOKEN"),
            **_web_tls(),
        )

    def describe(self) -> dict[str, str]:
        """For logs and `leadpulse worker --help`: every setting; the password shows as `***`."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Security keyword arguments for every aiokafka client (producer, consumer, admin): the one
        place that turns the settings into them. PLAINTEXT gives `{}` (aiokafka's defaults)."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.endswith("SSL"):
            kwargs["ssl_context"] = _ssl_context(self.ssl_cafile)
        if self.sasl_password is not None:
            kwargs.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password.reveal())
        return kwargs

    def faust_credentials(self):
        """The same, as Faust's `broker_credentials` (None for PLAINTEXT)."""
        import faust

        if self.security_protocol == "PLAINTEXT":
            return None
        kwargs = self.kafka_client_kwargs()
        if self.security_protocol == "SSL":
            return faust.SSLCredentials(kwargs["ssl_context"])
        return faust.SASLCredentials(username=self.sasl_username, password=kwargs["sasl_plain_password"],
                                     mechanism=self.sasl_mechanism, ssl_context=kwargs.get("ssl_context"))

    def kafka_identity(self) -> str:
        """Who we connect as, for error messages: `user 'x' (SCRAM-SHA-512)`, never the password."""
        if self.sasl_username:
            return f"user {self.sasl_username!r} ({self.sasl_mechanism})"
        return f"no credentials ({self.security_protocol})"


# == the HTTP collector (issue 15) ================================================================
# Settings of `leadpulse collector` only: a worker never reads them, so a collector setting can
# never stop a worker. Kafka, topics and security come from `Settings` above.

@dataclass(frozen=True)
class CollectorSettings:
    bind: str = "127.0.0.1"
    port: int = 8088
    # Segment write keys: `<source name> <key>` lines in a file (preferred), or `name:key,...`.
    write_keys: Secret | None = None
    write_keys_file: str | None = None
    mapping_path: str | None = None  # None: collector/default_mapping.toml
    tls_cert: str | None = None
    tls_key: str | None = None
    max_body_bytes: int = 512_000  # Segment: 500 KB per batch
    max_message_bytes: int = 32_768  # Segment: 32 KB per message
    rate_per_s: float = 1000.0  # messages per second per write key (token bucket)
    burst: int = 5000
    dedup_size: int = 100_000  # recent messageIds remembered per write key
    ack_timeout_s: float = 10.0  # broker acknowledgement of a whole request, else 503
    public_url: str | None = None  # how HubSpot reaches us (its v3 signature covers the URL)
    hubspot_secret: Secret | None = None
    mautic_secret: Secret | None = None

    @classmethod
    def from_env(cls) -> "CollectorSettings":
        keys, keys_file = os.environ.get("LEADPULSE_COLLECTOR_WRITE_KEYS", ""), \
            os.environ.get("LEADPULSE_COLLECTOR_WRITE_KEYS_FILE", "")
        if keys and keys_file:
            raise SettingsError("LEADPULSE_COLLECTOR_WRITE_KEYS and LEADPULSE_COLLECTOR_WRITE_KEYS_FILE are both "
                                "set: set only one")
        cert, key = os.environ.get("LEADPULSE_COLLECTOR_TLS_CERT") or None, \
            os.environ.get("LEADPULSE_COLLECTOR_TLS_KEY") or None
        if bool(cert) != bool(key):
            raise SettingsError("LEADPULSE_COLLECTOR_TLS_CERT and LEADPULSE_COLLECTOR_TLS_KEY go together: set both "
                                "(TLS) or neither (plain HTTP)")
        s = cls(
            bind=_env("LEADPULSE_COLLECTOR_BIND", "127.0.0.1"),
            port=_int("LEADPULSE_COLLECTOR_PORT", 8088),
            write_keys=Secret(keys) if keys else None,
            write_keys_file=keys_file or None,
            mapping_path=os.environ.get("LEADPULSE_COLLECTOR_MAPPING") or None,
            tls_cert=cert,
            tls_key=key,
            max_body_bytes=_int("LEADPULSE_COLLECTOR_MAX_BODY_BYTES", 512_000),
            max_message_bytes=_int("LEADPULSE_COLLECTOR_MAX_MESSAGE_BYTES", 32_768),
            rate_per_s=_float("LEADPULSE_COLLECTOR_RATE", 1000.0),
            burst=_int("LEADPULSE_COLLECTOR_BURST", 5000),
            dedup_size=_int("LEADPULSE_COLLECTOR_DEDUP_SIZE", 100_000),
            ack_timeout_s=_float("LEADPULSE_COLLECTOR_ACK_TIMEOUT_S", 10.0),
            public_url=os.environ.get("LEADPULSE_COLLECTOR_PUBLIC_URL") or None,
            hubspot_secret=_secret("LEADPULSE_HUBSPOT_CLIENT_SECRET"),
            mautic_secret=_secret("LEADPULSE_MAUTIC_WEBHOOK_SECRET"),
        )
        for name, value, low in (("LEADPULSE_COLLECTOR_PORT", s.port, 0),
                                 ("LEADPULSE_COLLECTOR_MAX_MESSAGE_BYTES", s.max_message_bytes, 1),
                                 ("LEADPULSE_COLLECTOR_MAX_BODY_BYTES", s.max_body_bytes, s.max_message_bytes),
                                 ("LEADPULSE_COLLECTOR_BURST", s.burst, 1),
                                 ("LEADPULSE_COLLECTOR_DEDUP_SIZE", s.dedup_size, 0)):
            if value < low:
                raise SettingsError(f"{name}={value}: must be at least {low}")
        if s.port > 65535:
            raise SettingsError(f"LEADPULSE_COLLECTOR_PORT={s.port}: not a TCP port")
        if s.rate_per_s <= 0 or s.ack_timeout_s <= 0:
            raise SettingsError("LEADPULSE_COLLECTOR_RATE and LEADPULSE_COLLECTOR_ACK_TIMEOUT_S must be > 0")
        return s

    def describe(self) -> dict[str, str]:
        """For `leadpulse collector --help` and the start-up log: secrets show as `***`."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}
# == end of the HTTP collector ====================================================================
