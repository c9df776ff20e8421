"""ASGI middleware of the gateway."""

import itertools
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import audit, metrics
from gateway.errors import error_response

TOO_LARGE = "The request body is too large."
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Where the caller's rate-limit headers wait for the response (set by gateway.deps).
RATE_LIMIT_HEADERS = "rate_limit_headers"


class BodySizeLimit:
    """Refuses request bodies over `max_bytes` with the one error shape (413).

    FastAPI's own `max_body_size` answers with a plain-text body from outside the
    exception handlers; this one answers a declared oversize Content-Length at once and
    stops a chunked body by raising an HTTPException from `receive`, which FastAPI
    re-raises to our handlers instead of turning it into a generic 400."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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


class RequestContext:
    """Per request: an X-Request-ID (the client's, if sane, else a new one) echoed in the
    response; the rate-limit headers of the caller's bucket; the request metrics; and,
    once the response is out, the audit entry the route noted, handed to `trail`."""

    def __init__(self, app: ASGIApp, trail: audit.AuditTrail):
        self.app = app
        self.trail = trail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
                for name, value in state.get(RATE_LIMIT_HEADERS, {}).items():
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
