"""The open-loop load generator: requests leave at fixed intended instants whatever the
system answers, and latency is measured from the intended instant, so a system that
falls behind shows its queue in the latency instead of slowing the generator down.

Three targets share one interface (`submit(op) -> Result`): commands produced straight to
the command topic (the upstream-service path), HTTP through the gateway, and HTTP to the
row-lock baseline. The scenario decides what each request is.
"""

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from app.config import Settings
from app.domain.trip import trip_key
from app.wire.topics import REPLY_PARTITION, REPLY_TO, Topics
from bench.http1 import ConnectionLost, Pool
from app.transport.bus import next_batch
from app.transport.clients import command_producer_config, reply_consumer_config
from gateway.security import mint_token

REQUEST_TIMEOUT_S = 10.0
STOPS = tuple(f"S{i:02d}" for i in range(10))
CANCEL_REASON = "plans changed, sorry"
CANCEL_BODY = orjson.dumps({"reason": CANCEL_REASON})
SEAT_COUNTS = (1, 1, 1, 2, 2, 3, 4)


# -- what is asked ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TripSpec:
    route_id: str
    travel_date: date
    capacity: int = 50

    @property
    def key(self) -> str:
        return trip_key(self.route_id, self.travel_date)

    def body(self) -> dict[str, Any]:
        """The trip as the route service publishes it (TripIn, camelCase)."""
        return {
            "timezone": "Africa/Lagos", "departureTime": "09:00", "capacity": self.capacity, "currency": "NGN",
            "stops": [{"stopId": stop, "offsetMinutes": 30 * i} for i, stop in enumerate(STOPS)],
            "legFares": ["500.00"] * (len(STOPS) - 1),
        }


@dataclass(frozen=True, slots=True)
class Create:
    trip: TripSpec
    rider: str
    origin: str
    destination: str
    seats: int
    key: str  # idempotency key / command id


@dataclass(frozen=True, slots=True)
class Cancel:
    trip: TripSpec
    rider: str
    booking_id: str
    key: str


Op = Create | Cancel


@dataclass(slots=True)
class Result:
    status: str  # "ok", "rejected" (a business answer), "error" (timeout, 5xx, transport)
    booking_id: str | None = None
    detail: str | None = None


def make_trips(prefix: str, count: int, capacity: int = 50) -> list[TripSpec]:
    travel_date = date.today() + timedelta(days=30)
    return [TripSpec(f"{prefix}-{i:04d}", travel_date, capacity) for i in range(count)]


@dataclass
class Scenario:
    """Creates on random journeys (1-4 seats), and cancels of bookings this scenario made,
    so a hot trip keeps selling seats freed by cancels instead of just filling up."""

    name: str
    trips: list[TripSpec]
    cancel_share: float
    seed: int = 7
    live: list[tuple[TripSpec, str, str]] = field(default_factory=list)  # (trip, rider, booking id)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def next_op(self) -> Op:
        rng = self.rng
        if self.live and rng.random() < self.cancel_share:
            trip, rider, booking_id = self.live.pop(rng.randrange(len(self.live)))
            return Cancel(trip, rider, booking_id, uuid.uuid4().hex)
        origin = rng.randrange(len(STOPS) - 1)
        destination = rng.randrange(origin + 1, len(STOPS))
        return Create(rng.choice(self.trips), f"rider-{rng.randrange(100_000)}", STOPS[origin], STOPS[destination],
                      rng.choice(SEAT_COUNTS), uuid.uuid4().hex)

    def on_result(self, op: Op, result: Result) -> None:
        if isinstance(op, Create) and result.status == "ok" and result.booking_id:
            self.live.append((op.trip, op.rider, result.booking_id))


def hot_trip(prefix: str) -> Scenario:
    return Scenario("hot", make_trips(prefix, 1), cancel_share=0.4)


def spread(prefix: str) -> Scenario:
    return Scenario("spread", make_trips(prefix, 1000), cancel_share=0.3)


# -- command documents (the wire format of app/wire/commands.py) ------------------------


