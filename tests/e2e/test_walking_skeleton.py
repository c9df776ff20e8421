"""The vertical slice through every component: gateway -> command log -> worker ->
lifecycle topic -> sink -> Postgres -> gateway reads. Real broker, real Postgres."""

import asyncio
import time
import uuid
from datetime import date, timedelta

import httpx
import psycopg
import pytest

from devstack.stack import Stack
from tests.support.http import auth

pytestmark = pytest.mark.integration

TRAVEL_DATE = (date.today() + timedelta(days=30)).isoformat()


def publish_trip(stack: Stack, capacity: int = 3) -> str:
    route_id = "R" + uuid.uuid4().hex[:10]
    body = {
        "timezone": "Africa/Lagos",
        "departureTime": "09:00",
        "capacity": capacity,
        "currency": "NGN",
        "stops": [{"stopId": "LAG", "offsetMinutes": 0}, {"stopId": "IBD", "offsetMinutes": 90},
                  {"stopId": "OYO", "offsetMinutes": 180}],
        "legFares": ["2500.00", "1500.00"],
    }
    with stack.client() as client:
        response = client.put(f"/v1/trips/{route_id}/{TRAVEL_DATE}", json=body, headers=auth("route-svc", "SERVICE"))
    assert response.status_code == 200, response.text
    return route_id


def booking_request(route_id: str, seats: int = 1, origin: str = "LAG", destination: str = "OYO") -> dict:
    return {"routeId": route_id, "travelDate": TRAVEL_DATE, "originStopId": origin,
            "destinationStopId": destination, "seatsBooked": seats}


def read_back(stack: Stack, booking_id: str, rider: str, timeout_s: float = 20) -> httpx.Response:
    """Reads come from Postgres, which the sink fills asynchronously: poll until it has it."""
    deadline = time.monotonic() + timeout_s
    with stack.client() as client:
        while True:
            response = client.get(f"/v1/bookings/{booking_id}", headers=auth(rider))
            if response.status_code != 404 or time.monotonic() > deadline:
                return response
            time.sleep(0.2)


def test_a_booking_is_held_answered_and_read_back_by_its_owner_only(stack: Stack) -> None:
    route_id = publish_trip(stack)
    with stack.client() as client:
        created = client.post("/v1/bookings", json=booking_request(route_id, seats=2), headers=auth("rider-1"))
    assert created.status_code == 201, created.text
    booking = created.json()["booking"]
    assert booking["status"] == "HELD"
    assert booking["seatNumbers"] == [1, 2]
    assert booking["riderId"] == "rider-1"
    assert booking["bookingReference"].startswith("BK" + TRAVEL_DATE.replace("-", ""))
    assert booking["totalPrice"] == "8400.00"  # (2500 + 1500) x 2 seats + 5 % fee
    assert created.json()["expiresAt"] == booking["expiresAt"]

    stored = read_back(stack, booking["id"], "rider-1")
    assert stored.status_code == 200, stored.text
    assert {k: stored.json()[k] for k in booking} == booking

    other = read_back(stack, booking["id"], "rider-2", timeout_s=0)
    assert other.status_code == 404
    assert other.json()["code"] == "booking_not_found"


def test_no_seats_left_is_409_with_a_stable_code(stack: Stack) -> None:
    route_id = publish_trip(stack, capacity=1)
    with stack.client() as client:
        first = client.post("/v1/bookings", json=booking_request(route_id), headers=auth("rider-1"))
        second = client.post("/v1/bookings", json=booking_request(route_id), headers=auth("rider-2"))
    assert first.status_code == 201, first.text
    assert second.status_code == 409
    assert second.json()["code"] == "seats_unavailable"


def test_an_unpublished_trip_cannot_be_booked(stack: Stack) -> None:
    with stack.client() as client:
        response = client.post("/v1/bookings", json=booking_request("R-never-published"), headers=auth("rider-1"))
    assert response.status_code == 404
    assert response.json()["code"] == "trip_not_found"


def test_an_invalid_body_is_400_with_a_map_of_fields(stack: Stack) -> None:
    body = {"routeId": "", "travelDate": "2026-13-45", "originStopId": "LAG", "seatsBooked": 10}
    with stack.client() as client:
        response = client.post("/v1/bookings", json=body, headers=auth("rider-1"))
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {"routeId", "travelDate", "destinationStopId", "seatsBooked"} <= set(errors)


def test_no_token_is_401(stack: Stack) -> None:
    with stack.client() as client:
        response = client.post("/v1/bookings", json=booking_request("R1"))
    assert response.status_code == 401
    assert response.json()["code"]


def test_100_concurrent_riders_on_40_seats_sell_each_seat_exactly_once(stack: Stack) -> None:
    route_id = publish_trip(stack, capacity=40)

    async def book_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
            return await asyncio.gather(*(
                client.post("/v1/bookings", json=booking_request(route_id), headers=auth(f"rider-{i}"))
                for i in range(100)
            ))

    responses = asyncio.run(book_all())
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 40 and statuses.count(409) == 60, statuses
    assert all(r.json()["code"] == "seats_unavailable" for r in responses if r.status_code == 409)
    seats = sorted(s for r in responses if r.status_code == 201 for s in r.json()["booking"]["seatNumbers"])
    assert seats == list(range(1, 41))

    assert postgres_seats_once_quiet(stack, route_id, expected=40) == list(range(1, 41))


def postgres_seats_once_quiet(stack: Stack, route_id: str, expected: int, timeout_s: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(stack.database_url) as conn:
        while True:
            rows = conn.execute("SELECT seat_numbers FROM bookings WHERE route_id = %s", (route_id,)).fetchall()
            conn.commit()
            if len(rows) >= expected or time.monotonic() > deadline:
                return sorted(seat for (numbers,) in rows for seat in numbers)
            time.sleep(0.3)
