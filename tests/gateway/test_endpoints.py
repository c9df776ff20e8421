"""Every endpoint beyond create and publish: its happy path and its documented errors.
Reads come from a real Postgres holding events the real core made (tests/support/scenario.py);
commands go to the stand-in bus, which checks them against the worker's wire models."""

import orjson
import pytest

from app.wire.topics import CONTRACT
from tests.gateway.replies import rejected
from tests.gateway.stand_ins import audited
from tests.gateway.stored import far_date, mixed, store_log, trip_log
from tests.support.http import auth
from tests.support.scenario import TripLog

pytestmark = pytest.mark.integration


@pytest.fixture
def client(reading_client):
    """Every test here may read: the gateway reads the session's database."""
    return reading_client

BOOKING_ID = "R1.20300115.ABCDEFGHIJKLMNOP"


@pytest.fixture(scope="module")
def stored(database_url) -> TripLog:
    return store_log(database_url, mixed(trip_log("endpoints", travel_date=far_date())))


def booking_of(log: TripLog, rider: str, status: str) -> dict:
    return next(b for b in log.final_snapshots().values() if b["riderId"] == rider and b["status"] == status)


def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["status"], body["code"]) == (status, code) and body["message"] and body["timestamp"]
    return body


# -- reads ------------------------------------------------------------------------------


def test_by_id_for_rider_driver_admin_and_service_only(client, stored):
    booking = booking_of(stored, "rider-a", "CONFIRMED")
    path = f"/v1/bookings/{booking['id']}"
    for headers in (auth("rider-a"), auth(stored.driver.user_id, "DRIVER"), auth("ops", "ADMIN"),
                    auth("payments", "SERVICE")):
        assert client.get(path, headers=headers).json() == booking
    error(client.get(path, headers=auth("rider-b")), 404, "booking_not_found")
    error(client.get(path, headers=auth("driver-x", "DRIVER")), 404, "booking_not_found")
    error(client.get("/v1/bookings/not-one-of-ours", headers=auth()), 404, "booking_not_found")


def test_by_reference(client, stored):
    booking = booking_of(stored, "rider-b", "CONFIRMED")
    path = f"/v1/bookings/reference/{booking['bookingReference']}"
    assert client.get(path, headers=auth("rider-b")).json() == booking
    assert client.get(path, headers=auth("ops", "ADMIN")).json() == booking
    error(client.get(path, headers=auth("rider-a")), 404, "booking_not_found")
    error(client.get("/v1/bookings/reference/BK20300115ZZZZZZ", headers=auth("ops", "ADMIN")), 404,
          "booking_not_found")


def test_mine_is_a_page_newest_first_with_a_status_filter(client, stored):
    # rider-a's history spans other tests' trips too: compare with this trip's part
    page = client.get("/v1/bookings", params={"size": 100}, headers=auth("rider-a")).json()
    assert {"content", "totalElements", "totalPages", "size", "number"} <= page.keys()
    ids = [b["id"] for b in page["content"]]
    ours = [b for b in page["content"] if b["routeId"] == stored.route_id]
    assert len(ours) == 2 and ids == [b["id"] for b in sorted(page["content"], key=lambda b: (b["createdAt"], b["id"]),
                                                                  reverse=True)]
    refunded = client.get("/v1/bookings", params={"status": "REFUNDED", "size": 1}, headers=auth("rider-a")).json()
    assert refunded["size"] == 1 and refunded["number"] == 0
    assert all(b["status"] == "REFUNDED" for b in refunded["content"]) and refunded["totalElements"] >= 1
    assert refunded["totalPages"] == refunded["totalElements"]


@pytest.mark.parametrize("params", [{"status": "SOLD"}, {"size": 0}, {"size": 101}, {"page": -1}, {"page": "x"}])
def test_mine_with_bad_paging_is_400(client, params):
    assert client.get("/v1/bookings", params=params, headers=auth()).status_code == 400


def test_upcoming_is_confirmed_or_checked_in_and_not_departed(client, stored):
    upcoming = client.get("/v1/bookings/upcoming", headers=auth("rider-b")).json()
    ours = [b for b in upcoming if b["routeId"] == stored.route_id]
    assert [b["status"] for b in ours] == ["CONFIRMED"]
    assert upcoming == sorted(upcoming, key=lambda b: (b["departureAt"], b["id"]))


