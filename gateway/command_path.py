"""The command path: the routes that send a command to the worker, served by a pure ASGI
middleware instead of FastAPI's request machinery.

A command route is declared once, as a FastAPI route on a `CommandRouter` (so /docs
shows it like any other), and served here: `CommandRoutes` reads each route function's
signature once at start-up and then, per request, authenticates the caller, checks the
role and the rate limit, validates the path, the Idempotency-Key header and the body with
the same pydantic types FastAPI would use, calls the route function with those values
and the request's `Dispatcher`, and writes its response. No dependency tree is solved,
no Request object is built, errors take the one error shape through the same handlers
as everywhere else (gateway.errors). Everything else (docs, reads, admin reads, probes)
falls through to FastAPI.
"""

import inspect
import json
import logging
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.params import Depends, Path
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.domain.commands import Role
from gateway.deps import IdempotencyKeyHeader, acting_in_role, authenticate, bearer_token
from gateway.dispatch import Dispatcher
from gateway.errors import error_response, handler_for, validation_response

log = logging.getLogger(__name__)

JSON_TYPES = (b"application/json",)


class CommandRouter(APIRouter):
    """An APIRouter whose routes the command path serves (its routes are still included
    in the FastAPI app, which is how they reach the OpenAPI document; a request for one
    of them never gets past `CommandRoutes`)."""


@dataclass(frozen=True, slots=True)
class PathParam:
    name: str  # the route function's parameter
    alias: str  # the name in the path template and in error messages
    check: TypeAdapter


@dataclass(frozen=True, slots=True)
class Body:
    name: str
    check: TypeAdapter
    required: bool


@dataclass(frozen=True, slots=True)
class Operation:
    """One command route, ready to serve."""

    method: str
    path: str  # the template, as metrics and the audit trail name it
    segments: tuple[str | None, ...]  # a literal segment, or None where a path parameter goes
    path_params: tuple[PathParam, ...]
    body: Body | None
    dispatcher: str  # the parameter that receives the Dispatcher
    roles: tuple[Role, ...]
    endpoint: Callable[..., Awaitable[Response]]

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return None
        values = {}
        for part, segment in zip(parts, self.segments, strict=True):
            if segment is None:
                if not part:
                    return None
                values[len(values)] = part
            elif part != segment:
                return None
        return {param.name: values[i] for i, param in enumerate(self.path_params)}


def compile_route(route: BaseRoute) -> Operation:
    """What serving `route` needs, read from its function's signature: path parameters
    (`Annotated[type, Path(...)]`), at most one body parameter (a pydantic model, or an
    optional one) and the Dispatcher parameter (`Annotated[Dispatcher, Depends(dispatcher_as(...))]`)."""
    endpoint = route.endpoint  # type: ignore[attr-defined]
    hints = typing.get_type_hints(endpoint, include_extras=True)
    path_params, body, dispatcher, roles = [], None, None, ()
    for name, parameter in inspect.signature(endpoint).parameters.items():
        annotation = hints[name]
        base, *metadata = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Annotated \
            else (annotation,)
        depends = next((m for m in metadata if isinstance(m, Depends)), None)
        if depends is not None:
            dispatcher, roles = name, depends.dependency.roles  # type: ignore[union-attr]
        elif any(isinstance(m, Path) for m in metadata):
            alias = next(m.alias for m in metadata if isinstance(m, Path)) or name
            path_params.append(PathParam(name, alias, TypeAdapter(annotation)))
        else:  # the body: its type alone (a Body() marker only tells FastAPI where it comes from)
            body = Body(name, TypeAdapter(base), parameter.default is inspect.Parameter.empty)
    if dispatcher is None:
        raise TypeError(f"{endpoint.__name__} takes no Dispatcher: not a command route")
    template = route.path  # type: ignore[attr-defined]
    order = [part[1:-1] for part in template.split("/") if part.startswith("{")]
    by_alias = {param.alias: param for param in path_params}
    segments = tuple(None if part.startswith("{") else part for part in template.split("/"))
    [method] = route.methods  # type: ignore[attr-defined]
    return Operation(method, template, segments, tuple(by_alias[alias] for alias in order), body, dispatcher,
                     roles, endpoint)


