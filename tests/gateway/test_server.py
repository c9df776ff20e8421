"""The gateway's uvicorn protocol: a response's writes go out in one send."""

import asyncio

from gateway.server import CoalescingTransport


class Recorded:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_of_one_turn_go_out_together_and_a_close_sends_what_is_pending():
    async def scenario() -> Recorded:
        underlying = Recorded()
        transport = CoalescingTransport(underlying, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 201 Created\r\n\r\n")
        transport.write(b'{"booking": {}}')
        assert underlying.sent == []
        await asyncio.sleep(0)
        assert underlying.sent == [b'HTTP/1.1 201 Created\r\n\r\n{"booking": {}}']
        transport.write(b"last")
        transport.close()
        assert underlying.sent[-1] == b"last" and underlying.closed
        assert transport.get_extra_info("peername") == "info:peername"
        return underlying

    asyncio.run(scenario())