def actor(user_id: str, role: str = "RIDER") -> dict[str, str]:
    return {"userId": user_id, "role": role}


def publish_trip_command(trip: TripSpec, command_id: str) -> dict[str, Any]:
    return {"v": 1, "type": "publish_trip", "commandId": command_id, "actor": actor("route-svc", "SERVICE"),
            "routeId": trip.route_id, "travelDate": trip.travel_date.isoformat(), "trip": trip.body()}


def create_command(op: Create) -> dict[str, Any]:
    return {"v": 1, "type": "create_booking", "commandId": op.key, "actor": actor(op.rider),
            "routeId": op.trip.route_id, "travelDate": op.trip.travel_date.isoformat(),
            "originStopId": op.origin, "destinationStopId": op.destination, "seatsBooked": op.seats}


def cancel_command(op: Cancel) -> dict[str, Any]:
    return {"v": 1, "type": "cancel_booking", "commandId": op.key, "actor": actor(op.rider),
            "bookingId": op.booking_id, "reason": CANCEL_REASON}


def create_body(op: Create) -> dict[str, Any]:
    return {"routeId": op.trip.route_id, "travelDate": op.trip.travel_date.isoformat(),
            "originStopId": op.origin, "destinationStopId": op.destination, "seatsBooked": op.seats}


# -- targets ------------------------------------------------------------------------------


def reply_end(consumer: Consumer, partition: TopicPartition, timeout_s: float = 60) -> int:
    """Where the replies end; a topic created moments ago may have no leader yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return consumer.get_watermark_offsets(partition, timeout=10)[1]
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class DirectKafka:
    """Produces commands to booking.commands (murmur2 keys, like the gateway) with reply
    headers naming one partition of booking.replies, which a thread reads."""

    name = "direct"

    def __init__(self, settings: Settings, reply_partition: int | None = None):
        self.reply_partition = settings.reply_partitions - 1 if reply_partition is None else reply_partition
        self.producer = Producer({**command_producer_config(settings), "linger.ms": 2})
        self.topics = Topics.of(settings)
        self.headers = [(REPLY_TO, self.topics.replies.encode()),
                        (REPLY_PARTITION, str(self.reply_partition).encode())]
        self.pending: dict[str, asyncio.Future] = {}
        self.on_reply: Callable[[dict[str, Any], bytes], None] | None = None
        self._settings = settings
        self._stopping = threading.Event()
        self._assigned = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._read_replies, daemon=True, name="bench-replies")
        self._thread.start()
        await asyncio.to_thread(self._assigned.wait, 30)

    async def stop(self) -> None:
        self._stopping.set()
        self.producer.flush(10)
        await asyncio.to_thread(self._thread.join, 10)

    def _read_replies(self) -> None:
        consumer = Consumer(reply_consumer_config(self._settings))
        partition = TopicPartition(self.topics.replies, self.reply_partition)
        end = reply_end(consumer, partition)
        consumer.assign([TopicPartition(self.topics.replies, self.reply_partition, end)])
        consumer.consume(1, 0)
        self._assigned.set()
        try:
            while not self._stopping.is_set():
                replies = []
                for message in next_batch(consumer):
                    if message.error() is None and message.key() is not None:
                        replies.append(message.value())
                        self.producer.poll(0)
                if replies and self._loop is not None:
                    self._loop.call_soon_threadsafe(self._resolve, replies)
                self.producer.poll(0)
        finally:
            consumer.close()

    def _resolve(self, replies: list[bytes]) -> None:
        for raw in replies:
            body = orjson.loads(raw)
            if self.on_reply is not None:
                self.on_reply(body, raw)
            future = self.pending.pop(body.get("commandId"), None)
            if future is not None and not future.done():
                future.set_result(body)

    async def request(self, key: str, command: dict[str, Any], timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        self.pending[command["commandId"]] = future
        self.producer.produce(self.topics.commands, key=key.encode(), value=orjson.dumps(command), headers=self.headers)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop(command["commandId"], None)

    async def submit(self, op: Op) -> Result:
        command = create_command(op) if isinstance(op, Create) else cancel_command(op)
        try:
            body = await self.request(op.trip.key, command)
        except TimeoutError:
            return Result("error", detail="timeout")
        return reply_result(body)


def reply_result(body: dict[str, Any]) -> Result:
    if body.get("ok"):
        return Result("ok", booking_id=(body.get("booking") or {}).get("id"))
    return Result("rejected", detail=body.get("code"))


class Http:
    """POST /v1/bookings (and /v1/bookings/{id}/cancel) over keep-alive connections
    (bench/http1.py: aiohttp cost more CPU per request than the gateway it measured).
    `identify` gives each rider's headers: a JWT, or X-Rider for the bare baseline."""

    def __init__(self, name: str, base_url: str, identify: Callable[[str], dict[str, str]],
                 connections: int = 200):
        self.name = name
        self.pool = Pool(base_url, connections)
        self.identify = identify

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.pool.close()

    async def submit(self, op: Op) -> Result:
        headers = {**self.identify(op.rider), "Idempotency-Key": op.key, "Content-Type": "application/json"}
        if isinstance(op, Create):
            raw = self.pool.render("POST", "/v1/bookings", headers, orjson.dumps(create_body(op)))
        else:
            raw = self.pool.render("POST", f"/v1/bookings/{op.booking_id}/cancel", headers, CANCEL_BODY)
        try:
            status, payload = await self.pool.request(raw, REQUEST_TIMEOUT_S)
        except (OSError, ConnectionLost, TimeoutError) as error:
            return Result("error", detail=type(error).__name__)
        if status in (200, 201):
            # A create answers {"booking": {...}}; a cancel answers the booking itself.
            return Result("ok", booking_id=orjson.loads(payload)["booking"]["id"] if isinstance(op, Create) else None)
        if 400 <= status < 500 and status != 429:
            return Result("rejected", detail=str(status))
        return Result("error", detail=str(status))


