"""uvicorn's httptools protocol, with a response's writes coalesced into one send.

uvicorn writes a response's head and its body with a `transport.write` each: two send
system calls, two TCP segments, two wake-ups of the client. `HttpProtocol` gives the
connection a transport that keeps what is written during one turn of the event loop and
sends it at the end of the turn, in one call (a command's response is written within one
turn). Used with `uvicorn --http gateway.server:HttpProtocol` (scripts/services.sh,
deploy/entrypoint.sh, devstack/stack.py).
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes of one event-loop turn go out as one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self.transport = transport
        self.loop = loop
        self.pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append(data)

    def flush(self) -> None:
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending.clear()
        if not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class HttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
