"""Bad input is a 400 with the one error shape and a per-field map (camelCase names),
never a 422 for fields and never a 500."""

import pytest

from tests.gateway.replies import BOOKING_REQUEST, TRIP
from tests.support.http import auth


def booking(**changes):
    body = {**BOOKING_REQUEST, **changes}
    return {key: value for key, value in body.items() if value is not None}


def assert_fields(response, *fields: str) -> dict:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "validation_failed" and body["error"] == "Validation failed"
    assert set(fields) <= body["errors"].keys(), body["errors"]
    assert {"status", "message", "timestamp"} <= body.keys()
    return body["errors"]


@pytest.mark.parametrize("seats", [10, 0, -1, 5])
def test_seats_out_of_range_is_400(client, bus, seats):
    errors = assert_fields(client.post("/v1/bookings", json=booking(seatsBooked=seats), headers=auth()),
                           "seatsBooked")
    assert "between 1 and 4" in errors["seatsBooked"]
    assert bus.sent == []


def test_every_invalid_field_is_named(client):
    body = {"routeId": "bad route!", "travelDate": "2030-02-30", "originStopId": "", "seatsBooked": "two"}
    errors = assert_fields(client.post("/v1/bookings", json=body, headers=auth()),
                           "routeId", "travelDate", "originStopId", "destinationStopId", "seatsBooked")
    assert errors["destinationStopId"] == "Field required"


def test_malformed_json_is_400(client, bus):
    response = client.post("/v1/bookings", content=b'{"routeId": "R1",', headers={
        **auth(), "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"
    assert bus.sent == []


def test_missing_body_is_400(client):
    assert_fields(client.post("/v1/bookings", headers=auth()), "body")


def test_body_that_is_not_an_object_is_400(client):
    assert_fields(client.post("/v1/bookings", json=[1, 2], headers=auth()), "body")


def test_same_pickup_and_dropoff_is_400(client):
    assert_fields(client.post("/v1/bookings", json=booking(destinationStopId="A"), headers=auth()),
                  "destinationStopId")


def test_long_idempotency_key_is_400(client):
    assert_fields(client.post("/v1/bookings", json=booking(idempotencyKey="k" * 101), headers=auth()),
                  "idempotencyKey")
    assert_fields(client.post("/v1/bookings", json=booking(), headers={**auth(), "Idempotency-Key": "k" * 101}),
                  "Idempotency-Key")


def test_header_and_body_keys_must_agree(client):
    response = client.post("/v1/bookings", json=booking(idempotencyKey="a"), headers={**auth(), "Idempotency-Key": "b"})
    assert_fields(response, "idempotencyKey")


def test_rank_above_count_is_400(client):
    assert_fields(client.post("/v1/bookings", json=booking(candidateRank=5, candidateCount=3), headers=auth()),
                  "candidateRank")


def test_search_analytics_within_bounds_are_accepted(client):
    response = client.post("/v1/bookings", json=booking(searchId="s-1", candidateRank=3, candidateCount=3),
                           headers=auth())
    assert response.status_code == 201, response.text


def test_unknown_booking_fields_are_ignored(client):
    assert client.post("/v1/bookings", json=booking(promoCode="X"), headers=auth()).status_code == 201


def test_bad_trip_path_is_400(client):
    assert_fields(client.put("/v1/trips/bad%20route/2030-13-01", json=TRIP, headers=auth("svc", "SERVICE")),
                  "routeId", "travelDate")


def test_bad_trip_body_names_nested_fields(client):
    trip = {**TRIP, "stops": [{"stopId": "A", "offsetMinutes": -5}, {"stopId": "B", "offsetMinutes": 30}],
            "legFares": ["1.005"], "capacity": 0, "timezone": "Mars/Olympus"}
    errors = assert_fields(client.put("/v1/trips/R1/2030-01-15", json=trip, headers=auth("svc", "SERVICE")),
                           "stops[0].offsetMinutes", "legFares[0]", "capacity", "timezone")
    assert errors["legFares[0]"] == "at most two decimal places"


def test_inconsistent_trip_is_400(client):
    errors = assert_fields(client.put("/v1/trips/R1/2030-01-15", json={**TRIP, "legFares": [1]},
                                      headers=auth("svc", "SERVICE")), "body")
    assert "legFares" in errors["body"]


def test_unknown_path_and_method_use_the_error_shape(client):
    response = client.get("/v1/nothing-here", headers=auth())
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    response = client.delete("/v1/bookings", headers=auth())
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"


def test_oversized_body_is_413_not_500(client):
    oversized = b"{" + b" " * 70_000 + b"}"
    response = client.post("/v1/bookings", content=oversized, headers={**auth(), "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_oversized_chunked_body_is_413(client):
    def chunks():
        yield b"{"
        for _ in range(100):
            yield b" " * 1000
        yield b"}"

    response = client.post("/v1/bookings", content=chunks(), headers={**auth(), "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
