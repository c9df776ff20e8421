"""Commands as the upstream services send them (JSON, as on the command topic), for trips
of the test route's shape (LAG - IBD - OYO) on TRAVEL_DATE."""

import base64
import random
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from app.domain.ids import booking_id_of
from app.domain.trip import trip_key as domain_trip_key


TRAVEL_DATE = (date.today() + timedelta(days=30)).isoformat()


SERVICE = {"userId": "route-service", "role": "SERVICE"}


PAYMENTS = {"userId": "payments", "role": "SERVICE"}


DRIVER = {"userId": "driver-1", "role": "DRIVER"}


def rider(name: str) -> dict[str, str]:
    return {"userId": name, "role": "RIDER"}


def command_id() -> str:
    return uuid.uuid4().hex


def publish_trip(route_id: str, capacity: int = 4, driver: str = "driver-1") -> dict[str, Any]:
    return {
        "type": "publish_trip", "commandId": command_id(), "actor": SERVICE, "routeId": route_id,
        "travelDate": TRAVEL_DATE,
        "trip": {"timezone": "Africa/Lagos", "departureTime": "09:00", "capacity": capacity, "currency": "NGN",
                 "driverId": driver,
                 "stops": [{"stopId": "LAG", "offsetMinutes": 0}, {"stopId": "IBD", "offsetMinutes": 90},
                           {"stopId": "OYO", "offsetMinutes": 180}],
                 "legFares": ["2500.00", "1500.00"]},
    }


def create_booking(route_id: str, who: str, seats: int = 1, origin: str = "LAG",
                   destination: str = "OYO") -> dict[str, Any]:
    return {"type": "create_booking", "commandId": command_id(), "actor": rider(who), "routeId": route_id,
            "travelDate": TRAVEL_DATE, "originStopId": origin, "destinationStopId": destination,
            "seatsBooked": seats}


def on_booking(kind: str, booking_id: str, actor: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {"type": kind, "commandId": command_id(), "actor": actor, "bookingId": booking_id, **fields}


def on_entry(kind: str, entry_id: str, actor: dict[str, str]) -> dict[str, Any]:
    return {"type": kind, "commandId": command_id(), "actor": actor, "entryId": entry_id}


def join_waitlist(route_id: str, who: str, seats: int = 1, origin: str = "LAG",
                  destination: str = "OYO") -> dict[str, Any]:
    return {"type": "join_waitlist", "commandId": command_id(), "actor": rider(who), "routeId": route_id,
            "travelDate": TRAVEL_DATE, "originStopId": origin, "destinationStopId": destination,
            "seatsBooked": seats}


def made_up_booking(route_id: str, number: int) -> str:
    """A well-formed booking id on the route's trip that no command made."""
    return booking_id_of(route_id, date.fromisoformat(TRAVEL_DATE),
                         base64.b32encode(number.to_bytes(10, "big")).decode())


def on_trip(kind: str, route_id: str, actor: dict[str, str] = SERVICE, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "commandId": command_id(), "actor": actor, "routeId": route_id,
            "travelDate": TRAVEL_DATE, **fields}


def trip_key(route_id: str) -> bytes:
    """The command topic's key for the route's trip on TRAVEL_DATE."""
    return domain_trip_key(route_id, date.fromisoformat(TRAVEL_DATE)).encode()


def booking_stream(route_ids: list[str], count: int, seed: int) -> Iterator[dict[str, Any]]:
    journeys = [("LAG", "IBD"), ("IBD", "OYO"), ("LAG", "OYO")]
    chance = random.Random(seed)
    for n in range(count):
        origin, destination = chance.choice(journeys)
        yield create_booking(chance.choice(route_ids), f"rider-{n}", chance.randint(1, 3), origin, destination)
