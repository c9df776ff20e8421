"""ASGI middleware of the gateway."""

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import error_response

TOO_LARGE = "The request body is too large."


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
