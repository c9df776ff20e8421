"""BASELINE, for the benchmark only: the create-booking rules done the way most teams
would, as a yardstick for the Kafka-native design. Not part of OpenRide.

A FastAPI service over Postgres. Each booking runs one transaction that locks the trip
row (`SELECT … FOR UPDATE`), so bookings on one trip are serialized by the row lock
instead of by a log. The rules are not re-implemented: the transaction loads the trip
and its leg bitmasks into a `TripState` and asks the same pure core (`app.domain.decide`)
for the decision, so the two systems differ only in how they serialize and store.

Two variants (BASELINE_MODE):
- `bare`: the booking transaction and nothing else; the rider is named by an X-Rider
  header, an Idempotency-Key is matched against the bookings it created.
- `like-for-like`: the work per request the OpenRide gateway does too: the rider's JWT
  verified (with the gateway's own TokenVerifier, which remembers verified tokens), an
  idempotency record in Postgres written in the booking's transaction (same key and
  request: the stored response; another request: 422), and an audit line per request.

Left out on purpose (the benchmark does not exercise them): holds expiring, payments.
Run: `uvicorn --factory bench.baseline.app:create_app` with BASELINE_DATABASE_URL (and
BASELINE_MODE, BASELINE_POOL_SIZE) set; they and the settings are read when it starts.
"""

import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import orjson
import psycopg
from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import Response
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from app.config import Settings, get_settings
from app.domain import inventory
from app.domain.booking import Status
from app.domain.commands import Actor, CreateBooking, Role
from app.domain.decide import Accepted, decide
from app.domain.policy import Policy
from app.domain.state import TripState
from app.domain.trip import trip_key as trip_key_of
from app.tables.codec import trip_from_json
from gateway.dispatch import fingerprint
from gateway.security import AuthError, TokenVerifier

SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_trips (
    trip_key text PRIMARY KEY,
    trip     jsonb  NOT NULL,
    legs     jsonb  NOT NULL,   -- seat bitmask per leg (the same representation as the core)
    booked   int    NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS baseline_bookings (
    id              text PRIMARY KEY,
    trip_key        text NOT NULL,
    rider_id        text NOT NULL,
    idempotency_key text,
    first_leg       int  NOT NULL,
    last_leg        int  NOT NULL,
    seat_numbers    int[] NOT NULL,
    total_minor     bigint NOT NULL,
    status          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rider_id, idempotency_key)
);
CREATE TABLE IF NOT EXISTS baseline_idempotency (
    user_id         text  NOT NULL,
    idempotency_key text  NOT NULL,
    fingerprint     text  NOT NULL,
    status          int   NOT NULL,
    body            bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, idempotency_key)
);
"""
audit = logging.getLogger("baseline.audit")


@dataclass(frozen=True)
class BaselineSettings:
    """One baseline service's configuration, read when it starts."""

    like_for_like: bool
    database_url: str
    pool_size: int
    policy: Policy
    verifier: TokenVerifier

    @classmethod
    def from_environment(cls, settings: Settings) -> "BaselineSettings":
        return cls(like_for_like=os.environ.get("BASELINE_MODE", "bare") == "like-for-like",
                   database_url=os.environ.get("BASELINE_DATABASE_URL", settings.database_url),
                   pool_size=int(os.environ.get("BASELINE_POOL_SIZE", "10")),
                   policy=settings.policy(), verifier=TokenVerifier.from_settings(settings))


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class CreateIn(Wire):
    route_id: str
    travel_date: date
    origin_stop_id: str
    destination_stop_id: str
    seats_booked: int = Field(ge=0, le=1000)


class CancelIn(Wire):
    reason: str = ""


@asynccontextmanager
async def lifespan(app: FastAPI):
    config: BaselineSettings = app.state.baseline
    if config.like_for_like:  # one JSON line per request on stderr (the service's log file)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        audit.addHandler(handler)
        audit.setLevel(logging.INFO)
        audit.propagate = False
    async with AsyncConnectionPool(config.database_url, min_size=config.pool_size, max_size=config.pool_size,
                                   open=False) as pool:
        async with pool.connection() as conn:
            await conn.execute(SCHEMA)
        app.state.pool = pool
        yield


