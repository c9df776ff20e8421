"""Request dependencies (the FastAPI template's `api/deps.py`): the caller, the command
bus and the read side, from the app's state (`gateway.main` fills it; tests hand their
bus to `create_app` and may override `get_pool`), and `authenticate`, which the command
path (gateway.command_path) calls too.

All are `async def`, even those that never await: FastAPI runs a plain `def` dependency
in its thread pool, a thread hop per dependency per request."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import psycopg
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field, TypeAdapter
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.datastructures import State
from starlette.types import Scope

from app.domain.commands import Actor, Role
from app.transport.bus import Bus
from gateway import audit, metrics
from gateway.dispatch import Dispatcher
from gateway.errors import ApiError, database_unavailable
from gateway.middleware import RATE_LIMIT_HEADERS
from gateway.ratelimit import RateLimiter
from gateway.reads import Reads
from gateway.schemas import IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_PATTERN
from gateway.security import AuthError, Principal, RoleError

DB_CONNECT_TIMEOUT_SECONDS = 2.0

bearer = HTTPBearer(auto_error=False, bearerFormat="JWT",
                    description="`make token SUB=<user> ROLE=<RIDER|DRIVER|ADMIN|SERVICE>` prints one.")


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


def bearer_token(authorization: bytes | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, read as HTTPBearer reads it."""
    if not authorization:
        return None
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def authenticate(app_state: State, scope: Scope, token: str | None) -> Principal:
    """The verified caller, who has just spent a token of their rate limit (429 if none).
    The rate-limit headers go to the request's state, for the middleware to put on the
    response."""
    try:
        if token is None:
            raise AuthError("missing_token", "A Bearer token is required.")
        principal = app_state.verifier.verify(token)
    except AuthError:
        refuse_guessing(app_state, scope)
        raise
    limiter: RateLimiter = app_state.limiter
    decision = limiter.take(principal.user_id)
    headers = limiter.headers(decision)
    scope.setdefault("state", {})[RATE_LIMIT_HEADERS] = headers
    if not decision.allowed:
        metrics.RATE_LIMITED.inc()
        raise ApiError(429, "rate_limited", f"More than {limiter.per_minute} requests per minute; retry after "
                                            f"{decision.retry_after} s.", headers=headers)
    return principal


def refuse_guessing(app_state: State, scope: Scope) -> None:
    """Requests without a valid token spend their client address's allowance: guessing
    tokens, or hammering the verifier with bad ones, gets 429 like any other flood."""
    limiter: RateLimiter = app_state.failed_auth_limiter
    client = scope.get("client")
    decision = limiter.take(client[0] if client else "unknown")
    if not decision.allowed:
        metrics.RATE_LIMITED.inc()
        raise ApiError(429, "rate_limited", f"Too many requests without a valid token; retry after "
                                            f"{decision.retry_after} s.", headers=limiter.headers(decision))


def acting_in_role(scope: Scope, principal: Principal, allowed: tuple[Role, ...]) -> Actor:
    """The caller in the strongest allowed role they hold; a refusal (403) is audited."""
    try:
        return principal.acting_as(allowed)
    except RoleError:
        route = scope.get("route")
        audit.note_refusal(scope.setdefault("state", {}), principal,
                           f"{scope['method']} {getattr(route, 'path', scope['path'])}")
        raise


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def current_principal(request: Request, credentials: Credentials) -> Principal:
    return authenticate(request.app.state, request.scope, credentials.credentials if credentials else None)


def acting_as(*allowed: Role) -> Callable[[Principal], Awaitable[Actor]]:
    """A dependency giving the command's actor: the caller in the strongest allowed role
    they hold, or 403."""

    async def actor(request: Request, principal: Annotated[Principal, Depends(current_principal)]) -> Actor:
        return acting_in_role(request.scope, principal, allowed)

    return actor


IdempotencyKeyText = Annotated[str, Field(min_length=1, max_length=IDEMPOTENCY_KEY_MAX,
                                          pattern=IDEMPOTENCY_KEY_PATTERN)]
IdempotencyKeyHeader = TypeAdapter(IdempotencyKeyText)
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=IDEMPOTENCY_KEY_MAX,
                                              pattern=IDEMPOTENCY_KEY_PATTERN,
                                              description="Repeat it to retry safely (per user and trip).")]


class ServedByTheCommandPath(Exception):
    """A command route reached FastAPI: gateway.command_path is not installed."""


def dispatcher_as(*allowed: Role) -> Callable[..., Awaitable[Dispatcher]]:
    """Marks a command route's Dispatcher parameter: the request's way to the command log,
    acting as the caller in the strongest of `allowed` they hold (or 403).

    gateway.command_path builds the Dispatcher itself (authentication, rate limit, role,
    Idempotency-Key) and never lets FastAPI resolve this dependency; FastAPI reads its
    parameters for the OpenAPI document only (the Bearer scheme, the Idempotency-Key header)."""

    async def dispatcher(credentials: Credentials, idempotency_key: IdempotencyKey = None) -> Dispatcher:
        raise ServedByTheCommandPath(allowed)

    dispatcher.roles = allowed  # type: ignore[attr-defined]
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
