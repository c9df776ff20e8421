"""Request dependencies (the FastAPI template's `api/deps.py`): the caller, the command
bus and the read side, from the app's state (`gateway.main` fills it; tests hand their
bus to `create_app` and may override `get_pool`).

All are `async def`, even those that never await: FastAPI runs a plain `def` dependency
in its thread pool, a thread hop per dependency per request on the hot path."""

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, Protocol

import psycopg
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from app.config import Settings
from app.domain.commands import Actor, Role
from gateway import audit, metrics
from gateway.dispatch import Dispatcher
from gateway.errors import ApiError, database_unavailable
from gateway.idempotency import IdempotencyStore
from gateway.middleware import RATE_LIMIT_HEADERS
from gateway.ratelimit import RateLimiter
from gateway.reads import Reads
from gateway.schemas import IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_PATTERN
from gateway.security import AuthError, Principal, RoleError

DB_CONNECT_TIMEOUT_SECONDS = 2.0

# A claim outlives the longest a request can wait for its reply, with room to spare.
IN_FLIGHT_MARGIN_SECONDS = 5.0

bearer = HTTPBearer(auto_error=False, bearerFormat="JWT",
                    description="`make token SUB=<user> ROLE=<RIDER|DRIVER|ADMIN|SERVICE>` prints one.")


class Bus(Protocol):
    """What the routes need of gateway.kafka.CommandBus."""

    async def request(self, key: str, command: dict[str, Any], timeout: float) -> dict[str, Any]: ...

    @property
    def replies_assigned(self) -> bool: ...

    def kafka_reachable(self, timeout: float) -> bool: ...

    def publish(self, topic: str, key: str, value: bytes) -> None: ...


async def get_bus(request: Request) -> Bus:
    return request.app.state.bus


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


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The verified caller, who has just spent a token of their rate limit (429 if none)."""
    state = request.app.state
    try:
        if credentials is None:
            raise AuthError("missing_token", "A Bearer token is required.")
        principal = state.verifier.verify(credentials.credentials)
    except AuthError:
        refuse_guessing(request)
        raise
    limiter: RateLimiter = state.limiter
    decision = limiter.take(principal.user_id)
    headers = limiter.headers(decision)
    setattr(request.state, RATE_LIMIT_HEADERS, headers)  # the middleware puts them on the response
    if not decision.allowed:
        metrics.RATE_LIMITED.inc()
        raise ApiError(429, "rate_limited", f"More than {limiter.per_minute} requests per minute; retry after "
                                            f"{decision.retry_after} s.", headers=headers)
    return principal


def refuse_guessing(request: Request) -> None:
    """Requests without a valid token spend their client address's allowance: guessing
    tokens, or hammering the verifier with bad ones, gets 429 like any other flood."""
    limiter: RateLimiter = request.app.state.failed_auth_limiter
    decision = limiter.take(request.client.host if request.client else "unknown")
    if not decision.allowed:
        metrics.RATE_LIMITED.inc()
        raise ApiError(429, "rate_limited", f"Too many requests without a valid token; retry after "
                                            f"{decision.retry_after} s.", headers=limiter.headers(decision))


def acting_in_role(request: Request, principal: Principal, allowed: tuple[Role, ...]) -> Actor:
    """The caller in the strongest allowed role they hold; a refusal (403) is audited."""
    try:
        return principal.acting_as(allowed)
    except RoleError:
        route = request.scope.get("route")
        audit.note_refusal(request, principal, f"{request.method} {getattr(route, 'path', request.url.path)}")
        raise


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def current_principal(request: Request, credentials: Credentials) -> Principal:
    return authenticate(request, credentials)


def acting_as(*allowed: Role) -> Callable[[Principal], Awaitable[Actor]]:
    """A dependency giving the command's actor: the caller in the strongest allowed role
    they hold, or 403."""

    async def actor(request: Request, principal: Annotated[Principal, Depends(current_principal)]) -> Actor:
        return acting_in_role(request, principal, allowed)

    return actor


def idempotency_store(pool: AsyncConnectionPool, settings: Settings) -> IdempotencyStore:
    return IdempotencyStore(pool, timedelta(hours=settings.idempotency_ttl_hours),
                            timedelta(seconds=settings.reply_timeout_seconds + IN_FLIGHT_MARGIN_SECONDS))


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=IDEMPOTENCY_KEY_MAX,
                                              pattern=IDEMPOTENCY_KEY_PATTERN,
                                              description="Repeat it to retry safely (kept 24 h, per user).")]


def dispatcher_as(*allowed: Role) -> Callable[..., Awaitable[Dispatcher]]:
    """A dependency giving the request's way to the command log, acting as the caller in
    the strongest allowed role they hold (or 403). One dependency that reads the app's
    state itself, not a tree of them: FastAPI's resolution costs per dependency, on the
    path every command takes."""

    async def dispatcher(request: Request, credentials: Credentials,
                         idempotency_key: IdempotencyKey = None) -> Dispatcher:
        actor = acting_in_role(request, authenticate(request, credentials), allowed)
        state = request.app.state
        return Dispatcher(request, actor, state.bus, state.idempotency, state.settings.reply_timeout_seconds,
                          idempotency_key, state.holds)

    return dispatcher


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
BusDep = Annotated[Bus, Depends(get_bus)]
ReadsDep = Annotated[Reads, Depends(get_reads)]
Rider = Annotated[Actor, Depends(acting_as(Role.RIDER))]
Admin = Annotated[Actor, Depends(acting_as(Role.ADMIN))]
AsRider = Annotated[Dispatcher, Depends(dispatcher_as(Role.RIDER))]
AsAdmin = Annotated[Dispatcher, Depends(dispatcher_as(Role.ADMIN))]
AsService = Annotated[Dispatcher, Depends(dispatcher_as(Role.SERVICE))]
# The booking's rider (the worker checks ownership), the payments service, or an admin.
AsPayer = Annotated[Dispatcher, Depends(dispatcher_as(Role.RIDER, Role.SERVICE, Role.ADMIN))]
# The trip's driver (the worker checks it is theirs), the route service, or an admin.
AsTripManager = Annotated[Dispatcher, Depends(dispatcher_as(Role.SERVICE, Role.ADMIN, Role.DRIVER))]
AsAnyone = Annotated[Dispatcher, Depends(dispatcher_as(*Role))]
