"""Seat choice, the seat map and the waiting list over HTTP: the commands each request
becomes, the replies turned into responses, the refusals' statuses; and the reads (a
rider's entries, a trip's list) from a real Postgres holding events the real core made."""

import orjson
import pytest

from app.wire.commands import parse_command
from tests.gateway.replies import ENTRY_ID, rejected
from tests.gateway.stored import store_log
from tests.support.http import auth
from tests.support.scenario import unique_prefix, waiting_list

BOOKING = {"routeId": "R1", "travelDate": "2030-01-15", "originStopId": "A", "destinationStopId": "C",
           "seatsBooked": 2}
JOIN = {"originStopId": "A", "destinationStopId": "C", "seatsBooked": 2}


def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["status"], body["code"]) == (status, code)
    return body


# -- seat choice and the seat map -------------------------------------------------------


def test_chosen_seats_go_to_the_worker(client, bus):
    response = client.post("/v1/bookings", json={**BOOKING, "seatNumbers": [7, 3]}, headers=auth())
    assert response.status_code == 201, response.text
    command = parse_command(orjson.dumps(bus.sent[0][1])).to_domain()
    assert command.seat_numbers == (7, 3) and command.seats == 2


@pytest.mark.parametrize("seats", [[1], [1, 1], [0, 2], [1, 1001], ["x", 2]])
def test_seat_numbers_not_one_distinct_seat_each_are_400(client, bus, seats):
    body = error(client.post("/v1/bookings", json={**BOOKING, "seatNumbers": seats}, headers=auth()), 400,
                 "validation_failed")
    assert "seatNumbers" in body["errors"] or "seatNumbers[0]" in body["errors"]
    assert bus.sent == []


@pytest.mark.parametrize(("code", "status"), [("seat_unavailable", 409), ("invalid_seats", 422)])
def test_seats_the_worker_refuses(client, bus, code, status):
    bus.answer = rejected(code)
    error(client.post("/v1/bookings", json={**BOOKING, "seatNumbers": [1, 2]}, headers=auth()), status, code)


def test_the_seat_map_of_a_journey_asks_the_trips_owner(client, bus):
    response = client.get("/v1/trips/R1/2030-01-15/seats", params={"from": "A", "to": "C"}, headers=auth())
    assert response.status_code == 200, response.text
    assert response.json() == {"routeId": "R1", "travelDate": "2030-01-15", "fromStopId": "A", "toStopId": "C",
                               "seats": [{"seatNumber": n, "free": n != 2} for n in range(1, 5)]}
    key, command = bus.sent[0]
    assert (key, command["type"], command["originStopId"], command["destinationStopId"]) == \
        ("R1:2030-01-15", "query_seat_map", "A", "C")
    assert client.get("/v1/trips/R1/2030-01-15/seats", params={"from": "A"}, headers=auth()).status_code == 400
    bus.answer = rejected("invalid_stops")
    error(client.get("/v1/trips/R1/2030-01-15/seats", params={"from": "C", "to": "A"}, headers=auth()), 422,
          "invalid_stops")


# -- the waiting list ---------------------------------------------------------------------


def test_a_rider_joins_a_trips_waiting_list(client, bus):
    response = client.post("/v1/trips/R1/2030-01-15/waitlist", json=JOIN, headers=auth())
    assert response.status_code == 201, response.text
    entry = response.json()["entry"]
    assert (entry["status"], entry["position"], entry["seatsBooked"]) == ("WAITING", 1, 2)
    key, command = bus.sent[0]
    assert (key, command["type"], command["actor"]) == ("R1:2030-01-15", "join_waitlist",
                                                        {"userId": "rider-1", "role": "RIDER"})


def test_joining_is_for_riders_and_sold_out_journeys(client, bus):
    error(client.post("/v1/trips/R1/2030-01-15/waitlist", json=JOIN, headers=auth("ops", "ADMIN")), 403,
          "forbidden")
    error(client.post("/v1/trips/R1/2030-01-15/waitlist", json={**JOIN, "seatsBooked": 5}, headers=auth()), 400,
          "validation_failed")
    error(client.post("/v1/trips/R1/2030-01-15/waitlist", json={**JOIN, "destinationStopId": "A"},
                      headers=auth()), 400, "validation_failed")
    assert bus.sent == []
    for code, status in (("seats_available", 409), ("waitlist_full", 409), ("hold_limit_reached", 409)):
        bus.answer = rejected(code)
        error(client.post("/v1/trips/R1/2030-01-15/waitlist", json=JOIN, headers=auth()), status, code)


def test_leaving_and_accepting_name_the_entry(client, bus):
    left = client.delete(f"/v1/waitlist/{ENTRY_ID}", headers=auth())
    assert left.status_code == 200 and left.json()["entry"]["status"] == "LEFT"
    accepted = client.post(f"/v1/waitlist/{ENTRY_ID}/accept", headers=auth())
    assert accepted.status_code == 201, accepted.text
    body = accepted.json()
    assert body["booking"]["status"] == "HELD" and body["entry"]["bookingId"] == body["booking"]["id"]
    assert accepted.headers["Location"] == f"/v1/bookings/{body['booking']['id']}"
    assert [(key, command["type"], command["entryId"]) for key, command in bus.sent] == [
        ("R1:2030-01-15", "leave_waitlist", ENTRY_ID), ("R1:2030-01-15", "accept_offer", ENTRY_ID)]


def test_an_entry_that_is_not_ours_or_not_the_callers_is_404(client, bus):
    error(client.delete("/v1/waitlist/not-one-of-ours", headers=auth()), 404, "waitlist_entry_not_found")
    assert bus.sent == []
    bus.answer = rejected("waitlist_entry_not_found")
    error(client.post(f"/v1/waitlist/{ENTRY_ID}/accept", headers=auth("rider-2")), 404, "waitlist_entry_not_found")
    bus.answer = rejected("offer_expired")
    error(client.post(f"/v1/waitlist/{ENTRY_ID}/accept", headers=auth()), 409, "offer_expired")
    error(client.delete(f"/v1/waitlist/{ENTRY_ID}", headers=auth("driver-1", "DRIVER")), 403, "forbidden")


# -- reads --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(database_url):
    return store_log(database_url, waiting_list(unique_prefix("gw-waitlist")))


@pytest.mark.integration
def test_a_rider_reads_their_entries_with_their_current_place(reading_client, stored):
    mine = reading_client.get("/v1/waitlist", headers=auth("rider-w5")).json()["entries"]
    ours = [e for e in mine if e["routeId"] == stored.route_id]
    assert [(e["status"], e["position"]) for e in ours] == [("WAITING", 1)]
    error(reading_client.get("/v1/waitlist", headers=auth("ops", "ADMIN")), 403, "forbidden")


@pytest.mark.integration
def test_admins_list_a_trips_waiting_list_in_join_order(reading_client, stored):
    path = f"/v1/trips/{stored.route_id}/{stored.travel_date}/waitlist"
    entries = reading_client.get(path, headers=auth("ops", "ADMIN")).json()["entries"]
    assert [e["status"] for e in entries] == ["ACCEPTED", "LEFT", "OFFER_EXPIRED", "OFFERED", "WAITING"]
    error(reading_client.get(path, headers=auth("rider-w5")), 403, "forbidden")
    error(reading_client.get(path, headers=auth(stored.driver.user_id, "DRIVER")), 403, "forbidden")