def jwt_identity(settings: Settings) -> Callable[[str], dict[str, str]]:
    """A rider's bearer header, minted once per rider as `make token` mints it."""
    tokens: dict[str, dict[str, str]] = {}

    def identify(rider: str) -> dict[str, str]:
        if rider not in tokens:
            token = mint_token(rider, ["RIDER"], 6 * 3600, settings.jwt_algorithm, settings.jwt_secret,
                               settings.jwt_audience, settings.jwt_issuer)
            tokens[rider] = {"Authorization": f"Bearer {token}"}
        return tokens[rider]

    return identify


def rider_header(rider: str) -> dict[str, str]:
    return {"X-Rider": rider}


# -- one step at one rate -------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    intended: float  # loop time the request was due
    done: float  # loop time the answer came
    status: str

    @property
    def latency(self) -> float:
        return self.done - self.intended


async def run_step(target, scenario: Scenario, rate: float, duration_s: float) -> tuple[list[Sample], float]:
    """Offers `rate` requests/s for `duration_s`, then waits for every answer (each has
    its own timeout). Returns the samples and the step's start (loop time)."""
    loop = asyncio.get_running_loop()
    count = max(1, int(rate * duration_s))
    start = loop.time() + 0.05
    samples: list[Sample] = []

    async def one(op: Op, intended: float) -> None:
        result = await target.submit(op)
        samples.append(Sample(intended, loop.time(), result.status))
        scenario.on_result(op, result)

    tasks = []
    for i in range(count):
        intended = start + i / rate
        delay = intended - loop.time()
        if delay > 0.001:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scenario.next_op(), intended)))
    await asyncio.gather(*tasks)
    return samples, start


async def publish_trips(direct: DirectKafka, trips: list[TripSpec]) -> None:
    """Publishes trips as publish_trip commands and waits until each is accepted."""
    replies = await asyncio.gather(*(
        direct.request(trip.key, publish_trip_command(trip, f"trip-{trip.key}"), timeout=60) for trip in trips))
    refused = [r for r in replies if not r.get("ok")]
    if refused:
        raise RuntimeError(f"{len(refused)} trips not published, e.g. {refused[0]}")