router = APIRouter()


def create_app() -> FastAPI:
    app = FastAPI(title="BASELINE (row locks), benchmark only", lifespan=lifespan)
    app.state.baseline = BaselineSettings.from_environment(get_settings())
    app.include_router(router)
    return app


def answer(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@router.get("/health")
async def health() -> Response:
    return answer(200, {"status": "UP"})


def rider_of(config: BaselineSettings, x_rider: str | None, authorization: str | None) -> str | None:
    """The caller: the X-Rider header (bare), or the verified JWT's subject (like-for-like)."""
    if not config.like_for_like:
        return x_rider
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        return config.verifier.verify(token).user_id
    except AuthError:
        return None


class Idempotency:
    """Like-for-like only (`recorded`): the request's record in baseline_idempotency, read and
    written in the booking's transaction."""

    def __init__(self, recorded: bool, user_id: str, key: str | None, method: str, path: str, body: Any):
        self.recorded, self.user_id, self.key = recorded, user_id, key
        self.fingerprint = fingerprint(method, path, body)

    async def recall(self, conn: psycopg.AsyncConnection) -> Response | None:
        if not self.recorded or self.key is None:
            return None
        row = await (await conn.execute(
            "SELECT fingerprint, status, body FROM baseline_idempotency WHERE user_id = %s AND idempotency_key = %s",
            (self.user_id, self.key))).fetchone()
        if row is None:
            return None
        if row[0] != self.fingerprint:
            return answer(422, {"code": "idempotency_key_reused"})
        return Response(bytes(row[2]), status_code=row[1], media_type="application/json")

    async def remember(self, conn: psycopg.AsyncConnection, response: Response) -> Response:
        if self.recorded and self.key is not None:
            await conn.execute(
                "INSERT INTO baseline_idempotency (user_id, idempotency_key, fingerprint, status, body)"
                " VALUES (%s, %s, %s, %s, %s)",
                (self.user_id, self.key, self.fingerprint, response.status_code, bytes(response.body)))
        return response


def audited(config: BaselineSettings, rider: str, action: str, response: Response, **target: Any) -> Response:
    if config.like_for_like:
        audit.info(orjson.dumps({"at": time.time(), "userId": rider, "role": "RIDER", "action": action, **target,
                                 "status": response.status_code}).decode())
    return response


@router.post("/v1/bookings")
async def create_booking(request: Request, body: CreateIn, x_rider: Annotated[str | None, Header()] = None,
                         authorization: Annotated[str | None, Header()] = None,
                         idempotency_key: Annotated[str | None, Header()] = None) -> Response:
    config: BaselineSettings = request.app.state.baseline
    rider = rider_of(config, x_rider, authorization)
    if rider is None:
        return answer(401, {"code": "unauthorized"})
    trip_key = trip_key_of(body.route_id, body.travel_date)
    command_id = f"{rider}/{idempotency_key or os.urandom(8).hex()}"
    command = CreateBooking(command_id, Actor(rider, Role.RIDER), body.origin_stop_id, body.destination_stop_id,
                            body.seats_booked)
    kept = Idempotency(config.like_for_like, rider, idempotency_key, "POST", "/v1/bookings",
                       body.model_dump(by_alias=True, mode="json"))
    async with request.app.state.pool.connection() as conn, conn.transaction():
        response = await book(conn, trip_key, rider, idempotency_key, command, kept, config.policy)
    return audited(config, rider, "create_booking", response, tripKey=trip_key)


async def book(conn: psycopg.AsyncConnection, trip_key: str, rider: str, idempotency_key: str | None,
               command: CreateBooking, kept: Idempotency, policy: Policy) -> Response:
    row = await (await conn.execute(
        "SELECT trip, legs, booked FROM baseline_trips WHERE trip_key = %s FOR UPDATE", (trip_key,))).fetchone()
    if row is None:
        return answer(404, {"code": "trip_not_found"})
    if kept.recorded:
        replay = await kept.recall(conn)
        if replay is not None:
            return replay
    elif idempotency_key is not None:
        seen = await (await conn.execute(
            "SELECT id, seat_numbers, status FROM baseline_bookings WHERE rider_id = %s AND idempotency_key = %s",
            (rider, idempotency_key))).fetchone()
        if seen is not None:
            return answer(201, {"booking": {"id": seen[0], "seatNumbers": seen[1], "status": seen[2]}})
    state = TripState(trip=trip_from_json(row[0]), trip_version=1, legs=list(row[1]), booked=row[2])
    decision = decide(state, command, int(time.time() * 1000), policy)
    if not isinstance(decision, Accepted):
        refused = answer(409 if decision.code.value == "seats_unavailable" else 400, {"code": decision.code.value})
        return await kept.remember(conn, refused)
    booking = decision.events[0].booking  # type: ignore[attr-defined]
    inventory.occupy(state.legs, booking.first_leg, booking.last_leg, booking.seats)
    await conn.execute(
        "INSERT INTO baseline_bookings (id, trip_key, rider_id, idempotency_key, first_leg, last_leg,"
        " seat_numbers, total_minor, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (booking.booking_id, trip_key, rider, idempotency_key, booking.first_leg, booking.last_leg,
         list(booking.seats), booking.total, Status.HELD.value))
    await conn.execute("UPDATE baseline_trips SET legs = %s, booked = booked + 1 WHERE trip_key = %s",
                       (Jsonb(state.legs), trip_key))
    created = answer(201, {"booking": {"id": booking.booking_id, "seatNumbers": list(booking.seats),
                                       "status": Status.HELD.value}})
    return await kept.remember(conn, created)


