"""Request dependencies (the FastAPI template's `api/deps.py`): settings, the caller, the
command bus and the read side. Tests override `get_bus`, `get_reads` and `get_pool`.

All are `async def`, even those that never await: FastAPI runs a plain `def` dependency
in its thread pool, a thread hop per dependency per request on the hot path."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Protocol

import psycopg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from app.config import Settings, get_settings
from app.domain.commands import Actor, Role
from gateway.reads import Reads, database_unavailable
from gateway.security import AuthError, Principal, TokenVerifier

DB_CONNECT_TIMEOUT_SECONDS = 2.0

bearer = HTTPBearer(auto_error=False, bearerFormat="JWT",
                    description="`make token SUB=<user> ROLE=<RIDER|DRIVER|ADMIN|SERVICE>` prints one.")


class Bus(Protocol):
    """What the routes need of gateway.kafka.CommandBus."""

    async def request(self, key: str, command: dict[str, Any], timeout: float) -> dict[str, Any]: ...

    @property
    def replies_assigned(self) -> bool: ...

    def kafka_reachable(self, timeout: float) -> bool: ...


async def get_bus(request: Request) -> Bus:
    return request.app.state.bus


async def get_verifier(request: Request) -> TokenVerifier:
    return request.app.state.verifier


async def get_pool(request: Request) -> AsyncConnectionPool:
    return request.app.state.pool


async def get_db(pool: Annotated[AsyncConnectionPool, Depends(get_pool)]) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection for the request; Postgres down is a 503, not a 500."""
    try:
        async with pool.connection(timeout=DB_CONNECT_TIMEOUT_SECONDS) as connection:
            yield connection
    except (PoolTimeout, psycopg.OperationalError) as error:
        raise database_unavailable() from error


async def get_reads(connection: Annotated[psycopg.AsyncConnection, Depends(get_db)]) -> Reads:
    return Reads(connection)


async def current_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    verifier: Annotated[TokenVerifier, Depends(get_verifier)],
) -> Principal:
    if credentials is None:
        raise AuthError("missing_token", "A Bearer token is required.")
    return verifier.verify(credentials.credentials)


def acting_as(*allowed: Role) -> Callable[[Principal], Awaitable[Actor]]:
    """A dependency giving the command's actor: the caller in the strongest allowed role
    they hold, or 403."""

    async def actor(principal: Annotated[Principal, Depends(current_principal)]) -> Actor:
        return principal.acting_as(allowed)

    return actor


async def settings() -> Settings:
    return get_settings()


SettingsDep = Annotated[Settings, Depends(settings)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
BusDep = Annotated[Bus, Depends(get_bus)]
ReadsDep = Annotated[Reads, Depends(get_reads)]
Rider = Annotated[Actor, Depends(acting_as(Role.RIDER))]
TripManager = Annotated[Actor, Depends(acting_as(Role.SERVICE, Role.ADMIN, Role.DRIVER))]