class CommandRoutes:
    """The middleware serving the command routes of `routers`; any other request goes on
    to `app`."""

    def __init__(self, app: ASGIApp, routers: tuple[CommandRouter, ...]):
        self.app = app
        self.operations: dict[str, list[Operation]] = {}
        for router in routers:
            for route in router.routes:
                operation = compile_route(route)
                self.operations.setdefault(operation.method, []).append(operation)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self.match(scope["method"], scope["path"])
            if found is not None:
                operation, raw_params = found
                scope["route"] = operation
                response = await serve(operation, raw_params, scope, receive)
                await send({"type": "http.response.start", "status": response.status_code,
                            "headers": response.raw_headers})
                await send({"type": "http.response.body", "body": response.body})
                return
        await self.app(scope, receive, send)

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        candidates = self.operations.get(method)
        if not candidates:
            return None
        parts = path.split("/")
        for operation in candidates:
            params = operation.match(parts)
            if params is not None:
                return operation, params
        return None


async def serve(operation: Operation, raw_params: dict[str, str], scope: Scope, receive: Receive) -> Response:
    try:
        return await answer(operation, raw_params, scope, receive)
    except Exception as error:  # noqa: BLE001 - every failure becomes the one error shape
        handler = handler_for(error)
        if handler is None:
            log.exception("%s %s failed", scope["method"], scope["path"])
            return error_response(500, "internal_error", "An unexpected error occurred.")
        return await handler(None, error)  # type: ignore[arg-type]


async def answer(operation: Operation, raw_params: dict[str, str], scope: Scope, receive: Receive) -> Response:
    headers = request_headers(scope)
    state = scope["app"].state
    principal = authenticate(state, scope, bearer_token(headers.get(b"authorization")))
    actor = acting_in_role(scope, principal, operation.roles)
    errors: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    for param in operation.path_params:
        values[param.name] = checked(param.check, raw_params[param.name], ("path", param.alias), errors)
    key = headers.get(b"idempotency-key")
    if key is not None:
        key = checked(IdempotencyKeyHeader, key.decode("latin-1"), ("header", "Idempotency-Key"), errors)
    body = operation.body
    if body is not None:
        raw = await read_body(receive)
        values[body.name] = parse_body(body, raw, headers.get(b"content-type"), errors)
    if errors:
        return validation_response(errors)
    values[operation.dispatcher] = Dispatcher(scope, actor, state.bus, state.in_flight,
                                              state.settings.reply_timeout_seconds, key, state.holds)
    return await operation.endpoint(**values)


def request_headers(scope: Scope) -> dict[bytes, bytes]:
    """The headers the command path reads (names are lower case in ASGI); the first of
    repeated ones."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in (b"authorization", b"idempotency-key", b"content-type") and name not in found:
            found[name] = value
    return found


def checked(adapter: TypeAdapter, value: Any, loc: tuple[str, ...], errors: list[dict[str, Any]]) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as error:
        errors.extend({**e, "loc": (*loc, *e["loc"])} for e in error.errors())
        return None


async def read_body(receive: Receive) -> bytes:
    """The whole body. The size limit is BodySizeLimit's (outside this middleware), which
    raises an HTTPException from `receive` past it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise StarletteHTTPException(400, "The client went away.")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_body(body: Body, raw: bytes, content_type: bytes | None, errors: list[dict[str, Any]]) -> Any:
    """As FastAPI reads a JSON body: none at all is None (missing, if required); only a
    JSON content type is parsed as JSON, anything else is validated as the bytes it is
    (and refused as not an object)."""
    try:
        if not raw:
            if body.required:
                errors.append({"type": "missing", "loc": ("body",), "msg": "Field required"})
            return None
        if is_json(content_type):
            return validated_json(body.check, raw)
        return body.check.validate_python(raw)
    except ValidationError as error:
        errors.extend({**e, "loc": ("body", *e["loc"])} for e in error.errors())
        return None


def validated_json(check: TypeAdapter, raw: bytes) -> Any:
    """pydantic's own JSON parser, as fast as it gets; JSON it refuses that Python's json
    module reads (a lone surrogate escape, "\\ud800") is validated as Python's reading of
    it, as FastAPI does, so the field that holds it is named (400 validation_failed)."""
    try:
        return check.validate_json(raw)
    except ValidationError as error:
        if not any(e["type"] == "json_invalid" for e in error.errors()):
            raise
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise error from None
        return check.validate_python(parsed)


def is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media in JSON_TYPES or (media.startswith(b"application/") and media.endswith(b"+json"))
