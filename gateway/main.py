"""The HTTP gateway: `uvicorn --factory gateway.main:create_app` (127.0.0.1:8000 by
default, see `python -m gateway.main`); `create_app` wires it from the settings.

Authenticates, validates, produces the command to Kafka and waits for the worker's reply;
reads come from Postgres, as the sink keeps it.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from psycopg_pool import AsyncConnectionPool

from app.config import Settings, get_settings
from app.wire.topics import Topics
from gateway.audit import AuditTrail
from gateway.command_path import CommandRoutes
from gateway.deps import Bus
from gateway.dispatch import InFlight
from gateway.errors import JsonResponse, install_error_handlers
from gateway.holds import HoldLedger
from app.transport.bus import CommandBus
from gateway.middleware import BodySizeLimit, RefuseUnsafeRequests, RequestContext
from gateway.ratelimit import RateLimiter
from gateway.routes import admin, bookings, health, trips, waitlist
from gateway.routes.health import Recent
from gateway.security import TokenVerifier

log = logging.getLogger(__name__)

STARTUP_WAIT_SECONDS = 15.0
MAX_BODY_BYTES = 64 * 1024  # a 64-stop trip is a few KB
POOL_MAX_CONNECTIONS = 10
# /metrics and /health/ready per client address: a scraper or a probe calls a few times a minute.
OPS_CALLS_PER_MINUTE, OPS_CALLS_BURST = 120, 30
EXPOSED_HEADERS = ["Location", "Retry-After", "X-Request-ID", "RateLimit-Limit", "RateLimit-Remaining",
                   "RateLimit-Reset", "RateLimit-Policy", "X-Rate-Limit-Remaining", "X-Rate-Limit-Retry-After-Seconds",
                   "Idempotent-Replayed"]
DESCRIPTION = """
Bookings for shared rides over a Kafka command log: writes are commands answered by the
booking worker, reads come from Postgres (kept by the sink, a moment behind).

**Auth**: `Authorization: Bearer <JWT>`; `sub` is the user, roles from `role` or `roles`
(RIDER, DRIVER, ADMIN, SERVICE). `make token SUB=rider-1 ROLE=RIDER` prints one.

**Errors**: one shape, `{status, error, code, message, timestamp}` (+ `errors` per field on
400). 404 also for a booking that is not yours.

**Idempotency**: send `Idempotency-Key` (or `idempotencyKey` in the create body) on any
POST/PUT; per user and trip (the trip booked, or the trip of the booking named), kept
with the trip's state. Same key and request: the original status and body
(`Idempotent-Replayed: true`), also for a duplicate sent while the first is in flight;
another request on the same trip: 422. After a 503 retry with the same key: it is safe.

**Rate limit**: 100 requests per minute per user, bursts of 20, per gateway process; 429
with `Retry-After`; `RateLimit-*` headers on every authenticated response.
"""


def log_to_stderr() -> None:
    """uvicorn configures its own loggers only: without this the gateway's INFO lines (the
    audit trail's record of last resort among them) would go nowhere. A process that
    configured logging itself (a test runner) keeps its own."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def create_pool(settings: Settings) -> AsyncConnectionPool:
    # open=False: opened in the lifespan; wait=False there so that a gateway started
    # before Postgres still starts (it reports not ready until Postgres answers).
    return AsyncConnectionPool(settings.database_url, min_size=1, max_size=POOL_MAX_CONNECTIONS, open=False,
                               kwargs={"autocommit": True}, name="gateway-reads")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    log_to_stderr()
    own_bus = app.state.given_bus is None
    bus = CommandBus(settings) if own_bus else app.state.given_bus
    pool = create_pool(settings)
    if own_bus:
        bus.start()
    await pool.open(wait=False)
    app.state.bus, app.state.pool = bus, pool
    app.state.audit.publisher = bus
    if not own_bus or await bus.wait_ready(STARTUP_WAIT_SECONDS):
        log.info("gateway ready")
    else:
        log.warning("reply partition %d not assigned yet; requests get 503 until it is", bus.reply_partition)
    try:
        yield
    finally:
        app.state.audit.flush()
        if own_bus:
            bus.stop()
        await pool.close()


def create_app(settings: Settings | None = None, bus: Bus | None = None) -> FastAPI:
    """The gateway. `bus` replaces the Kafka command bus (the unit tests hand in theirs)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="OpenRide Booking",
        version="0.1.0",
        summary="Seat inventory and bookings for shared rides, over a Kafka command log.",
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JsonResponse,
        # No OpenTelemetry here (Prometheus at /metrics): FastAPI would otherwise look up its
        # providers, environment variables included, on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings, app.state.given_bus = settings, bus
    # Built here, not in the lifespan: a bad JWT configuration fails at start, loudly.
    app.state.verifier = TokenVerifier.from_settings(settings)
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    app.state.in_flight = InFlight()
    app.state.failed_auth_limiter = RateLimiter(settings.failed_auth_per_minute, settings.failed_auth_burst)
    app.state.holds = HoldLedger(settings.hold_limit_seats_per_rider)
    app.state.ops_limiter = RateLimiter(OPS_CALLS_PER_MINUTE, OPS_CALLS_BURST)
    app.state.readiness = Recent()
    # Added innermost first: RequestContext sees every request, also those refused early;
    # the command routes are served by CommandRoutes, inside every other middleware.
    command_routers = (trips.commands, bookings.commands, waitlist.commands, admin.commands)
    app.add_middleware(CommandRoutes, routers=command_routers)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(RefuseUnsafeRequests)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=[o.strip() for o in settings.cors_origins.split(",")],
                           allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
                           expose_headers=EXPOSED_HEADERS, max_age=600)
    app.state.audit = AuditTrail(Topics.of(settings).audit)
    app.add_middleware(RequestContext, trail=app.state.audit)
    install_error_handlers(app)
    for router in (*command_routers, trips.router, bookings.router, waitlist.router, admin.router, health.router):
        app.include_router(router)
    app.include_router(health.metrics_router)
    return app


if __name__ == "__main__":
    import uvicorn

    current = get_settings()
    uvicorn.run("gateway.main:create_app", factory=True, host=current.gateway_host, port=current.gateway_port,
                http="gateway.server:HttpProtocol")
