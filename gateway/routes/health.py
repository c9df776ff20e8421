"""Liveness and readiness probes (unauthenticated, as orchestrators call them)."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from psycopg_pool import AsyncConnectionPool

from gateway import metrics
from gateway.deps import Bus, BusDep, get_pool
from gateway.errors import JsonResponse, error_body

router = APIRouter(prefix="/health", tags=["health"])
metrics_router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/live")
async def live() -> JsonResponse:
    """The process serves HTTP."""
    return JsonResponse({"status": "UP"})


@router.get("/ready", responses={503: {"description": "a dependency is down; `checks` says which"}})
async def ready(bus: BusDep, pool: Annotated[AsyncConnectionPool, Depends(get_pool)]) -> JsonResponse:
    """Kafka answers metadata requests, the reply partition is assigned, Postgres answers."""
    kafka, postgres = await asyncio.gather(kafka_reachable(bus), postgres_reachable(pool))
    checks = {"kafka": kafka, "replyConsumer": bus.replies_assigned, "postgres": postgres}
    if all(checks.values()):
        return JsonResponse({"status": "UP", "checks": checks})
    down = ", ".join(name for name, up in checks.items() if not up)
    body = error_body(503, "not_ready", f"Not ready: {down}.", checks=checks)
    return JsonResponse(body, status_code=503, headers={"Retry-After": "5"})


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
async def prometheus_metrics() -> Response:
    """Requests, latency histograms, commands in flight, reply timeouts, 429s and
    idempotent replays, in the Prometheus text format (unauthenticated, like the probes:
    expose it to the scraper only)."""
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
