"""A minimal HTTP/1.1 client for the load generator: keep-alive connections, one request
at a time on each, requests pre-rendered as bytes, responses read by Content-Length.

aiohttp spent more CPU per request than the gateway it measured; this does only what the
benchmark needs (JSON over keep-alive to servers that always send Content-Length), so the
generator is not what limits a run (bench/run.py reports its CPU per request).
"""

import asyncio
from collections import deque
from urllib.parse import urlsplit

HEADER_END = b"\r\n\r\n"


class ConnectionLost(Exception):
    pass


class Http1(asyncio.Protocol):
    """One keep-alive connection; `request` may only be awaited by one caller at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionLost(str(exc)))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(HEADER_END)
        if end < 0:
            return
        length = content_length(self.buffer, end)
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        status = int(self.buffer[9:12])
        body = bytes(self.buffer[end + 4:total])
        del self.buffer[:total]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((status, body))

    def request(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter


def content_length(buffer: bytearray, header_end: int) -> int:
    start = buffer.find(b"\r\ncontent-length:", 0, header_end)
    if start < 0:
        start = buffer.find(b"\r\nContent-Length:", 0, header_end)
    if start < 0:
        raise ValueError("a response without Content-Length")
    start += 17
    stop = buffer.find(b"\r\n", start, header_end + 2)
    return int(buffer[start:stop])


class Pool:
    """Up to `limit` keep-alive connections to one server."""

    def __init__(self, base_url: str, limit: int):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.limit = limit
        self.idle: deque[Http1] = deque()
        self.opened = 0
        self.waiting: deque[asyncio.Future[Http1]] = deque()

    def render(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
        """A request's bytes, to send with `request` (as often as wanted)."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def request(self, raw: bytes, timeout: float) -> tuple[int, bytes]:
        """`raw` from `render`. Raises TimeoutError, ConnectionLost, OSError."""
        connection = await self._acquire()
        try:
            async with asyncio.timeout(timeout):
                answer = await connection.request(raw)
        except BaseException:
            self._discard(connection)
            raise
        self._release(connection)
        return answer

    async def close(self) -> None:
        while self.idle:
            connection = self.idle.popleft()
            if connection.transport is not None:
                connection.transport.close()

    async def _acquire(self) -> Http1:
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:
                return connection
            self.opened -= 1
        if self.opened < self.limit:
            self.opened += 1
            try:
                _, connection = await asyncio.get_running_loop().create_connection(Http1, self.host, self.port)
            except BaseException:
                self.opened -= 1
                raise
            return connection
        waiter: asyncio.Future[Http1] = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        return await waiter

    def _release(self, connection: Http1) -> None:
        if connection.closed:
            self.opened -= 1
            return
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self.idle.append(connection)

    def _discard(self, connection: Http1) -> None:
        """A connection whose answer never came is closed: a late answer would be read as
        the next request's."""
        if connection.transport is not None:
            connection.transport.close()
        self.opened -= 1
        while self.waiting and self.opened < self.limit:
            waiter = self.waiting.popleft()
            if not waiter.done():
                self.opened += 1
                asyncio.get_running_loop().create_task(self._open_for(waiter))
                return

    async def _open_for(self, waiter: asyncio.Future[Http1]) -> None:
        try:
            _, connection = await asyncio.get_running_loop().create_connection(Http1, self.host, self.port)
        except OSError as error:
            self.opened -= 1
            if not waiter.done():
                waiter.set_exception(error)
            return
        if waiter.done():
            self._release(connection)
        else:
            waiter.set_result(connection)