def test_riders_endpoints_are_for_riders(client):
    for path in ("/v1/bookings", "/v1/bookings/upcoming"):
        error(client.get(path, headers=auth("ops", "ADMIN")), 403, "forbidden")


def test_manifest_per_boarding_stop(client, stored):
    path = f"/v1/trips/{stored.route_id}/{stored.travel_date}/manifest"
    manifest = client.get(path, headers=auth(stored.driver.user_id, "DRIVER")).json()
    assert [s["stopId"] for s in manifest["stops"]] == ["lagos", "ibadan", "ilorin"]
    boarding = manifest["stops"][0]["boarding"]
    assert sorted(p["riderId"] for p in boarding) == ["rider-a", "rider-b", "rider-c"]
    assert [p["checkedIn"] for p in boarding if p["riderId"] == "rider-c"] == [True]
    assert manifest["passengers"] == 3 and manifest["seats"] == 5
    assert manifest["stops"][2]["alightingSeats"] == 5 and manifest["stops"][1]["boarding"] == []
    assert client.get(path, headers=auth("ops", "ADMIN")).json() == manifest
    error(client.get(path, headers=auth("driver-x", "DRIVER")), 403, "forbidden")
    error(client.get(path, headers=auth("rider-a")), 403, "forbidden")
    error(client.get(f"/v1/trips/nowhere/{stored.travel_date}/manifest", headers=auth("ops", "ADMIN")), 404,
          "trip_not_found")


def test_admin_search_filters_and_pages(client, stored):
    params = {"routeId": stored.route_id, "status": ["CONFIRMED", "CANCELLED"], "size": 2}
    page = client.get("/v1/admin/bookings", params=params, headers=auth("ops", "ADMIN")).json()
    assert page["totalElements"] == 3 and page["totalPages"] == 2 and len(page["content"]) == 2
    assert {b["status"] for b in page["content"]} <= {"CONFIRMED", "CANCELLED"}
    by_rider = client.get("/v1/admin/bookings", params={"riderId": "rider-c", "routeId": stored.route_id},
                          headers=auth("ops", "ADMIN")).json()
    assert sorted(b["status"] for b in by_rider["content"]) == ["COMPLETED", "HELD"]
    error(client.get("/v1/admin/bookings", headers=auth("rider-a")), 403, "forbidden")
    assert client.get("/v1/admin/bookings", params={"travelDateFrom": "2030-02-30"},
                      headers=auth("ops", "ADMIN")).status_code == 400


def test_statistics_over_a_date_range(client, stored):
    day = stored.travel_date.isoformat()
    stats = client.get("/v1/admin/statistics", params={"from": day, "to": day}, headers=auth("ops", "ADMIN")).json()
    assert stats["totalBookings"] == 6 and stats["uniqueRiders"] == 3 and stats["uniqueDrivers"] == 1
    assert stats["revenue"][0]["currency"] == "NGN" and stats["revenue"][0]["paidBookings"] == 5
    body = error(client.get("/v1/admin/statistics", params={"from": day, "to": "2000-01-01"},
                            headers=auth("ops", "ADMIN")), 400, "validation_failed")
    assert "to" in body["errors"]
    assert client.get("/v1/admin/statistics", params={"from": day}, headers=auth("ops", "ADMIN")).status_code == 400


