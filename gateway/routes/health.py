"""Liveness and readiness probes and metrics (unauthenticated, as orchestrators and
scrapers call them). Bounded, since anyone who reaches the port can call them: the
readiness answer is reused for a second (a flood costs one Kafka and one Postgres round
trip a second), and /metrics and /health/ready take from an allowance per client address
far above what a scraper or an orchestrator's probe uses."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Generic, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from psycopg_pool import AsyncConnectionPool

from gateway import metrics
from gateway.deps import Bus, BusDep, get_pool
from gateway.errors import ApiError, JsonResponse, error_body
from gateway.ratelimit import RateLimiter

router = APIRouter(prefix="/health", tags=["health"])
metrics_router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0
REUSE_SECONDS = 1.0
T = TypeVar("T")


class Recent(Generic[T]):
    """The last result of `compute`, reused for `seconds`; callers arriving while it is
    being computed wait for that one computation."""

    def __init__(self, seconds: float = REUSE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.lock = asyncio.Lock()
        self.value: T | None = None
        self.at = float("-inf")

    async def get(self, compute: Callable[[], Awaitable[T]]) -> T:
        async with self.lock:
            if self.value is None or self.clock() - self.at >= self.seconds:
                self.value = await compute()
                self.at = self.clock()
            return self.value


def within_allowance(request: Request) -> None:
    limiter: RateLimiter = request.app.state.ops_limiter
    decision = limiter.take(request.client.host if request.client else "unknown")
    if not decision.allowed:
        raise ApiError(429, "rate_limited", f"Too many calls; retry after {decision.retry_after} s.",
                       headers=limiter.headers(decision))


@router.get("/live")
async def live() -> JsonResponse:
    """The process serves HTTP."""
    return JsonResponse({"status": "UP"})


@router.get("/ready", responses={503: {"description": "Kafka is down; `checks` says what"}})
async def ready(request: Request, bus: BusDep, pool: Annotated[AsyncConnectionPool, Depends(get_pool)]) -> JsonResponse:
    """Ready when Kafka answers metadata requests and the reply partition is assigned:
    commands need nothing else. Postgres down makes the gateway DEGRADED, still ready:
    reads answer 503 with Retry-After meanwhile, and taking the gateway out of service
    would refuse the commands it can still take."""
    within_allowance(request)
    checks = await request.app.state.readiness.get(lambda: readiness(bus, pool))
    if checks["kafka"] and checks["replyConsumer"]:
        return JsonResponse({"status": "UP" if checks["postgres"] else "DEGRADED", "checks": checks})
    down = ", ".join(name for name, up in checks.items() if not up)
    body = error_body(503, "not_ready", f"Not ready: {down}.", checks=checks)
    return JsonResponse(body, status_code=503, headers={"Retry-After": "5"})


async def readiness(bus: Bus, pool: AsyncConnectionPool) -> dict[str, bool]:
    kafka, postgres = await asyncio.gather(kafka_reachable(bus), postgres_reachable(pool))
    return {"kafka": kafka, "replyConsumer": bus.replies_assigned, "postgres": postgres}


async def kafka_reachable(bus: Bus) -> bool:
    return await asyncio.to_thread(bus.kafka_reachable, CHECK_TIMEOUT_SECONDS)


async def postgres_reachable(pool: AsyncConnectionPool) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            async with pool.connection(timeout=CHECK_TIMEOUT_SECONDS) as connection:
                await connection.execute("select 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means not ready
        return False


@metrics_router.get("/metrics", response_class=Response,
                    responses={200: {"content": {"text/plain": {"example": "openride_gateway_commands_in_flight 0.0"}},
                                     "description": "Prometheus text format"}})
async def prometheus_metrics(request: Request) -> Response:
    """Requests, latency histograms, commands in flight, reply timeouts, 429s and
    idempotent replays, in the Prometheus text format (unauthenticated, like the probes:
    expose it to the scraper only)."""
    within_allowance(request)
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
