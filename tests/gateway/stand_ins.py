"""Stand-ins for what the gateway talks to in its unit-level tests (see conftest.py): a
command bus that answers as told, the worker's own record handling in this process, and a
pool for the readiness probe; Postgres itself is never reached."""

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from app.config import get_settings
from app.tables.store import TripStore
from app.transport.bus import ReplyTimeout
from app.wire.topics import CONTRACT, REPLAYED, REPLY_PARTITION, REPLY_TO
from app.wire.commands import parse_command
from app.worker.batch import InMemory
from app.worker.processor import Record
from tests.gateway.replies import accepted


class FakeBus:
    """Records each request, checks the worker would accept the command, and answers
    with `answer` (a reply, or an exception to raise)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.answer: Callable[[str, dict[str, Any]], dict[str, Any]] = accepted
        self.replies_assigned = True
        self.reachable = True
        self.published: list[tuple[str, str, dict[str, Any]]] = []
        self.delay = 0.0  # seconds the "worker" takes to answer

    async def request(self, key: str, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        parsed = parse_command(orjson.dumps(command))  # what the worker does first
        assert parsed.key() == key, "the Kafka key must be the one the worker checks"
        self.sent.append((key, command))
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.answer(key, command)

    def kafka_reachable(self, timeout: float) -> bool:
        return self.reachable

    def publish(self, topic: str, key: str, value: bytes) -> None:
        self.published.append((topic, key, orjson.loads(value)))


class Worker:
    """The worker's own record handling (app.worker.batch.InMemory, over in-memory
    tables) standing in for the command bus: each command becomes the next record of one
    partition, handled in arrival order, whichever gateway (TestClient) sent it."""

    def __init__(self) -> None:
        self.processor = InMemory(get_settings().policy(), trips_cached=100)
        self.lock = threading.Lock()
        self.offset = 0
        self.handled: list[dict[str, Any]] = []
        self.delay = 0.0  # seconds each command takes
        self.clock_ms = lambda: int(time.time() * 1000)  # the broker's record time
        self.lose_replies = 0  # the next replies lost on the way back (the command applies)
        self.replies_assigned = True
        self.published: list[tuple[str, str, dict[str, Any]]] = []

    async def request(self, key: str, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        return await asyncio.to_thread(self.handle, key, command)

    def handle(self, key: str, command: dict[str, Any]) -> dict[str, Any]:
        sent: list[tuple[str, bytes, bytes, int | None, dict[str, bytes]]] = []
        with self.lock:
            time.sleep(self.delay)
            record = Record(CONTRACT.commands, 0, self.offset, self.clock_ms(), key.encode(), orjson.dumps(command),
                            {REPLY_TO: b"replies", REPLY_PARTITION: b"0"})
            self.offset += 1
            self.processor.process(record, lambda *out: sent.append(out))
            self.processor.flush()
            self.handled.append(command)
            lost, self.lose_replies = self.lose_replies > 0, max(0, self.lose_replies - 1)
        _, _, value, _, headers = next(out for out in sent if out[0] == "replies")
        if lost:
            raise ReplyTimeout(command["commandId"])
        reply = orjson.loads(value)
        if headers.get(REPLAYED) == b"true":
            reply[REPLAYED] = True
        return reply

    @property
    def store(self) -> TripStore:
        """The trip states the worker holds (every trip stays cached here)."""
        return self.processor.processor.store

    def bookings(self) -> int:
        """Bookings created on every trip."""
        return sum(loaded.state.booked for loaded in self.store.cache.values())

    def kafka_reachable(self, timeout: float) -> bool:
        return True

    def publish(self, topic: str, key: str, value: bytes) -> None:
        self.published.append((topic, key, orjson.loads(value)))


# Where the unit tests' gateway looks for Postgres: a socket that is never there, so that
# a read fails at once (503) instead of reaching whatever listens on the default port.
NO_DATABASE = "postgresql://openride@/openride?host=/nonexistent/openride-unit-tests"


class FakePool:
    """Enough of psycopg_pool.AsyncConnectionPool for /health/ready."""

    def __init__(self) -> None:
        self.up = True

    def connection(self, timeout: float | None = None) -> "FakePool":
        return self

    async def __aenter__(self) -> "FakePool":
        if not self.up:
            raise OSError("postgres down")
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def execute(self, _sql: str) -> None:
        return None


def audited(client, bus) -> list[tuple[str, str, dict[str, Any]]]:
    """What the audit trail has published, once its pending batch is written."""
    client.portal.call(client.app.state.audit.flush)
    return bus.published