# -- commands ---------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body", "role", "type_", "fields"), [
    ("payment", None, "RIDER", "initiate_payment", {}),
    ("payment", {"paymentId": "pay-1"}, "SERVICE", "initiate_payment", {"paymentId": "pay-1"}),
    ("confirm", {"paymentId": "pay-1", "paymentStatus": "SUCCESS", "amount": 5250}, "SERVICE", "payment_succeeded",
     {"paymentId": "pay-1", "amount": "5250"}),
    ("confirm", {"paymentId": "pay-1", "paymentStatus": "FAILED"}, "SERVICE", "payment_failed", {"paymentId": "pay-1"}),
    ("cancel", {"reason": "  plans changed, sorry  "}, "RIDER", "cancel_booking", {"reason": "plans changed, sorry"}),
    ("check-in", None, "DRIVER", "check_in", {}),
    ("complete", None, "ADMIN", "complete", {}),
    ("refund-done", {"amount": "100.50"}, "SERVICE", "refund_done", {"amount": "100.50"}),
])
def test_booking_commands_send_the_worker_command_and_answer_the_booking(client, bus, path, body, role, type_,
                                                                           fields):
    response = client.post(f"/v1/bookings/{BOOKING_ID}/{path}", json=body, headers=auth("someone", role))
    assert response.status_code == 200, response.text
    key, command = bus.sent[0]
    assert key == "R1:2030-01-15" and command["type"] == type_ and command["bookingId"] == BOOKING_ID
    assert command["actor"] == {"userId": "someone", "role": role}
    assert {name: command[name] for name in fields} == fields
    assert response.json()["id"] == BOOKING_ID


def test_force_cancel_acts_as_admin(client, bus):
    response = client.post(f"/v1/admin/bookings/{BOOKING_ID}/cancel", json={"reason": "fraudulent booking"},
                           headers=auth("ops", "ADMIN"))
    assert response.status_code == 200, response.text
    assert bus.sent[0][1]["type"] == "cancel_booking" and bus.sent[0][1]["actor"]["role"] == "ADMIN"
    error(client.post(f"/v1/admin/bookings/{BOOKING_ID}/cancel", json={"reason": "fraudulent booking"},
                      headers=auth("rider-1")), 403, "forbidden")


@pytest.mark.parametrize(("path", "body", "field"), [
    ("cancel", {"reason": "too short"}, "reason"),
    ("cancel", {"reason": " " * 20}, "reason"),
    ("cancel", {"reason": "x" * 501}, "reason"),
    ("confirm", {"paymentId": "p", "paymentStatus": "SUCCESS"}, "body"),
    ("confirm", {"paymentId": "p", "paymentStatus": "MAYBE", "amount": 1}, "paymentStatus"),
    ("confirm", {"paymentId": "p", "paymentStatus": "SUCCESS", "amount": "1.001"}, "amount"),
    ("refund-done", {"amount": -1}, "amount"),
    ("refund-done", {"amount": "ten"}, "amount"),
])
def test_invalid_command_bodies_are_400_per_field(client, bus, path, body, field):
    role = "RIDER" if path == "cancel" else "SERVICE"
    response = client.post(f"/v1/bookings/{BOOKING_ID}/{path}", json=body, headers=auth("someone", role))
    assert field in error(response, 400, "validation_failed")["errors"]
    assert bus.sent == []


@pytest.mark.parametrize(("path", "role", "code", "status", "shown"), [
    ("confirm", "SERVICE", "hold_expired", 409, "hold_expired"),
    ("confirm", "SERVICE", "amount_mismatch", 422, "amount_mismatch"),
    ("cancel", "RIDER", "not_owner", 404, "booking_not_found"),
    ("cancel", "RIDER", "invalid_transition", 409, "invalid_transition"),
    ("check-in", "DRIVER", "forbidden", 403, "forbidden"),
    ("payment", "RIDER", "booking_not_found", 404, "booking_not_found"),
])
def test_worker_refusals_keep_their_documented_statuses(client, bus, path, role, code, status, shown):
    bus.answer = rejected(code)
    body = {"confirm": {"paymentId": "p", "paymentStatus": "SUCCESS", "amount": 1},
            "cancel": {"reason": "plans changed, sorry"}}.get(path)
    error(client.post(f"/v1/bookings/{BOOKING_ID}/{path}", json=body, headers=auth("someone", role)), status, shown)


def test_a_booking_id_that_is_not_ours_is_404_without_a_command(client, bus):
    error(client.post("/v1/bookings/whatever/payment", headers=auth()), 404, "booking_not_found")
    assert bus.sent == []


