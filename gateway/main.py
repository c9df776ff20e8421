"""The HTTP gateway: `uvicorn gateway.main:app` (127.0.0.1:8000 by default, see
`python -m gateway.main`).

Authenticates, validates, produces the command to Kafka and waits for the worker's reply;
reads come from Postgres, as the sink keeps it.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from app.config import Settings, get_settings
from gateway.errors import JsonResponse, install_error_handlers
from gateway.kafka import CommandBus
from gateway.middleware import BodySizeLimit
from gateway.routes import bookings, health, trips
from gateway.security import TokenVerifier

log = logging.getLogger(__name__)

STARTUP_WAIT_SECONDS = 15.0
MAX_BODY_BYTES = 64 * 1024  # a 64-stop trip is a few KB
POOL_MAX_CONNECTIONS = 10


def create_pool(settings: Settings) -> AsyncConnectionPool:
    # open=False: opened in the lifespan; wait=False there so that a gateway started
    # before Postgres still starts (it reports not ready until Postgres answers).
    return AsyncConnectionPool(settings.database_url, min_size=1, max_size=POOL_MAX_CONNECTIONS, open=False,
                               kwargs={"autocommit": True}, name="gateway-reads")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    bus = CommandBus(settings)
    pool = create_pool(settings)
    bus.start()
    await pool.open(wait=False)
    app.state.bus, app.state.pool = bus, pool
    if await bus.wait_ready(STARTUP_WAIT_SECONDS):
        log.info("gateway ready: replies on partition %d", bus.reply_partition)
    else:
        log.warning("reply partition %d not assigned yet; requests get 503 until it is", bus.reply_partition)
    try:
        yield
    finally:
        bus.stop()
        await pool.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="OpenRide Booking",
        version="0.1.0",
        summary="Seat inventory and bookings for shared rides, over a Kafka command log.",
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    # Built here, not in the lifespan: a bad JWT configuration fails at import, loudly.
    app.state.verifier = TokenVerifier.from_settings(settings)
    install_error_handlers(app)
    for module in (trips, bookings, health):
        app.include_router(module.router)
    return app


app = create_app()


if __name__ == "__main__":
    import uvicorn

    current = get_settings()
    uvicorn.run("gateway.main:app", host=current.gateway_host, port=current.gateway_port)
