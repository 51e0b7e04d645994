"""The collector's HTTP shell (aiohttp): the Segment HTTP Tracking API, the HubSpot and Mautic
webhooks, /health and /metrics. Everything it decides about a message comes from the pure
mapping (collector.mapping, collector.webhooks); this module authenticates, limits, deduplicates,
publishes through a `Sink` and answers.

Answers (README, Collector):
* 200 `{"success": true, "accepted": n, "duplicates": n, "ignored": n, "rejected": n, "results":
  [...]}` once the broker has acknowledged every record of the request (rejected messages are on
  the dead-letter topic, acknowledged too);
* 400 an unusable request (not JSON, no batch, a single-call message that is invalid): nothing
  of it is published but its dead letter; 401 no valid write key or webhook signature, nothing
  read further; 413 over the body limit; 429 over the source's rate (Retry-After);
* 503 the broker is unreachable or did not acknowledge in time (Retry-After): retry, the
  messageIds make it harmless. Never 200 for something not stored.
Error bodies carry `code` and `message`, as Segment's clients read them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable

from aiohttp import web

from collector.auth import WriteKeys
from collector.config import MappingConfig
from collector.dedup import RecentMessages
from collector.limits import RateLimits
from collector.mapping import InvalidRequest, Result, map_request
from collector.metrics import CONTENT_TYPE, CollectorMetrics
from collector.records import DLQ, Mapped, MappingError, Output, dead_letter
from collector.sink import Sink, Unavailable
from collector.webhooks import HUBSPOT, MAUTIC, SignatureError, map_hubspot, map_mautic, verify_hubspot, verify_mautic
from streams.codec import AvroCodec
from streams.settings import CollectorSettings

log = logging.getLogger("leadpulse.collector")

#: Segment calls and their endpoints; the one-letter paths are the short aliases.
SEGMENT_ENDPOINTS = {"track": "t", "page": "p", "screen": "s", "identify": "i", "group": "g", "alias": "a"}


def _reject_json(msg: str) -> Any:
    raise ValueError(f"not JSON: {msg}")


def parse_json(body: bytes) -> Any:
    """Strict JSON: NaN and Infinity (which Python's json accepts) are refused."""
    return json.loads(body.decode("utf-8"), parse_constant=_reject_json)


def error(status: int, code: str, message: str, headers: dict | None = None, **extra) -> web.Response:
    return web.json_response({"success": False, "code": code, "message": message, **extra}, status=status,
                             headers=headers)


class Collector:
    def __init__(self, mapping: MappingConfig, settings: CollectorSettings, keys: WriteKeys, sink: Sink,
                 codec: AvroCodec | None = None, metrics: CollectorMetrics | None = None,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic):
        self.mapping = mapping
        self.settings = settings
        self.keys = keys
        self.sink = sink
        self.codec = codec or AvroCodec()
        self.metrics = metrics or CollectorMetrics()
        self.clock = clock
        self.recent = RecentMessages(settings.dedup_size)
        self.limits = RateLimits(settings.rate_per_s, settings.burst, monotonic)
        self.metrics.known_sources(keys.sources())
        self.metrics.ready.set_function(lambda: 1.0 if self.sink.ready else 0.0)

    # -- the aiohttp application ----------------------------------------------------------------
    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes, middlewares=[self._observe])
        r = app.router
        for call, short in SEGMENT_ENDPOINTS.items():
            handler = self._segment(call)
            r.add_post(f"/v1/{call}", handler, name=call)
            r.add_post(f"/v1/{short}", handler, name=f"{call}_short")
        r.add_post("/v1/batch", self._segment(None), name="batch")
        r.add_post("/v1/b", self._segment(None), name="batch_short")
        r.add_post("/v1/import", self._segment(None), name="batch_import")
        r.add_post("/webhooks/hubspot", self.hubspot, name="hubspot")
        r.add_post("/webhooks/mautic", self.mautic, name="mautic")
        r.add_get("/health", self.ready, name="health")
        r.add_get("/health/live", self.live, name="live")
        r.add_get("/health/ready", self.ready, name="ready")
        r.add_get("/metrics", self.metrics_page, name="metrics")
        return app

    @web.middleware
    async def _observe(self, request: web.Request, handler):
        route = request.match_info.route
        endpoint = route.name if route is not None and route.name else "unmatched"
        ingest = endpoint not in ("metrics", "live", "ready", "health")  # probes and scrapes are not traffic
        started = time.perf_counter()
        if ingest:
            self.metrics.in_flight.inc()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            if ingest:
                self.metrics.in_flight.dec()
                self.metrics.request_duration.labels(endpoint).observe(time.perf_counter() - started)

    # -- health and metrics ---------------------------------------------------------------------
    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def ready(self, request: web.Request) -> web.Response:
        if self.sink.ready:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "reason": self.sink.reason}, status=503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    # -- common steps ---------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> bytes | web.Response:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            self.metrics.reject("BodyTooLarge")
            return error(413, "too_large", f"the body is {request.content_length} bytes, at most {limit}")
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.metrics.reject("BodyTooLarge")
            return error(413, "too_large", f"the body is over {limit} bytes")

    def _unavailable(self, reason: str) -> web.Response:
        self.metrics.reject("BrokerUnavailable")
        return error(503, "unavailable", f"not stored: {reason}; retry later", headers={"Retry-After": "1"})

    async def _invalid_request(self, source: str, path: str, body: bytes, exc: MappingError) -> web.Response:
        """400: the request is unusable. Its body goes to the dead-letter topic if the broker takes
        it (the client must fix the request; a retry would not help, so 400 either way)."""
        self.metrics.reject(exc.error_class)
        letter = dead_letter(f"http:{path}", source, body, type(exc).__name__, exc.field, exc.reason,
                             int(self.clock() * 1000))
        if self.sink.ready:
            try:
                await self.sink.publish([(Output(DLQ, source, letter), self.codec.encode("DeadLetter", letter))])
                self.metrics.records.labels(DLQ).inc()
            except Unavailable:
                log.warning("collector: the dead letter of an invalid request from %s was not stored", source)
        field = {"field": exc.field} if exc.field else {}
        return error(400, "invalid_request", str(exc), **field)

    # -- Segment --------------------------------------------------------------------------------
    def _segment(self, call: str | None):
        async def handler(request: web.Request) -> web.Response:
            return await self._segment_request(request, call)

        return handler

    async def _segment_request(self, request: web.Request, call: str | None) -> web.Response:
        source = self.keys.source_of_header(request.headers.get("Authorization"))
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            parsed = parse_json(body)
        except (ValueError, UnicodeDecodeError) as exc:
            parsed, bad_json = None, exc
        else:
            bad_json = None
        if source is None and isinstance(parsed, dict) and isinstance(parsed.get("writeKey"), str):
            source = self.keys.source_of(parsed["writeKey"])  # analytics.js puts the key in the body
        if source is None:
            self.metrics.reject("Unauthorized")
            return error(401, "unauthorized", "a valid write key is required (HTTP Basic, the write key as the "
                                              "user name)", headers={"WWW-Authenticate": 'Basic realm="leadpulse"'})
        if not self.sink.ready:
            return self._unavailable(self.sink.reason)
        if bad_json is not None:
            return await self._invalid_request(source, request.path, body,
                                               InvalidRequest(None, f"the body is not JSON ({bad_json})"))
        try:
            results = map_request(parsed, call, source, int(self.clock() * 1000), self.mapping,
                                  self.settings.max_message_bytes)
        except InvalidRequest as exc:
            return await self._invalid_request(source, request.path, body, exc)
        if call is not None and isinstance(results[0].outcome, MappingError):  # the one message is the request
            self.metrics.outcome(source, "rejected")
            return await self._invalid_request(source, request.path, body, results[0].outcome)
        return await self._store(source, request.path, results)

    # -- webhooks -------------------------------------------------------------------------------
    async def hubspot(self, request: web.Request) -> web.Response:
        def verify(secret: str, body: bytes) -> None:
            public = (self.settings.public_url or f"{request.scheme}://{request.host}").rstrip("/")
            verify_hubspot(secret, request.method, public + request.path_qs, body,
                           request.headers.get("X-HubSpot-Request-Timestamp"),
                           request.headers.get("X-HubSpot-Signature-v3"), int(self.clock() * 1000))

        return await self._signed(request, HUBSPOT, self.settings.hubspot_secret, "LEADPULSE_HUBSPOT_CLIENT_SECRET",
                                  verify, map_hubspot)

    async def mautic(self, request: web.Request) -> web.Response:
        def verify(secret: str, body: bytes) -> None:
            verify_mautic(secret, body, request.headers.get("Webhook-Signature"))

        return await self._signed(request, MAUTIC, self.settings.mautic_secret, "LEADPULSE_MAUTIC_WEBHOOK_SECRET",
                                  verify, map_mautic)

    async def _signed(self, request: web.Request, platform: str, secret, variable: str, verify, mapper):
        """A platform's webhook: enabled by its secret, signature checked before anything is parsed."""
        if secret is None:
            raise web.HTTPNotFound(text=f"the {platform} webhook is not enabled ({variable})")
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            verify(secret.reveal(), body)
        except SignatureError as exc:
            return self._bad_signature(platform, exc)
        return await self._webhook(platform, request.path, body, mapper)

    def _bad_signature(self, platform: str, exc: SignatureError) -> web.Response:
        self.metrics.reject("Unauthorized")
        log.info("collector: %s webhook refused: %s", platform, exc)
        return error(401, "unauthorized", str(exc))

    async def _webhook(self, platform: str, path: str, body: bytes, mapper) -> web.Response:
        if not self.sink.ready:
            return self._unavailable(self.sink.reason)
        try:
            results = mapper(parse_json(body), self.mapping)
        except (ValueError, UnicodeDecodeError) as exc:
            return await self._invalid_request(platform, path, body, InvalidRequest(None, f"not JSON ({exc})"))
        except InvalidRequest as exc:
            return await self._invalid_request(platform, path, body, exc)
        return await self._store(platform, path, results)

    # -- storing a request's messages -----------------------------------------------------------
    def _encode(self, result: Result, source: str, path: str, now: int) -> tuple[list, dict]:
        """(records to publish, the message's entry in the answer)."""
        outcome = result.outcome
        entry: dict[str, Any] = {"messageId": result.message_id}
        if isinstance(outcome, Mapped):
            if outcome.ignored:
                return [], {**entry, "status": "ignored", "note": outcome.note}
            try:
                return [(out, self.codec.encode(out.record_name, out.record)) for out in outcome.outputs], \
                    {**entry, "status": "accepted"}
            except Exception as exc:  # noqa: BLE001 - a mapping bug must dead-letter one message, not fail all
                log.exception("collector: a mapped record does not encode")
                outcome = MappingError(None, f"the mapped record does not encode ({type(exc).__name__})")
        letter = dead_letter(f"http:{path}", source, result.raw, outcome.error_class, outcome.field, outcome.reason,
                             now)
        return [(Output(DLQ, source, letter), self.codec.encode("DeadLetter", letter))], \
            {**entry, "status": "rejected", "error": {"class": outcome.error_class, "field": outcome.field,
                                                      "reason": outcome.reason}}

    async def _store(self, source: str, path: str, results: list[Result]) -> web.Response:
        wait = self.limits.take(source, len(results))
        if wait:
            self.metrics.reject("RateLimited")
            return error(429, "rate_limited", f"over the rate limit of source {source!r}; retry in {wait} s",
                         headers={"Retry-After": str(wait)})
        now = int(self.clock() * 1000)
        entries: list[dict] = [{} for _ in results]
        pending: list[tuple[int, Result]] = list(enumerate(results))
        while pending:  # a second round only for messages a concurrent request failed to store
            mine, theirs, records, owned = [], [], [], []
            for i, result in pending:
                records_i, entry = self._encode(result, source, path, now)
                if not records_i:  # ignored: nothing to store, nothing to deduplicate
                    entries[i] = entry
                    continue
                # A rejected message is remembered apart: its retry is not dead-lettered twice, but a
                # corrected message with the same messageId is not taken for a duplicate of it.
                key = result.message_id if entry["status"] == "accepted" else result.message_id + "#rejected"
                claim = self.recent.claim(source, key)
                if claim is True:
                    mine.append((i, entry))
                    owned.append(key)
                    records.extend(records_i)
                elif claim is False:
                    entries[i] = {"messageId": result.message_id, "status": "duplicate"}
                else:
                    theirs.append((i, result, claim))
            try:
                took = await self.sink.publish(records)
            except Unavailable as exc:
                self.recent.settle(source, owned, stored=False)
                return self._unavailable(str(exc))
            self.recent.settle(source, owned, stored=True)
            if records:
                self.metrics.produce_duration.observe(took)
            for out, _ in records:
                self.metrics.records.labels(out.kind).inc()
            for i, entry in mine:
                entries[i] = entry
            pending = []
            for i, result, future in theirs:  # stored by a concurrent request? else ours to store
                if await asyncio.shield(future):
                    entries[i] = {"messageId": result.message_id, "status": "duplicate"}
                else:
                    pending.append((i, result))
        counts = dict.fromkeys(("accepted", "duplicate", "ignored", "rejected"), 0)
        for entry in entries:
            counts[entry["status"]] += 1
            if entry["status"] == "rejected":
                self.metrics.reject(entry["error"]["class"])
        for outcome, n in counts.items():
            self.metrics.outcome(source, outcome, n)
        return web.json_response({"success": True, "accepted": counts["accepted"],
                                  "duplicates": counts["duplicate"], "ignored": counts["ignored"],
                                  "rejected": counts["rejected"], "results": entries})