def test_trip_cancel_and_availability(client, bus):
    cancelled = client.post("/v1/trips/R1/2030-01-15/cancel", json={"reason": "vehicle broke down"},
                            headers=auth("route-service", "SERVICE"))
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json() == {"routeId": "R1", "travelDate": "2030-01-15", "tripVersion": 1, "status": "CANCELLED"}
    assert bus.sent[0][1]["type"] == "cancel_trip" and bus.sent[0][1]["reason"] == "vehicle broke down"
    free = client.get("/v1/trips/R1/2030-01-15/availability", headers=auth("rider-1"))
    assert free.status_code == 200 and free.json()["legs"][0] == {"fromStopId": "A", "toStopId": "B", "free": 3,
                                                                   "held": 1, "sold": 0}
    assert bus.sent[1][1]["type"] == "query_availability"
    bus.answer = rejected("trip_not_found")
    error(client.get("/v1/trips/R2/2030-01-15/availability", headers=auth("rider-1")), 404, "trip_not_found")
    error(client.post("/v1/trips/R1/2030-01-15/cancel", json={"reason": "x"}, headers=auth("rider-1")), 403,
          "forbidden")


# -- cross-cutting ----------------------------------------------------------------------


def test_commands_are_audited_on_the_topic_and_in_the_log(client, bus, caplog):
    caplog.set_level("INFO", logger="openride.audit")
    response = client.post(f"/v1/bookings/{BOOKING_ID}/cancel", json={"reason": "plans changed, sorry"},
                           headers={**auth("rider-1"), "X-Request-ID": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    assert bus.published == [], "written in batches, off the request's path"
    [(topic, key, entry)] = audited(client, bus)
    assert (topic, key) == (CONTRACT.audit, "rider-1")
    assert entry["requestId"] == "req-42" and entry["action"] == "cancel_booking" and entry["role"] == "RIDER"
    assert entry["bookingId"] == BOOKING_ID and entry["status"] == 200 and entry["outcome"] == "ok"
    assert entry["commandId"] == bus.sent[0][1]["commandId"]
    assert [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "openride.audit"] == [entry]


def test_refusals_are_audited_with_their_code(client, bus):
    bus.answer = rejected("seats_unavailable")
    client.post("/v1/bookings", json={"routeId": "R1", "travelDate": "2030-01-15", "originStopId": "A",
                                      "destinationStopId": "C", "seatsBooked": 1}, headers=auth())
    entry = audited(client, bus)[0][2]
    assert (entry["status"], entry["code"], entry["outcome"]) == (409, "seats_unavailable", "refused")


def test_reads_are_not_audited_but_admin_reads_are(client, bus, stored):
    client.get(f"/v1/trips/{stored.route_id}/{stored.travel_date}/availability", headers=auth())
    assert audited(client, bus) == []
    client.get("/v1/admin/bookings", headers=auth("ops", "ADMIN"))
    assert [entry["action"] for _, _, entry in audited(client, bus)] == ["search_bookings"]


def test_metrics_count_requests_latency_timeouts_and_in_flight(client):
    client.get("/health/live")
    client.get("/v1/bookings/upcoming")  # 401
    text = client.get("/metrics").text
    assert 'openride_gateway_requests_total{method="GET",route="/health/live",status="200"}' in text
    assert 'route="/v1/bookings/upcoming",status="401"' in text
    assert "openride_gateway_request_duration_seconds_bucket" in text
    assert "openride_gateway_commands_in_flight 0.0" in text
    assert "openride_gateway_reply_timeouts_total" in text or "# TYPE openride_gateway_reply_timeouts" in text


def test_a_huge_body_is_413(client, bus):
    response = client.post("/v1/bookings", content=b'{"routeId": "' + b"x" * 100_000 + b'"}',
                           headers={**auth(), "Content-Type": "application/json"})
    error(response, 413, "payload_too_large")


def test_unknown_paths_and_methods_keep_the_shape(client):
    error(client.get("/v1/nothing", headers=auth()), 404, "not_found")
    error(client.delete("/v1/bookings", headers=auth()), 405, "method_not_allowed")


def test_cors_when_configured(database_url, bus):
    from fastapi.testclient import TestClient

    from app.config import get_settings
    from gateway.main import create_app

    settings = get_settings().model_copy(update={"database_url": database_url,
                                                 "cors_origins": "https://app.openride.example"})
    with TestClient(create_app(settings, bus=bus)) as browser:
        preflight = browser.options("/v1/bookings", headers={
            "Origin": "https://app.openride.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,idempotency-key"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.openride.example"
        other = browser.get("/health/live", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
