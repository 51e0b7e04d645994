"""Shared pieces of the collector tests: an in-memory sink for the HTTP tests that need no broker
(the Kafka tests use the real one), and the collector wired around it."""

from __future__ import annotations

import asyncio
import base64
import dataclasses

import pytest
import pytest_asyncio

from collector.app import Collector
from collector.auth import WriteKeys
from collector.config import load_mapping
from collector.sink import Unavailable
from streams.codec import AvroCodec
from streams.settings import CollectorSettings, Secret

WRITE_KEY = "wk-website-7d1f0c9e3b2a"
OTHER_KEY = "wk-backend-0a9b8c7d6e5f"
HUBSPOT_SECRET = "hs-secret-5e4d3c2b1a"
MAUTIC_SECRET = "mautic-secret-9f8e7d"
codec = AvroCodec()


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


class MemorySink:
    """Stands in for Kafka where the broker is not what is tested: keeps what it is given, can be
    made to fail or to wait (a slow broker)."""

    def __init__(self) -> None:
        self.ready, self.reason = True, ""
        self.records: list = []
        self.fail = False
        self.gate: asyncio.Event | None = None
        self.calls = 0

    async def publish(self, records):
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise Unavailable("the broker did not acknowledge the records (test)")
        self.records.extend(records)
        return 0.001

    def decoded(self, kind: str | None = None) -> list[dict]:
        return [codec.decode(out.record_name, value) for out, value in self.records if kind in (None, out.kind)]


class Clock:
    def __init__(self, t: float = 1_765_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_collector(sink, clock):
    def make(**overrides) -> Collector:
        keys = WriteKeys()
        keys.add("website", WRITE_KEY)
        keys.add("backend", OTHER_KEY)
        cs = dataclasses.replace(CollectorSettings(hubspot_secret=Secret(HUBSPOT_SECRET),
                                                   mautic_secret=Secret(MAUTIC_SECRET)), **overrides)
        return Collector(load_mapping(), cs, keys, sink, clock=clock, monotonic=clock)

    return make


@pytest_asyncio.fixture(loop_scope="function")
async def client(make_collector):
    """An aiohttp test client of a default collector (loopback, an ephemeral port)."""
    from aiohttp.test_utils import TestClient, TestServer

    async def start(**overrides):
        c = TestClient(TestServer(make_collector(**overrides).application(), host="127.0.0.1"))
        await c.start_server()
        started.append(c)
        return c

    started: list = []
    yield start
    for c in started:
        await c.close()
