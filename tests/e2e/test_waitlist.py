"""A sold-out trip over HTTP, end to end (real broker, worker, sink, Postgres, gateway):
seat choice, the seat map, a waiting list whose entries are offered the seats a cancel
frees, in join order, an offer accepted and paid for, an entry leaving; and a train of
1,000 seats."""

import time
import uuid
from datetime import date, timedelta

import httpx
import pytest

from devstack.stack import Stack
from tests.support.http import auth
from tests.support.http import publish as publish_trip

pytestmark = pytest.mark.integration

TRAVEL_DATE = (date.today() + timedelta(days=7)).isoformat()
STOPS = [{"stopId": "LAG", "offsetMinutes": 0}, {"stopId": "IBD", "offsetMinutes": 90},
         {"stopId": "OYO", "offsetMinutes": 180}]


def publish(client: httpx.Client, capacity: int) -> str:
    route_id = "WL" + uuid.uuid4().hex[:8]
    trip = {"departureTime": "09:00", "capacity": capacity, "stops": STOPS, "legFares": ["2500.00", "1500.00"]}
    publish_trip(client, route_id, TRAVEL_DATE, trip, "route-svc-wl")
    return route_id


def free_seats(client: httpx.Client, route_id: str, origin: str, destination: str) -> list[int]:
    response = client.get(f"/v1/trips/{route_id}/{TRAVEL_DATE}/seats", params={"from": origin, "to": destination},
                          headers=auth("anyone"))
    assert response.status_code == 200, response.text
    return [seat["seatNumber"] for seat in response.json()["seats"] if seat["free"]]


def eventually(read, check, timeout_s: float = 30):
    """Reads come from Postgres, a moment behind the commands."""
    deadline = time.monotonic() + timeout_s
    while not check(found := read()):
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    return found


def test_a_sold_out_trip_offers_freed_seats_to_its_waiting_list(stack: Stack) -> None:
    with stack.client() as client:
        route_id = publish(client, capacity=2)
        booking = {"routeId": route_id, "travelDate": TRAVEL_DATE, "originStopId": "LAG", "destinationStopId": "OYO",
                   "seatsBooked": 2}
        taken = client.post("/v1/bookings", headers=auth("rider-wa"), json={**booking, "seatNumbers": [2, 1]})
        assert taken.status_code == 201, taken.text
        first = taken.json()["booking"]
        assert first["seatNumbers"] == [1, 2] and free_seats(client, route_id, "LAG", "IBD") == []

        sold_out = client.post("/v1/bookings", headers=auth("rider-wb"), json={**booking, "seatsBooked": 1})
        assert (sold_out.status_code, sold_out.json()["code"]) == (409, "seats_unavailable")
        join = {"originStopId": "LAG", "destinationStopId": "OYO", "seatsBooked": 1}
        waitlist = f"/v1/trips/{route_id}/{TRAVEL_DATE}/waitlist"
        joined_b = client.post(waitlist, headers=auth("rider-wb"), json=join)
        joined_c = client.post(waitlist, headers=auth("rider-wc"), json=join)
        assert joined_b.status_code == joined_c.status_code == 201, joined_b.text
        entry_b, entry_c = joined_b.json()["entry"], joined_c.json()["entry"]
        assert (entry_b["status"], entry_b["position"], entry_c["position"]) == ("WAITING", 1, 2)

        cancelled = client.post(f"/v1/bookings/{first['id']}/cancel", headers=auth("rider-wa"),
                                json={"reason": "my plans changed, sorry"})
        assert cancelled.status_code == 200, cancelled.text
        assert free_seats(client, route_id, "LAG", "OYO") == []  # both seats held for the offers
        walk_in = client.post("/v1/bookings", headers=auth("rider-wd"), json={**booking, "seatsBooked": 1})
        assert walk_in.json()["code"] == "seats_unavailable"

        mine = eventually(lambda: client.get("/v1/waitlist", headers=auth("rider-wb")).json()["entries"],
                          lambda found: found and found[0]["status"] == "OFFERED")
        assert mine[0]["id"] == entry_b["id"] and mine[0]["seatNumbers"] == [1] and mine[0]["offerExpiresAt"]

        accepted = client.post(f"/v1/waitlist/{entry_b['id']}/accept", headers=auth("rider-wb"))
        assert accepted.status_code == 201, accepted.text
        held = accepted.json()["booking"]
        assert (held["status"], held["seatNumbers"], accepted.json()["entry"]["status"]) == ("HELD", [1], "ACCEPTED")
        paid = client.post(f"/v1/bookings/{held['id']}/confirm", headers=auth("payments-wl", "SERVICE"),
                           json={"paymentId": "pay-wl", "paymentStatus": "SUCCESS", "amount": held["totalPrice"]})
        assert paid.json()["status"] == "CONFIRMED", paid.text

        left = client.delete(f"/v1/waitlist/{entry_c['id']}", headers=auth("rider-wc"))
        assert left.status_code == 200 and left.json()["entry"]["status"] == "LEFT"
        assert free_seats(client, route_id, "LAG", "OYO") == [2]  # nobody else waits for it
        not_yours = client.post(f"/v1/waitlist/{entry_c['id']}/accept", headers=auth("rider-wb"))
        assert (not_yours.status_code, not_yours.json()["code"]) == (404, "waitlist_entry_not_found")

        listed = eventually(lambda: client.get(waitlist, headers=auth("ops-wl", "ADMIN")).json()["entries"],
                            lambda found: [e["status"] for e in found] == ["ACCEPTED", "LEFT"])
        assert [e["id"] for e in listed] == [entry_b["id"], entry_c["id"]]
        assert listed[0]["bookingId"] == held["id"]


def test_a_train_of_a_thousand_seats(stack: Stack) -> None:
    with stack.client() as client:
        route_id = publish(client, capacity=1000)
        booking = {"routeId": route_id, "travelDate": TRAVEL_DATE, "originStopId": "IBD", "destinationStopId": "OYO",
                   "seatsBooked": 2, "seatNumbers": [1000, 64]}
        created = client.post("/v1/bookings", headers=auth("rider-tr"), json=booking)
        assert created.status_code == 201, created.text
        assert created.json()["booking"]["seatNumbers"] == [64, 1000]
        again = client.post("/v1/bookings", headers=auth("rider-tr2"), json={**booking, "seatNumbers": [999, 1000]})
        assert (again.status_code, again.json()["code"]) == (409, "seat_unavailable")
        free = free_seats(client, route_id, "LAG", "OYO")
        assert len(free) == 998 and 64 not in free and 1000 not in free
        assert free_seats(client, route_id, "LAG", "IBD") == list(range(1, 1001))
        legs = client.get(f"/v1/trips/{route_id}/{TRAVEL_DATE}/availability", headers=auth("anyone")).json()["legs"]
        assert [leg["free"] for leg in legs] == [1000, 998]
        too_big = client.put(f"/v1/trips/{route_id}x/{TRAVEL_DATE}", headers=auth("route-svc-wl", "SERVICE"),
                             json={"departureTime": "09:00", "capacity": 1001, "stops": STOPS,
                                   "legFares": ["2500.00", "1500.00"]})
        assert too_big.status_code == 400 and "capacity" in too_big.json()["errors"]
