"""BASELINE, for the benchmark only: the create-booking rules done the way most teams
would, as a yardstick for the Kafka-native design. Not part of OpenRide.

A FastAPI service over Postgres. Each booking runs one transaction that locks the trip
row (`SELECT … FOR UPDATE`), so bookings on one trip are serialized by the row lock
instead of by a log. The rules are not re-implemented: the transaction loads the trip
and its leg bitmasks into a `TripState` and asks the same pure core (`app.domain.decide`)
for the decision, so the two systems differ only in how they serialize and store.

Left out on purpose (the benchmark does not exercise them): holds expiring, payments,
authentication. Run: `uvicorn bench.baseline.app:app` with BASELINE_DATABASE_URL set.
"""

import os
import time
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
import psycopg
from fastapi import FastAPI, Header
from fastapi.responses import Response
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from app.config import get_settings
from app.domain import inventory
from app.domain.booking import Status
from app.domain.commands import Actor, CreateBooking, Role
from app.domain.decide import Accepted, decide
from app.domain.state import TripState
from app.tables.codec import trip_from_json

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
"""
POOL_SIZE = int(os.environ.get("BASELINE_POOL_SIZE", "10"))
policy = get_settings().policy()


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class CreateIn(Wire):
    route_id: str
    travel_date: str
    origin_stop_id: str
    destination_stop_id: str
    seats_booked: int = Field(ge=0, le=1000)


class CancelIn(Wire):
    reason: str = ""


@asynccontextmanager
async def lifespan(app: FastAPI):
    url = os.environ.get("BASELINE_DATABASE_URL", get_settings().database_url)
    async with AsyncConnectionPool(url, min_size=POOL_SIZE, max_size=POOL_SIZE, open=False) as pool:
        async with pool.connection() as conn:
            await conn.execute(SCHEMA)
        app.state.pool = pool
        yield


app = FastAPI(title="BASELINE (row locks), benchmark only", lifespan=lifespan)


def answer(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@app.get("/health")
async def health() -> Response:
    return answer(200, {"status": "UP"})


@app.post("/v1/bookings")
async def create_booking(body: CreateIn, x_rider: Annotated[str, Header()],
                         idempotency_key: Annotated[str | None, Header()] = None) -> Response:
    trip_key = f"{body.route_id}:{body.travel_date}"
    command_id = f"{x_rider}/{idempotency_key or os.urandom(8).hex()}"
    command = CreateBooking(command_id, Actor(x_rider, Role.RIDER), body.origin_stop_id, body.destination_stop_id,
                            body.seats_booked)
    async with app.state.pool.connection() as conn, conn.transaction():
        row = await (await conn.execute(
            "SELECT trip, legs, booked FROM baseline_trips WHERE trip_key = %s FOR UPDATE", (trip_key,))).fetchone()
        if row is None:
            return answer(404, {"code": "trip_not_found"})
        if idempotency_key is not None:
            seen = await (await conn.execute(
                "SELECT id, seat_numbers, status FROM baseline_bookings WHERE rider_id = %s AND idempotency_key = %s",
                (x_rider, idempotency_key))).fetchone()
            if seen is not None:
                return answer(201, {"booking": {"id": seen[0], "seatNumbers": seen[1], "status": seen[2]}})
        state = TripState(trip=trip_from_json(row[0]), trip_version=1, legs=list(row[1]), booked=row[2])
        decision = decide(state, command, int(time.time() * 1000), policy)
        if not isinstance(decision, Accepted):
            return answer(409 if decision.code.value == "seats_unavailable" else 400, {"code": decision.code.value})
        booking = decision.events[0].booking  # type: ignore[attr-defined]
        inventory.occupy(state.legs, booking.first_leg, booking.last_leg, booking.seats)
        await conn.execute(
            "INSERT INTO baseline_bookings (id, trip_key, rider_id, idempotency_key, first_leg, last_leg,"
            " seat_numbers, total_minor, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (booking.booking_id, trip_key, x_rider, idempotency_key, booking.first_leg, booking.last_leg,
             list(booking.seats), booking.total, Status.HELD.value))
        await conn.execute("UPDATE baseline_trips SET legs = %s, booked = booked + 1 WHERE trip_key = %s",
                           (Jsonb(state.legs), trip_key))
    return answer(201, {"booking": {"id": booking.booking_id, "seatNumbers": list(booking.seats),
                                    "status": Status.HELD.value}})


@app.post("/v1/bookings/{booking_id}/cancel")
async def cancel_booking(booking_id: str, body: CancelIn, x_rider: Annotated[str, Header()]) -> Response:
    async with app.state.pool.connection() as conn, conn.transaction():
        found = await (await conn.execute(
            "SELECT trip_key, rider_id FROM baseline_bookings WHERE id = %s", (booking_id,))).fetchone()
        if found is None or found[1] != x_rider:
            return answer(404, {"code": "booking_not_found"})
        # Lock order: trip row first, as in create, so the two never deadlock.
        legs = (await (await conn.execute(
            "SELECT legs FROM baseline_trips WHERE trip_key = %s FOR UPDATE", (found[0],))).fetchone())[0]
        booking = await (await conn.execute(
            "SELECT first_leg, last_leg, seat_numbers, status FROM baseline_bookings WHERE id = %s",
            (booking_id,))).fetchone()
        if booking[3] != Status.HELD.value:
            return answer(409, {"code": "invalid_transition"})
        inventory.release(legs, booking[0], booking[1], booking[2])
        await conn.execute("UPDATE baseline_bookings SET status = %s WHERE id = %s",
                           (Status.CANCELLED.value, booking_id))
        await conn.execute("UPDATE baseline_trips SET legs = %s WHERE trip_key = %s", (Jsonb(legs), found[0]))
    return answer(200, {"booking": {"id": booking_id, "status": Status.CANCELLED.value}})


def seed_trips(database_url: str, trips: list[tuple[str, dict[str, Any]]]) -> None:
    """Setup, not timed: the trips the benchmark books on, as `trip_to_json` documents."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO baseline_trips (trip_key, trip, legs) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [(key, Jsonb(trip), Jsonb([0] * (len(trip["stops"]) - 1))) for key, trip in trips])
