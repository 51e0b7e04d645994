"""The one wiring place of the collector: settings → mapping, write keys, Kafka sink, aiohttp
server; start, serve until SIGTERM/SIGINT, drain, stop. `python -m collector` and
`leadpulse collector` run `main()`."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from dataclasses import dataclass

from aiohttp import web

from collector.app import Collector
from collector.auth import WriteKeyError, WriteKeys
from collector.config import MappingConfig, MappingConfigError, load_mapping
from collector.sink import KafkaSink
from streams import logs
from streams.codec import codec_from_env
from streams.settings import CollectorSettings, Settings, SettingsError
from streams.webauth import server_ssl_context

log = logging.getLogger("leadpulse.collector")
SHUTDOWN_GRACE_S = 15.0  # in-flight requests get this long to be acknowledged and answered


class StartError(Exception):
    """The collector cannot start; one line saying what to fix."""


@dataclass
class Config:
    settings: Settings
    collector: CollectorSettings
    mapping: MappingConfig
    keys: WriteKeys
    ssl_context: ssl.SSLContext | None

    def summary(self) -> str:
        c = self.collector
        scheme = "https" if self.ssl_context else "http"
        webhooks = [name for name, secret in (("hubspot", c.hubspot_secret), ("mautic", c.mautic_secret)) if secret]
        return (f"collector on {scheme}://{c.bind}:{c.port}: sources {', '.join(self.keys.sources()) or '(none)'}; "
                f"webhooks {', '.join(webhooks) or '(none)'}; mapping {self.mapping.version}; "
                f"Kafka {self.settings.bootstrap_servers}")


def load_config() -> Config:
    """Everything from the environment, checked; StartError names what is wrong."""
    try:
        settings, cs = Settings.from_env(), CollectorSettings.from_env()
        mapping = load_mapping(cs.mapping_path)
        keys = WriteKeys.from_settings(cs)
        ctx = server_ssl_context(cs.tls_cert, cs.tls_key) if cs.tls_cert else None
    except (SettingsError, MappingConfigError, WriteKeyError) as exc:
        raise StartError(str(exc)) from None
    except (OSError, ssl.SSLError) as exc:
        raise StartError(f"TLS certificate/key (LEADPULSE_COLLECTOR_TLS_CERT, _KEY): cannot load them "
                         f"({getattr(exc, 'strerror', None) or exc})") from None
    return Config(settings, cs, mapping, keys, ctx)


async def serve(config: Config, stop: asyncio.Event | None = None) -> None:
    from streams.admin import ensure_topics
    from streams.preflight import PreflightError, check_kafka

    try:
        await check_kafka(config.settings)
    except PreflightError as exc:
        raise StartError(str(exc)) from None
    await ensure_topics(config.settings)
    if not len(config.keys):
        log.warning("collector: no write keys (LEADPULSE_COLLECTOR_WRITE_KEYS_FILE): every Segment request "
                    "answers 401")
    sink = KafkaSink(config.settings, config.collector.ack_timeout_s)
    collector = Collector(config.mapping, config.collector, config.keys, sink,
                          codec_from_env(config.settings.schema_registry_url))
    runner = web.AppRunner(collector.application(), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
    await sink.start()
    try:
        await runner.setup()
        site = web.TCPSite(runner, config.collector.bind, config.collector.port, ssl_context=config.ssl_context)
        try:
            await site.start()
        except OSError as exc:
            raise StartError(f"cannot listen on {config.collector.bind}:{config.collector.port} "
                             f"(LEADPULSE_COLLECTOR_BIND, _PORT): {exc.strerror or exc}") from None
        log.info("%s", config.summary())
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("collector: stopping (in-flight requests get %g s)", SHUTDOWN_GRACE_S)
    finally:
        await runner.cleanup()  # stops accepting, lets in-flight requests finish
        await sink.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m collector", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="check the settings, mapping, write keys and TLS "
                                                             "files, print what would run, and exit")
    args = parser.parse_args(argv)
    try:
        config = load_config()
        if args.check:
            print(config.summary())
            return 0
        logs.configure(config.settings.log_level)
        asyncio.run(serve(config))
    except StartError as exc:
        print(f"leadpulse: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
