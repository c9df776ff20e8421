"""What the gateway refuses before it sends anything: text no part of the system can
store, oversized headers, tokens it should not trust, floods of bad tokens and holds
beyond a rider's share; and what it adds: security headers and an audit of refusals
and of reads of a rider's booking by others."""

import json
import time
from datetime import date
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from app.config import DEVELOPMENT_JWT_SECRET, get_settings
from app.domain.ids import booking_id_for
from app.wire.topics import CONTRACT
from gateway.dispatch import command_id_for
from gateway.main import create_app
from gateway.security import TokenVerifier
from tests.gateway.replies import BOOKING_REQUEST, accepted, booking_snapshot
from tests.gateway.stand_ins import audited
from tests.gateway.stored import mixed, store_log, trip_log
from tests.support.http import auth, token

BOOKING_ID = "R1.20300115.ABCDEFGHIJKLMNOP"


def error(response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    return body


# -- text no part of the system can store ---------------------------------------------------


@pytest.mark.parametrize(("path", "where"), [
    ("/v1/bookings/reference/BK%00", "path"),
    (f"/v1/bookings/{BOOKING_ID}%00", "path"),
    ("/v1/admin/bookings?riderId=a%00", "query"),
    ("/v1/admin/bookings?reference=%1f", "query"),
])
def test_control_characters_in_the_path_or_query_are_400_not_500(client, path, where):
    body = error(client.get(path, headers=auth("ops", "ADMIN")), 400, "validation_failed")
    assert where in body["errors"]


@pytest.mark.parametrize(("path", "body", "field"), [
    (f"/v1/bookings/{BOOKING_ID}/cancel", {"reason": "My plans changed\u0000, sorry"}, "reason"),
    (f"/v1/bookings/{BOOKING_ID}/cancel", {"reason": "My plans changed\ud800, sorry"}, "reason"),
    (f"/v1/bookings/{BOOKING_ID}/payment", {"paymentId": "p\u0000"}, "paymentId"),
    ("/v1/bookings", {**BOOKING_REQUEST, "idempotencyKey": "k\u0000"}, "idempotencyKey"),
    ("/v1/bookings", {**BOOKING_REQUEST, "idempotencyKey": "x\u001fk1"}, "idempotencyKey"),
    ("/v1/bookings", {**BOOKING_REQUEST, "originStopId": "A\u0007"}, "originStopId"),
    ("/v1/bookings", {**BOOKING_REQUEST, "seatsBooked": True}, "seatsBooked"),
])
def test_fields_the_read_model_could_not_store_are_refused_before_anything_is_sent(client, bus, path, body, field):
    response = client.post(path, content=_json(body), headers={**auth(), "Content-Type": "application/json"})
    assert field in error(response, 400, "validation_failed")["errors"]
    assert bus.sent == []


def _json(body: dict[str, Any]) -> bytes:
    """JSON as a client may write it: \\u escapes, lone surrogates included."""
    return json.dumps(body).encode()


def test_line_breaks_in_a_reason_are_fine(client, bus):
    response = client.post(f"/v1/bookings/{BOOKING_ID}/cancel", json={"reason": "Plans changed.\nSorry!\tBye"},
                           headers=auth())
    assert response.status_code == 200, response.text


def test_the_command_id_join_cannot_be_forged_with_its_separator():
    assert command_id_for("vic", "k1", "R1:2030-01-15") != command_id_for("vic", "k2", "R1:2030-01-15")
    with pytest.raises(ValueError):
        command_id_for("vic", "x\x1fk1", "R1:2030-01-15")
    with pytest.raises(ValueError):
        command_id_for("vic\x1fx", "k1", "R1:2030-01-15")


def test_a_subject_with_control_characters_is_not_a_user(client):
    error(client.get("/v1/bookings", headers={"Authorization": f"Bearer {token('vic' + chr(0x1f) + 'x')}"}), 401,
          "invalid_token")


# -- headers ----------------------------------------------------------------------------------


def test_responses_are_not_cached_or_sniffed(client):
    for response in (client.get("/v1/bookings", headers=auth()), client.get("/health/live")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"


def test_too_many_or_too_large_headers_are_431(client):
    many = {f"X-Filler-{i}": "x" for i in range(80)}
    error(client.get("/v1/bookings", headers={**auth(), **many}), 431, "headers_too_large")
    error(client.get("/v1/bookings", headers={**auth(), "X-Filler": "x" * 20_000}), 431, "headers_too_large")


# -- tokens -----------------------------------------------------------------------------------


def test_the_development_key_is_refused_outside_development():
    production = get_settings().model_copy(update={"environment": "production", "jwt_secret": DEVELOPMENT_JWT_SECRET})
    with pytest.raises(ValueError, match="development key"):
        TokenVerifier.from_settings(production)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenVerifier.from_settings(production.model_copy(update={"jwt_secret": "short"}))
    TokenVerifier.from_settings(production.model_copy(update={"jwt_secret": "s" * 40}))


def test_a_token_living_longer_than_the_maximum_is_refused(client):
    long_lived = token(ttl=get_settings().jwt_max_lifetime_seconds + 3600)
    body = error(client.get("/v1/bookings", headers={"Authorization": f"Bearer {long_lived}"}), 401, "invalid_token")
    assert "longer" in body["message"]
    now = int(time.time())
    no_iat = jwt.encode({"sub": "rider-1", "role": "RIDER", "exp": now + 30 * 86_400}, get_settings().jwt_secret)
    error(client.get("/v1/bookings", headers={"Authorization": f"Bearer {no_iat}"}), 401, "invalid_token")


@pytest.mark.integration
def test_roles_are_matched_exactly_not_by_look_alikes(reading_client):
    dotless_i = "adm\u0131n"  # str.upper() turns it into "ADMIN"
    lookalike = {"Authorization": f"Bearer {token('mallory', dotless_i)}"}
    error(reading_client.get("/v1/admin/bookings", headers=lookalike), 403, "forbidden")
    assert reading_client.get("/v1/admin/bookings", headers=auth("ops", "admin")).status_code == 200


def test_a_bad_signature_is_not_described_to_the_caller(client):
    forged = jwt.encode({"sub": "rider-1", "role": "RIDER", "exp": int(time.time()) + 60}, "x" * 40)
    body = error(client.get("/v1/bookings", headers={"Authorization": f"Bearer {forged}"}), 401, "invalid_token")
    assert body["message"] == "The token is not valid."


@pytest.mark.integration
def test_bad_tokens_from_one_address_are_rate_limited(database_url, bus):
    settings = get_settings().model_copy(update={"database_url": database_url, "failed_auth_per_minute": 6,
                                                 "failed_auth_burst": 3})
    with TestClient(create_app(settings, bus=bus), raise_server_exceptions=False) as own:
        statuses = [own.get("/v1/bookings", headers={"Authorization": "Bearer nonsense"}).status_code
                    for _ in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        assert own.get("/v1/bookings", headers=auth()).status_code == 200  # a valid token still gets in


def test_probes_and_metrics_are_bounded_per_address(client):
    statuses = {client.get("/metrics").status_code for _ in range(40)}
    assert statuses == {200, 429}


# -- hoarding -----------------------------------------------------------------------------------


def held_elsewhere(_key: str, command: dict[str, Any]) -> dict[str, Any]:
    """Each create holds its seats on a booking of its own (as the worker would)."""
    reply = accepted(_key, command)
    booking_id = booking_id_for(command["routeId"], _date(command["travelDate"]), command["commandId"])
    reply["booking"] = {**booking_snapshot(command, booking_id), "expiresAt": "2099-01-01T00:10:00.000Z"}
    return reply


def _date(text: str) -> date:
    return date.fromisoformat(text)


def test_one_rider_cannot_hold_more_than_their_share_across_trips(client, bus):
    bus.answer = held_elsewhere
    limit = get_settings().hold_limit_seats_per_rider
    created = []
    for route in range(limit // 4):
        response = client.post("/v1/bookings", json={**BOOKING_REQUEST, "routeId": f"R{route}", "seatsBooked": 4},
                               headers={**auth(), "Idempotency-Key": f"hoard-{route}-{time.time()}"})
        assert response.status_code == 201, response.text
        created.append(response)
    over = client.post("/v1/bookings", json={**BOOKING_REQUEST, "routeId": "R99", "seatsBooked": 1}, headers=auth())
    error(over, 409, "hold_limit_reached")
    assert client.post("/v1/bookings", json={**BOOKING_REQUEST, "routeId": "R99", "seatsBooked": 1},
                       headers=auth("rider-2")).status_code == 201  # another rider is not affected
    paid = created[0].json()["booking"]
    bus.answer = lambda key, command: {**accepted(key, command),
                                       "booking": {**paid, "status": "CONFIRMED", "expiresAt": None}}
    assert client.post(f"/v1/bookings/{paid['id']}/confirm", headers=auth("payments", "SERVICE"),
                       json={"paymentId": "p1", "paymentStatus": "SUCCESS", "amount": paid["totalPrice"]}
                       ).status_code == 200
    bus.answer = held_elsewhere
    assert client.post("/v1/bookings", json={**BOOKING_REQUEST, "routeId": "R99", "seatsBooked": 4},
                       headers=auth()).status_code == 201  # paying freed its seats


# -- the audit trail ------------------------------------------------------------------------


def test_refusals_for_the_callers_role_are_audited(client, bus):
    response = client.post(f"/v1/bookings/{BOOKING_ID}/confirm", headers=auth("rider-1"),
                           json={"paymentId": "p", "paymentStatus": "FAILED"})
    assert response.status_code == 403
    [(topic, key, entry)] = audited(client, bus)
    assert (topic, key) == (CONTRACT.audit, "rider-1")
    assert (entry["status"], entry["outcome"], entry["action"]) == (403, "refused",
                                                                    "POST /v1/bookings/{bookingId}/confirm")


@pytest.fixture(scope="module")
def booked(database_url):
    return store_log(database_url, mixed(trip_log("hardening-audit")))


@pytest.mark.integration
def test_reads_of_a_riders_booking_by_others_are_audited(reading_client, bus, booked):
    booking = next(b for b in booked.state.bookings.values() if b.rider_id == "rider-a")
    assert reading_client.get(f"/v1/bookings/{booking.booking_id}", headers=auth("rider-a")).status_code == 200
    assert audited(reading_client, bus) == []  # the rider reading their own booking
    assert reading_client.get(f"/v1/bookings/{booking.booking_id}", headers=auth("ops", "ADMIN")).status_code == 200
    [(_, key, entry)] = audited(reading_client, bus)
    assert (key, entry["action"], entry["bookingId"], entry["role"]) == ("ops", "read_booking", booking.booking_id,
                                                                        "ADMIN")
