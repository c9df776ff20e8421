"""An attacker holding an ordinary rider or driver token, against the running system:
real broker, worker, sink, gateway and Postgres (the session's stack)."""

import time
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.support.http import auth

pytestmark = pytest.mark.integration

TRAVEL_DATE = (date.today() + timedelta(days=10)).isoformat()
TRIP = {"timezone": "Africa/Lagos", "departureTime": "09:00", "capacity": 14, "currency": "NGN",
        "stops": [{"stopId": "LAG", "offsetMinutes": 0}, {"stopId": "IBD", "offsetMinutes": 90}],
        "legFares": ["2500.00"]}


def names() -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {role: f"{role}-{run}" for role in ("route", "driver", "driver2", "rider", "payments")}


def put_trip(client: httpx.Client, route_id: str, headers: dict[str, str], **changes: Any) -> httpx.Response:
    return client.put(f"/v1/trips/{route_id}/{TRAVEL_DATE}", headers=headers, json={**TRIP, **changes})


def book(client: httpx.Client, route_id: str, rider: dict[str, str], seats: int = 1) -> httpx.Response:
    return client.post("/v1/bookings", headers=rider, json={
        "routeId": route_id, "travelDate": TRAVEL_DATE, "originStopId": "LAG", "destinationStopId": "IBD",
        "seatsBooked": seats})


def eventually(check, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "never came true"
        time.sleep(0.2)


def test_a_driver_taken_off_a_trip_no_longer_reads_its_bookings(stack: Stack) -> None:
    who = names()
    route_id = "AB" + uuid.uuid4().hex[:8]
    with stack.client() as client:
        assert put_trip(client, route_id, auth(who["route"], "SERVICE"), driverId=who["driver"]).status_code == 200
        booking = book(client, route_id, auth(who["rider"])).json()["booking"]
        paths = (f"/v1/bookings/{booking['id']}", f"/v1/bookings/reference/{booking['bookingReference']}")
        first, second = auth(who["driver"], "DRIVER"), auth(who["driver2"], "DRIVER")
        eventually(lambda: client.get(paths[0], headers=first).status_code == 200)
        assert put_trip(client, route_id, auth(who["route"], "SERVICE"), driverId=who["driver2"]).status_code == 200
        eventually(lambda: client.get(paths[0], headers=second).status_code == 200)
        for path in paths:
            assert client.get(path, headers=first).status_code == 404
            assert client.get(path, headers=second).json()["driverId"] == who["driver2"]


def test_a_driver_cannot_claim_a_route_and_the_route_service_can_reopen_a_cancelled_trip(stack: Stack) -> None:
    who = names()
    route_id = "AB" + uuid.uuid4().hex[:8]
    routes, driver = auth(who["route"], "SERVICE"), auth(who["driver"], "DRIVER")
    with stack.client() as client:
        claimed = put_trip(client, route_id, driver, driverId=who["driver"])
        assert (claimed.status_code, claimed.json()["code"]) == (403, "forbidden")
        assert put_trip(client, route_id, routes, driverId=who["driver"]).status_code == 200
        cancelled = client.post(f"/v1/trips/{route_id}/{TRAVEL_DATE}/cancel", headers=routes,
                                json={"reason": "route closed for works"})
        assert cancelled.status_code == 200
        assert put_trip(client, route_id, driver, driverId=who["driver"]).json()["code"] == "trip_cancelled"
        reopened = put_trip(client, route_id, routes, driverId=who["driver"])
        assert reopened.status_code == 200, reopened.text
        assert book(client, route_id, auth(who["rider"])).status_code == 201


def test_a_booked_trip_keeps_its_currency_and_times(stack: Stack) -> None:
    who = names()
    route_id = "AB" + uuid.uuid4().hex[:8]
    driver = auth(who["driver"], "DRIVER")
    with stack.client() as client:
        assert put_trip(client, route_id, auth(who["route"], "SERVICE"), driverId=who["driver"]).status_code == 200
        assert book(client, route_id, auth(who["rider"])).status_code == 201
        for change in ({"currency": "USD"}, {"timezone": "Etc/GMT+12"}, {"departureTime": "06:00"}):
            refused = put_trip(client, route_id, driver, driverId=who["driver"], **change)
            assert (refused.status_code, refused.json()["code"]) == (409, "trip_update_conflict"), change
        assert put_trip(client, route_id, driver, driverId=who["driver"], legFares=["3000.00"]).status_code == 200


def test_one_rider_cannot_hold_a_whole_trip(stack: Stack) -> None:
    who = names()
    route_id = "AB" + uuid.uuid4().hex[:8]
    rider = auth(who["rider"])
    with stack.client() as client:
        assert put_trip(client, route_id, auth(who["route"], "SERVICE"), driverId=who["driver"]).status_code == 200
        assert [book(client, route_id, rider, seats=4).status_code for _ in range(2)] == [201, 201]
        refused = book(client, route_id, rider, seats=4)
        assert (refused.status_code, refused.json()["code"]) == (409, "hold_limit_reached")
        other = book(client, route_id, auth(who["rider"] + "-friend"), seats=1).json()["booking"]
        assert other["pricePerSeat"] == "2500.00"  # eight held seats did not raise the price


def test_a_trip_far_ahead_is_refused(stack: Stack) -> None:
    route_id = "AB" + uuid.uuid4().hex[:8]
    with stack.client() as client:
        far = client.put(f"/v1/trips/{route_id}/9999-12-31", headers=auth("route-far", "SERVICE"),
                         json={**TRIP, "timezone": "Etc/GMT+12"})
        assert (far.status_code, far.json()["code"]) == (422, "travel_date_out_of_range")
