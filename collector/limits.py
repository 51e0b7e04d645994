"""Rate limits: a token bucket per source, counted in messages (a batch of 100 costs 100).

A request is let through when the bucket holds at least min(its cost, burst) tokens, and then
takes its whole cost, possibly into debt: a batch larger than the burst still passes when the
bucket is full, and the debt holds back what follows, so the average rate holds. A refused
request is told how long to wait (HTTP 429, Retry-After). The clock is passed in: pure.
"""

from __future__ import annotations

import math
from typing import Callable


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int, now: float):
        self.rate = rate_per_s
        self.burst = burst
        self.tokens = float(burst)
        self.at = now

    def take(self, cost: int, now: float) -> float:
        """0.0 when `cost` tokens were taken; else the seconds to wait before trying again."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        need = min(cost, self.burst)
        if self.tokens >= need:
            self.tokens -= cost
            return 0.0
        return max((need - self.tokens) / self.rate, 0.001)


class RateLimits:
    """One bucket per source, created on first use."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float]):
        self.rate, self.burst, self.clock = rate_per_s, burst, clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, source: str, cost: int) -> int:
        """0 when allowed, else the Retry-After in whole seconds (at least 1)."""
        now = self.clock()
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = TokenBucket(self.rate, self.burst, now)
        wait = bucket.take(cost, now)
        return 0 if wait == 0.0 else max(1, math.ceil(wait))
