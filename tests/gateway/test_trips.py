"""PUT /v1/trips/{routeId}/{travelDate}: the publish_trip command and its reply."""

import orjson

from app.wire.commands import parse_command
from tests.gateway.replies import TRIP, rejected
from tests.support.http import auth


def test_publish_trip_returns_the_trip_and_its_version(client, bus):
    response = client.put("/v1/trips/R1/2030-01-15", json=TRIP, headers=auth("route-service", "SERVICE"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["routeId"], body["travelDate"], body["tripVersion"]) == ("R1", "2030-01-15", 1)
    assert body["trip"]["legFares"] == ["1500.00", "1000.00"]
    assert body["trip"]["stops"][1] == {"stopId": "B", "offsetMinutes": 30}
    assert body["trip"]["status"] == "ACTIVE" and body["trip"]["departureTime"] == "08:00:00"


def test_the_command_carries_the_trip_in_minor_units_for_the_worker(client, bus):
    client.put("/v1/trips/R1/2030-01-15", json=TRIP, headers=auth("route-service", "SERVICE"))
    key, command = bus.sent[0]
    assert key == "R1:2030-01-15"
    trip = parse_command(orjson.dumps(command)).to_domain().trip
    assert trip.leg_fares == (150000, 100000)
    assert trip.driver_id == "driver-1" and trip.capacity == 4


def test_worker_refusal_for_a_driver_of_another_trip_is_403(client, bus):
    bus.answer = rejected("forbidden")
    response = client.put("/v1/trips/R1/2030-01-15", json=TRIP, headers=auth("driver-9", "DRIVER"))
    assert response.status_code == 403 and response.json()["code"] == "forbidden"


def test_update_conflict_is_409(client, bus):
    bus.answer = rejected("trip_update_conflict")
    response = client.put("/v1/trips/R1/2030-01-15", json=TRIP, headers=auth("ops", "ADMIN"))
    assert response.status_code == 409 and response.json()["code"] == "trip_update_conflict"
