"""A listener that accepts and hangs up is asked again before the worker gives up: a TCP proxy or a
load balancer in front of a restarting broker does exactly that (the fault suite's proxy did)."""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.preflight import PreflightError, check_kafka
from streams.settings import Settings


async def test_a_hang_up_is_retried_then_reported_with_both_explanations(monkeypatch):
    accepted = []

    async def hang_up(reader, writer):
        accepted.append(time.monotonic())
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    try:
        started = time.monotonic()
        with pytest.raises(PreflightError) as err:
            await check_kafka(Settings.from_env(), timeout_s=2.0, hung_up_retry_s=1.5)
        assert time.monotonic() - started >= 1.5 and len(accepted) >= 3  # asked again, not once
        assert "closed the connection" in str(err.value) and "proxy or load balancer" in str(err.value)
    finally:
        server.close()
        await server.wait_closed()
