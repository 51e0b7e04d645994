"""Prometheus metrics of the collector, served at its `/metrics` (prefix `leadpulse_collector_`).

Labels are bounded: endpoints are route names, sources the configured write-key names (and
`hubspot`, `mautic`), reasons error classes; past a cap new values fold into `other`
(streams.metrics._Bounded), never a message id, contact id or key.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from streams.metrics import CONTENT_TYPE, _Bounded

OUTCOMES = ("accepted", "duplicate", "ignored", "rejected")
#: Request → response (including the broker's acknowledgements): 1 ms for an ignored message up
#: to the acknowledgement timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

__all__ = ["CONTENT_TYPE", "CollectorMetrics"]


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = r = registry or CollectorRegistry()
        self.requests = Counter("leadpulse_collector_requests", "HTTP requests answered, by endpoint and status "
                                "code", ["endpoint", "status"], registry=r)
        self.messages = Counter("leadpulse_collector_messages", "Messages (Segment calls, webhook events) by source "
                                "and outcome: accepted (stored), duplicate (stored before), ignored (nothing for "
                                "leadpulse), rejected (dead-lettered)", ["source", "outcome"], registry=r)
        self.rejected = Counter("leadpulse_collector_rejected", "Messages dead-lettered and requests refused, by "
                                "reason (error class, or Unauthorized, RateLimited, BodyTooLarge, InvalidRequest, "
                                "BrokerUnavailable)", ["reason"], registry=r)
        self.records = Counter("leadpulse_collector_records_produced", "Records acknowledged by the broker, by "
                               "output (events, profiles, identities, accounts, merges, erasures, dlq)", ["output"],
                               registry=r)
        self.request_duration = Histogram("leadpulse_collector_request_duration_seconds", "Request received → "
                                          "response sent (after the broker acknowledged every record)",
                                          ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.produce_duration = Histogram("leadpulse_collector_produce_duration_seconds", "Records of one request "
                                          "handed to the producer → all acknowledged (acks=all)",
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("leadpulse_collector_requests_in_flight", "Requests being processed", registry=r)
        self.ready = Gauge("leadpulse_collector_ready", "1 when the producer is connected to the broker "
                           "(/health/ready answers 200), else 0", registry=r)
        self.source_label = _Bounded(64)
        self.reason_label = _Bounded(64)

    def known_sources(self, sources) -> None:
        """Series at 0 for every configured source before its first message (rate() needs them)."""
        for source in sources:
            for outcome in OUTCOMES:
                self.messages.labels(self.source_label(source), outcome)

    def outcome(self, source: str, outcome: str, n: int = 1) -> None:
        if n:
            self.messages.labels(self.source_label(source), outcome).inc(n)

    def reject(self, reason: str, n: int = 1) -> None:
        if n:
            self.rejected.labels(self.reason_label(reason)).inc(n)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
