"""Rate limiting: a token bucket per user, RATE_LIMIT_PER_MINUTE (100) refilled evenly,
holding at most RATE_LIMIT_BURST (20) tokens; a request takes one token or gets 429.

Per process, on purpose: no shared store on the hot path. With N gateway processes (uvicorn
workers, replicas) a user may get up to N times the limit; an operator who needs a strict
global limit puts it in front of the gateway (ingress / API gateway), keyed the same way.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

# Buckets of users who went quiet are dropped once this many are kept: a full bucket
# holds no information (a new one starts full).
PRUNE_ABOVE = 10_000


@dataclass(slots=True)
class Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int  # whole tokens left after this request
    retry_after: int  # seconds until a token is available (0 when allowed)
    reset: int  # seconds until the bucket is full again

    def headers(self, per_minute: int, burst: int) -> dict[str, str]:
        """RateLimit-* (IETF draft), plus the names the Java service's clients read."""
        headers = {
            "RateLimit-Limit": str(per_minute),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
            "RateLimit-Policy": f"{per_minute};w=60;burst={burst}",
            "X-Rate-Limit-Remaining": str(self.remaining),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
            headers["X-Rate-Limit-Retry-After-Seconds"] = str(self.retry_after)
        return headers


class RateLimiter:
    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic):
        if per_minute < 1 or burst < 1:
            raise ValueError("rate limit and burst must be at least 1")
        self.per_minute = per_minute
        self.burst = burst
        self.rate = per_minute / 60.0  # tokens per second
        self.clock = clock
        self._buckets: dict[str, Bucket] = {}

    def take(self, user_id: str) -> Decision:
        now = self.clock()
        bucket = self._refilled(user_id, now)
        allowed = bucket.tokens >= 1
        if allowed:
            bucket.tokens -= 1
        missing = self.burst - bucket.tokens
        return Decision(
            allowed=allowed,
            remaining=int(bucket.tokens),
            retry_after=0 if allowed else math.ceil((1 - bucket.tokens) / self.rate),
            reset=math.ceil(missing / self.rate),
        )

    def headers(self, decision: Decision) -> dict[str, str]:
        return decision.headers(self.per_minute, self.burst)

    def _refilled(self, user_id: str, now: float) -> Bucket:
        bucket = self._buckets.get(user_id)
        if bucket is None:
            if len(self._buckets) >= PRUNE_ABOVE:
                self._prune(now)
            bucket = self._buckets[user_id] = Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {user: b for user, b in self._buckets.items() if now - b.updated < full_after}