@router.post("/v1/bookings/{booking_id}/cancel")
async def cancel_booking(request: Request, booking_id: str, body: CancelIn,
                         x_rider: Annotated[str | None, Header()] = None,
                         authorization: Annotated[str | None, Header()] = None,
                         idempotency_key: Annotated[str | None, Header()] = None) -> Response:
    config: BaselineSettings = request.app.state.baseline
    rider = rider_of(config, x_rider, authorization)
    if rider is None:
        return answer(401, {"code": "unauthorized"})
    kept = Idempotency(config.like_for_like, rider, idempotency_key, "POST", f"/v1/bookings/{booking_id}/cancel",
                       body.model_dump())
    async with request.app.state.pool.connection() as conn, conn.transaction():
        response = await cancel(conn, booking_id, rider, kept)
    return audited(config, rider, "cancel_booking", response, bookingId=booking_id)


async def cancel(conn: psycopg.AsyncConnection, booking_id: str, rider: str, kept: Idempotency) -> Response:
    found = await (await conn.execute(
        "SELECT trip_key, rider_id FROM baseline_bookings WHERE id = %s", (booking_id,))).fetchone()
    if found is None or found[1] != rider:
        return answer(404, {"code": "booking_not_found"})
    # Lock order: trip row first, as in create, so the two never deadlock.
    legs = (await (await conn.execute(
        "SELECT legs FROM baseline_trips WHERE trip_key = %s FOR UPDATE", (found[0],))).fetchone())[0]
    replay = await kept.recall(conn)
    if replay is not None:
        return replay
    booking = await (await conn.execute(
        "SELECT first_leg, last_leg, seat_numbers, status FROM baseline_bookings WHERE id = %s",
        (booking_id,))).fetchone()
    if booking[3] != Status.HELD.value:
        refused = answer(409, {"code": "invalid_transition"})
        return await kept.remember(conn, refused)
    inventory.release(legs, booking[0], booking[1], booking[2])
    await conn.execute("UPDATE baseline_bookings SET status = %s WHERE id = %s",
                       (Status.CANCELLED.value, booking_id))
    await conn.execute("UPDATE baseline_trips SET legs = %s WHERE trip_key = %s", (Jsonb(legs), found[0]))
    cancelled = answer(200, {"booking": {"id": booking_id, "status": Status.CANCELLED.value}})
    return await kept.remember(conn, cancelled)


def seed_trips(database_url: str, trips: list[tuple[str, dict[str, Any]]]) -> None:
    """Setup, not timed: the trips the benchmark books on, as `trip_to_json` documents."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO baseline_trips (trip_key, trip, legs) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [(key, Jsonb(trip), Jsonb([0] * (len(trip["stops"]) - 1))) for key, trip in trips])
