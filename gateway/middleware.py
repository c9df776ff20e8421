"""ASGI middleware of the gateway."""

import itertools
import re
import time
import uuid
from urllib.parse import unquote_to_bytes

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import audit, metrics
from gateway.errors import error_response, validation_failed

TOO_LARGE = "The request body is too large."
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Where the caller's rate-limit headers wait for the response (set by gateway.deps).
RATE_LIMIT_HEADERS = "rate_limit_headers"
# Far above what a client of this API sends (a token, a key, a few standard headers).
MAX_HEADERS = 64
MAX_HEADER_BYTES = 16 * 1024
CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")
# Every response may carry personal data: no caching on the way, no content sniffing.
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


class HttpMiddleware:
    """Pure ASGI middleware that acts on HTTP requests (`handle`) and passes anything else
    (lifespan, websockets) through."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class RefuseUnsafeRequests(HttpMiddleware):
    """Answers before any route runs: too many or too large headers (431), and control
    characters in the path or query string (400). A NUL reaching a query would make
    Postgres fail the request with a 500 (and such text has no business in an id)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope["headers"]
        if len(headers) > MAX_HEADERS or sum(len(name) + len(value) for name, value in headers) > MAX_HEADER_BYTES:
            message = f"At most {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes in all."
            await error_response(431, "headers_too_large", message)(scope, receive, send)
            return
        where = unsafe_part(scope)
        if where is not None:
            await validation_failed({where: "must not contain control characters"})(scope, receive, send)
            return
        await self.app(scope, receive, send)


def unsafe_part(scope: Scope) -> str | None:
    """"path" or "query" if that part, percent-decoded, holds a control character."""
    if CONTROL_BYTES.search(scope["path"].encode("utf-8", "surrogateescape")):
        return "path"
    if CONTROL_BYTES.search(unquote_to_bytes(scope.get("query_string", b""))):
        return "query"
    return None


class BodySizeLimit(HttpMiddleware):
    """Refuses request bodies over `max_bytes` with the one error shape (413).

    FastAPI's own `max_body_size` answers with a plain-text body from outside the
    exception handlers; this one answers a declared oversize Content-Length at once and
    stops a chunked body by raising an HTTPException from `receive`, which FastAPI
    re-raises to our handlers instead of turning it into a generic 400."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        super().__init__(app)
        self.max_bytes = max_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(413, "payload_too_large", TOO_LARGE)(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, TOO_LARGE)
            return message

        return counted


class RequestContext(HttpMiddleware):
    """Per request: an X-Request-ID (the client's, if sane, else a new one) echoed in the
    response; the rate-limit headers of the caller's bucket; the request metrics; and,
    once the response is out, the audit entry the route noted, handed to `trail`."""

    def __init__(self, app: ASGIApp, trail: audit.AuditTrail):
        super().__init__(app)
        self.trail = trail

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.setdefault("state", {})
        request_id = state["request_id"] = request_id_of(Headers(scope=scope))
        started = time.perf_counter()
        status = 500  # if the app raises before it answers

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                for name, value in (*state.get(RATE_LIMIT_HEADERS, {}).items(), *SECURITY_HEADERS.items()):
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            metrics.observe_request(scope["method"], getattr(route, "path", metrics.UNMATCHED), status,
                                    time.perf_counter() - started)
            entry = audit.entry_of(state)
            if entry is not None:
                self.trail.record(entry, request_id, status)


# A new request id: this process's random prefix and a counter (unique without a call for
# fresh randomness per request).
_PROCESS_PREFIX = uuid.uuid4().hex[:16]
_request_numbers = itertools.count()


def request_id_of(headers: Headers) -> str:
    given = headers.get("x-request-id", "")
    return given if REQUEST_ID.fullmatch(given) else f"{_PROCESS_PREFIX}{next(_request_numbers):016x}"
