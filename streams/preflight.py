"""What a worker checks before it builds anything, so a mistake is one clear line and nothing is
written: its data directory (creatable, writable, enough free space), its broker (reachable, our
security protocol spoken, our credentials accepted) and, if one is set, its Schema Registry (our
output schemas registered). The Kafka check also serves the CLI tools.

Messages never contain the password: they name the user and the mechanism only.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile

from streams.settings import Settings


class PreflightError(RuntimeError):
    """The worker (or a tool) cannot start; `str(err)` is one line saying what to fix."""


# -- data directory ----------------------------------------------------------------------------

def check_data_dir(s: Settings) -> None:
    """Create the data dir, write and sync a scratch file in it, and require
    `LEADPULSE_DATA_DIR_MIN_FREE_MB` free: mode bits alone would not do (root ignores them; a
    read-only mount or a full disk does not), and RocksDB hitting either mid-write is far worse."""
    what = f"data directory {s.data_dir} (LEADPULSE_DATA_DIR)"
    try:
        s.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PreflightError(f"{what} cannot be created: {exc.strerror or exc}") from None
    try:
        with tempfile.TemporaryFile(dir=s.data_dir, prefix=".leadpulse-preflight-") as fh:
            fh.write(b"\0" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise PreflightError(f"{what} is not writable: {exc.strerror or exc}") from None
    st = os.statvfs(s.data_dir)
    free_mib = st.f_bavail * st.f_frsize // 2**20
    if free_mib < s.data_dir_min_free_mb:
        raise PreflightError(f"{what} has {free_mib} MiB free; a worker needs at least {s.data_dir_min_free_mb} "
                             f"MiB (LEADPULSE_DATA_DIR_MIN_FREE_MB): free some space or use another volume")


# -- broker ------------------------------------------------------------------------------------

def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    hosts = []
    for item in (h.strip() for h in bootstrap.split(",")):
        host, _, port = item.split("://", 1)[-1].rpartition(":")
        if item and (not host or not port.isdigit()):
            raise PreflightError(f"Kafka bootstrap server {item!r}: expected HOST:PORT")
        if item:
            hosts.append((host.strip("[]"), int(port)))
    if not hosts:
        raise PreflightError("no Kafka bootstrap server given (KAFKA_BOOTSTRAP_SERVERS)")
    return hosts


class _HungUp(PreflightError):
    """Connected, then hung up on: a listener speaking another protocol — or a TCP proxy or load
    balancer whose broker is not up yet, which accepts and closes the same way."""


async def check_kafka(s: Settings, timeout_s: float = 10.0, hung_up_retry_s: float = 5.0) -> None:
    """Open one connection the way every client will (TLS, SASL handshake, authentication) and ask
    for metadata. A refusal is final (every broker shares the credentials); an unreachable host
    lets the next bootstrap server try. A connection closed on us is tried again for
    `hung_up_retry_s` first: a proxy in front of a restarting broker does that too. aiokafka itself
    would only say "Unable to bootstrap"."""
    deadline = asyncio.get_running_loop().time() + hung_up_retry_s
    while True:
        try:
            return await _check_kafka_once(s, timeout_s)
        except _HungUp:
            if asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(0.5)


async def _check_kafka_once(s: Settings, timeout_s: float) -> None:
    from aiokafka.conn import create_conn
    from aiokafka.errors import (AuthenticationFailedError, KafkaConnectionError, KafkaError,
                                 SaslAuthenticationFailed, UnsupportedSaslMechanismError)
    from aiokafka.protocol.metadata import MetadataRequest

    protocol = f"KAFKA_SECURITY_PROTOCOL={s.security_protocol}"
    unreachable = []
    for host, port in _hosts(s.bootstrap_servers):
        where = f"Kafka at {host}:{port}"
        conn = None
        try:
            async with asyncio.timeout(timeout_s):
                conn = await create_conn(host, port, client_id="leadpulse-preflight",
                                         request_timeout_ms=int(timeout_s * 1000), **s.kafka_client_kwargs())
                await conn.send(MetadataRequest([]))
            return
        except (SaslAuthenticationFailed, AuthenticationFailedError):
            raise PreflightError(f"{where} refused the credentials for {s.kafka_identity()}: check "
                                 f"KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD(_FILE)") from None
        except UnsupportedSaslMechanismError:
            raise PreflightError(f"{where} does not accept SASL mechanism {s.sasl_mechanism} "
                                 f"(KAFKA_SASL_MECHANISM)") from None
        except ssl.SSLCertVerificationError as exc:
            raise PreflightError(f"{where}: its TLS certificate is not trusted ({exc.verify_message}): set "
                                 f"KAFKA_SSL_CAFILE to the CA that signed it") from None
        except ssl.SSLError as exc:
            raise PreflightError(f"{where}: TLS handshake failed ({exc.reason or exc}): is the listener TLS? "
                                 f"({protocol})") from None
        except (KafkaConnectionError, ConnectionResetError):
            # Connected, then hung up on: a SASL listener does that to a request sent before
            # authentication, a TLS one to a client that does not start with a TLS handshake, and a
            # plaintext one to a TLS handshake.
            if s.security_protocol == "PLAINTEXT":
                raise _HungUp(f"{where} closed the connection on an unauthenticated request ({protocol}): "
                              f"it requires authentication or TLS (set KAFKA_SECURITY_PROTOCOL and "
                              f"KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD(_FILE)), or it is a proxy or load "
                              f"balancer whose broker does not answer") from None
            raise _HungUp(f"{where} closed the connection: is it a {s.security_protocol} listener "
                          f"(KAFKA_SECURITY_PROTOCOL)?") from None
        except (TimeoutError, KafkaError):
            unreachable.append(f"{host}:{port} did not answer a Kafka request within {timeout_s:g} s "
                               f"(is it a Kafka listener for {protocol}?)")
        except OSError as exc:
            unreachable.append(f"{host}:{port} {os.strerror(exc.errno) if exc.errno else type(exc).__name__}")
        finally:
            if conn is not None:
                conn.close()
    raise PreflightError(f"cannot reach Kafka at {s.bootstrap_servers}: {'; '.join(unreachable)}")


# -- schema registry ---------------------------------------------------------------------------

def check_registry(s: Settings) -> None:
    """With SCHEMA_REGISTRY_URL: the registry answers, takes our credentials, and accepts the schemas
    of the worker's outputs under the subjects the strategy names for their topics. A wrong URL,
    refused credentials or a subject whose compatibility rule refuses our schema is then one line at
    start, not a worker that stops at its first output."""
    if not s.schema_registry_url:
        return
    from streams.codec import RegistryError, codec_from_settings

    codec = codec_from_settings(s)
    try:
        for name, topic in (("LifecycleChange", s.lifecycle_topic), ("ScoreSnapshot", s.scores_topic),
                            ("DeadLetter", s.dlq_topic), ("AccountChange", s.accounts_topic)):
            codec.writer_id(name, topic)
    except RegistryError as exc:
        raise PreflightError(exc.reason) from None


def check_api_tokens(s: Settings) -> None:
    """The lookup API's tokens file (streams.webauth), if one is set: readable and well-formed.
    The message names the file and the line, never a token."""
    if s.api_tokens_file:
        from streams.webauth import TokenFileError, TokenStore

        try:
            TokenStore.from_file(s.api_tokens_file)
        except TokenFileError as exc:
            raise PreflightError(f"{exc} (LEADPULSE_API_TOKENS_FILE)") from None


def check_worker(s: Settings) -> None:
    """Everything a worker needs before it starts; raises PreflightError."""
    check_api_tokens(s)
    check_data_dir(s)
    asyncio.run(check_kafka(s))
    check_registry(s)
