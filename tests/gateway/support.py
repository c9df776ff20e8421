"""Test doubles and data for the gateway's unit-level tests (see conftest.py)."""

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import orjson

from app.worker.batch import InMemory
from app.worker.processor import Record
from app.config import get_settings
from app.wire import topics
from app.wire.commands import parse_command
from app.tables.store import TripStore
from app.transport.bus import ReplyTimeout
from tests.support.scenario import TRAVEL_DATE, TripLog, unique_prefix
from tests.support.sink_write import apply

_far_days = itertools.count()

TRIP = {
    "timezone": "Africa/Lagos",
    "departureTime": "08:00:00",
    "capacity": 4,
    "currency": "NGN",
    "stops": [{"stopId": "A", "offsetMinutes": 0}, {"stopId": "B", "offsetMinutes": 30},
              {"stopId": "C", "offsetMinutes": 60}],
    "legFares": ["1500.00", 1000],
    "driverId": "driver-1",
}
BOOKING_REQUEST = {"routeId": "R1", "travelDate": "2030-01-15", "originStopId": "A",
                   "destinationStopId": "C", "seatsBooked": 2}


def booking_snapshot(command: dict[str, Any], booking_id: str = "R1.20300115.ABCDEFGHIJKLMNOP") -> dict[str, Any]:
    """The booking body a worker would reply with for this create_booking command."""
    return {
        "id": booking_id, "bookingReference": "BK20300115ABCDEF", "riderId": command["actor"]["userId"],
        "driverId": "driver-1", "routeId": command["routeId"], "originStopId": command["originStopId"],
        "destinationStopId": command["destinationStopId"], "travelDate": command["travelDate"],
        "departureTime": "08:00:00", "departureAt": "2030-01-15T07:00:00.000Z",
        "seatsBooked": command["seatsBooked"], "seatNumbers": list(range(1, command["seatsBooked"] + 1)),
        "pricePerSeat": "2500.00", "fare": "5000.00", "platformFee": "250.00", "totalPrice": "5250.00",
        "currency": "NGN", "status": "HELD", "paymentId": None, "paymentStatus": None,
        "cancellationReason": None, "cancelledAt": None, "refundAmount": "0.00", "refundStatus": None,
        "bookingSource": command["source"], "createdAt": "2030-01-01T10:00:00.000Z",
        "updatedAt": "2030-01-01T10:00:00.000Z", "expiresAt": "2030-01-01T10:10:00.000Z",
        "confirmedAt": None, "version": 1,
    }


# The status a booking has after each accepted booking command.
STATUS_AFTER = {"initiate_payment": "PAYMENT_INITIATED", "payment_succeeded": "CONFIRMED", "payment_failed": "HELD",
                "cancel_booking": "CANCELLED", "check_in": "CHECKED_IN", "complete": "COMPLETED",
                "refund_done": "REFUNDED"}
STORED_REQUEST = {"actor": {"userId": "rider-1"}, "routeId": "R1", "originStopId": "A", "destinationStopId": "C",
                  "travelDate": "2030-01-15", "seatsBooked": 1, "source": "API"}


ENTRY_ID = "R1.20300115.QRSTUVWXYZ234567"
# The status an entry has after each accepted command on it.
ENTRY_STATUS_AFTER = {"join_waitlist": "WAITING", "leave_waitlist": "LEFT", "accept_offer": "ACCEPTED"}


def entry_snapshot(command: dict[str, Any], entry_id: str = ENTRY_ID) -> dict[str, Any]:
    """The entry body a worker would reply with for this command on a waiting list."""
    status = ENTRY_STATUS_AFTER[command["type"]]
    return {
        "id": command.get("entryId", entry_id), "riderId": command["actor"]["userId"], "routeId": "R1",
        "travelDate": "2030-01-15", "originStopId": command.get("originStopId", "A"),
        "destinationStopId": command.get("destinationStopId", "C"), "seatsBooked": command.get("seatsBooked", 1),
        "joinOrder": 1, "position": 1 if status == "WAITING" else None, "status": status,
        "seatNumbers": [] if status == "WAITING" else [3], "joinedAt": "2030-01-01T10:00:00.000Z",
        "updatedAt": "2030-01-01T10:05:00.000Z", "offeredAt": None if status == "WAITING" else "2030-01-01T10:03:00.000Z",
        "offerExpiresAt": None if status == "WAITING" else "2030-01-01T10:18:00.000Z",
        "bookingId": "R1.20300115.ABCDEFGHIJKLMNOP" if status == "ACCEPTED" else None,
        "version": {"WAITING": 1, "LEFT": 2, "ACCEPTED": 3}[status],
    }


