"""POST /v1/bookings and GET /v1/bookings/{id} against a stand-in command bus and read side."""

from datetime import date

import pytest

from app.domain.trip import trip_key
from gateway.dispatch import command_id_for
from app.transport.bus import KafkaUnavailable, ReplyTimeout, RequestInFlight
from tests.gateway.replies import BOOKING_REQUEST, new_key, rejected
from tests.support.http import auth


def raising(error):
    def answer(_key, _command):
        raise error
    return answer


def test_create_booking_sends_the_worker_command_and_returns_201(client, bus):
    response = client.post("/v1/bookings", json={**BOOKING_REQUEST, "bookingSource": "MOBILE"}, headers=auth("rider-1"))
    assert response.status_code == 201, response.text
    key, command = bus.sent[0]
    assert key == "R1:2030-01-15"
    assert command["type"] == "create_booking" and command["v"] == 1
    assert command["actor"] == {"userId": "rider-1", "role": "RIDER"}
    assert (command["originStopId"], command["destinationStopId"], command["seatsBooked"]) == ("A", "C", 2)
    assert command["source"] == "MOBILE"
    body = response.json()
    assert body["booking"]["riderId"] == "rider-1" and body["booking"]["status"] == "HELD"
    assert body["paymentUrl"] is None
    assert body["expiresAt"] == body["booking"]["expiresAt"]
    assert body["message"]
    assert response.headers["location"] == f"/v1/bookings/{body['booking']['id']}"


def test_without_a_key_every_request_is_a_new_command(client, bus):
    for _ in range(2):
        client.post("/v1/bookings", json=BOOKING_REQUEST, headers=auth())
    assert bus.sent[0][1]["commandId"] != bus.sent[1][1]["commandId"]


def test_idempotency_key_gives_the_same_command_and_fingerprint_per_rider_and_trip(client, bus):
    key = new_key()
    client.post("/v1/bookings", json=BOOKING_REQUEST, headers={**auth("rider-1"), "Idempotency-Key": key})
    client.post("/v1/bookings", json={**BOOKING_REQUEST, "idempotencyKey": key}, headers=auth("rider-1"))
    client.post("/v1/bookings", json={**BOOKING_REQUEST, "seatsBooked": 1}, headers={**auth("rider-1"),
                                                                                   "Idempotency-Key": key})
    client.post("/v1/bookings", json=BOOKING_REQUEST, headers={**auth("rider-2"), "Idempotency-Key": key})
    first, again, other_body, other_rider = (command for _, command in bus.sent)
    assert first["commandId"] == again["commandId"] == command_id_for("rider-1", key, "R1:2030-01-15")
    assert first["fingerprint"] == again["fingerprint"] != other_body["fingerprint"]
    assert other_body["commandId"] == first["commandId"], "the worker tells them apart by the fingerprint"
    assert other_rider["commandId"] != first["commandId"]  # keys are per rider


@pytest.mark.parametrize(("code", "status", "shown"), [
    ("seats_unavailable", 409, "seats_unavailable"),
    ("trip_cancelled", 409, "trip_cancelled"),
    ("trip_not_found", 404, "trip_not_found"),
    ("not_owner", 404, "booking_not_found"),
    ("forbidden", 403, "forbidden"),
    ("too_many_seats", 422, "too_many_seats"),
    ("invalid_stops", 422, "invalid_stops"),
    ("idempotency_key_reused", 422, "idempotency_key_reused"),
    ("booking_closed", 422, "booking_closed"),
    ("invalid_command", 400, "invalid_command"),
    ("internal_error", 500, "internal_error"),
    ("a_code_from_the_future", 422, "a_code_from_the_future"),
])
def test_rejections_map_to_statuses(client, bus, code, status, shown):
    bus.answer = rejected(code)
    response = client.post("/v1/bookings", json=BOOKING_REQUEST, headers=auth())
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == shown and body["status"] == status and body["message"]
    assert "not_owner" not in response.text


def test_reply_timeout_is_503_with_retry_after_and_command_id(client, bus):
    bus.answer = raising(ReplyTimeout("cmd-1"))
    response = client.post("/v1/bookings", json=BOOKING_REQUEST, headers={**auth(), "Idempotency-Key": new_key()})
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["code"] == "reply_timeout" and body["commandId"] == "cmd-1"


def test_kafka_down_is_503(client, bus):
    bus.answer = raising(KafkaUnavailable("down"))
    response = client.post("/v1/bookings", json=BOOKING_REQUEST, headers=auth())
    assert response.status_code == 503 and response.json()["code"] == "kafka_unavailable"
    assert "retry-after" in response.headers


def test_same_key_still_in_flight_is_409(client, bus):
    bus.answer = raising(RequestInFlight("cmd-1"))
    response = client.post("/v1/bookings", json=BOOKING_REQUEST, headers={**auth(), "Idempotency-Key": new_key()})
    assert response.status_code == 409 and response.json()["code"] == "request_in_flight"


def test_key_is_the_trip(client, bus):
    client.post("/v1/bookings", json={**BOOKING_REQUEST, "routeId": "LAG-IBD_2"}, headers=auth())
    assert bus.sent[0][0] == trip_key("LAG-IBD_2", date(2030, 1, 15))