def accepted(key: str, command: dict[str, Any]) -> dict[str, Any]:
    """A worker-like successful reply for the command."""
    reply: dict[str, Any] = {"v": 1, "commandId": command["commandId"], "ok": True, "code": None, "message": None}
    if command["type"] in ENTRY_STATUS_AFTER:
        reply["entry"] = entry_snapshot(command)
    if command["type"] == "accept_offer":
        reply["booking"] = {**booking_snapshot(STORED_REQUEST), "seatNumbers": [3]}
    elif command["type"] == "query_seat_map":
        reply["seats"] = [{"seatNumber": n, "free": n != 2} for n in range(1, 5)]
    elif command["type"] == "create_booking":
        reply["booking"] = booking_snapshot(command)
    elif command["type"] in STATUS_AFTER:
        reply["booking"] = {**booking_snapshot(STORED_REQUEST, command["bookingId"]),
                            "status": STATUS_AFTER[command["type"]], "version": 2}
    elif command["type"] == "query_availability":
        reply["availability"] = [{"fromStopId": "A", "toStopId": "B", "free": 3, "held": 1, "sold": 0},
                                 {"fromStopId": "B", "toStopId": "C", "free": 4, "held": 0, "sold": 0}]
    if command["type"] in ("publish_trip", "cancel_trip"):
        reply["tripVersion"] = 1
    return reply


def rejected(code: str) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    def answer(_key: str, command: dict[str, Any]) -> dict[str, Any]:
        return {"v": 1, "commandId": command["commandId"], "ok": False, "code": code, "message": f"{code}!"}
    return answer


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
            record = Record(topics.COMMANDS, 0, self.offset, self.clock_ms(), key.encode(), orjson.dumps(command),
                            {topics.REPLY_TO: b"replies", topics.REPLY_PARTITION: b"0"})
            self.offset += 1
            self.processor.process(record, lambda *out: sent.append(out))
            self.processor.flush()
            self.handled.append(command)
            lost, self.lose_replies = self.lose_replies > 0, max(0, self.lose_replies - 1)
        _, _, value, _, headers = next(out for out in sent if out[0] == "replies")
        if lost:
            raise ReplyTimeout(command["commandId"])
        reply = orjson.loads(value)
        if headers.get(topics.REPLAYED) == b"true":
            reply[topics.REPLAYED] = True
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


def new_key() -> str:
    """An Idempotency-Key no other test uses (the store lives as long as the session's database)."""
    return f"key-{uuid.uuid4()}"


def trip_log(name: str, travel_date: date = TRAVEL_DATE, capacity: int = 48) -> TripLog:
    """A trip driven through the real core (tests/support/scenario.py), unique to this run."""
    return TripLog(unique_prefix(name), travel_date=travel_date, capacity=capacity)


def store_log(database_url: str, log: TripLog) -> TripLog:
    """Writes the trip's events to Postgres through the sink's own write path."""
    apply(database_url, log.records)
    return log


def far_date() -> date:
    """A travel date no other test of this session writes (statistics sum over dates; the
    session's database is fresh)."""
    return date(2090, 1, 1) + timedelta(days=next(_far_days))


def mixed(log: TripLog) -> TripLog:
    """Bookings in most statuses, by three riders."""
    for rider in ("rider-a", "rider-b"):
        log.pay(log.book(rider, seats=2))
    ridden = log.book("rider-c")
    log.pay(ridden)
    log.check_in(ridden)
    log.complete(ridden)
    refunded = log.book("rider-a")
    log.pay(refunded)
    log.cancel(refunded)
    log.refund(refunded)
    owed = log.book("rider-b", to_stop="ibadan")
    log.pay(owed)
    log.cancel(owed)
    log.book("rider-c")  # stays HELD
    return log
