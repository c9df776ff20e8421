"""Idempotency-Key, end to end through the gateway and the worker's own record handling
(tests.gateway.stand_ins.Worker): replay of the original status and body, another request
under the key, duplicates in flight on one gateway process and on two, a lost reply, a
gateway gone, keys kept past 24 hours, and the key's scope (user and trip). No Postgres is
involved: the trip's writer remembers the keys."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient

from app.config import get_settings
from gateway.main import create_app
from tests.gateway.replies import BOOKING_REQUEST, TRIP, new_key
from tests.gateway.stand_ins import NO_DATABASE, Worker
from tests.support.http import auth

TRAVEL_DATE = (date.today() + timedelta(days=30)).isoformat()  # within the window trips may be published in
REQUEST = {**BOOKING_REQUEST, "travelDate": TRAVEL_DATE}
OTHER_TRIP_REQUEST = {**REQUEST, "routeId": "R2"}


@pytest.fixture
def bus() -> Worker:
    return Worker()


@pytest.fixture(autouse=True)
def trips(client) -> None:
    for route in ("R1", "R2"):
        published = client.put(f"/v1/trips/{route}/{TRAVEL_DATE}", json=TRIP, headers=auth("route-svc", "SERVICE"))
        assert published.status_code == 200, published.text


def keyed(key: str, user: str = "rider-1") -> dict[str, str]:
    return {**auth(user), "Idempotency-Key": key}


def post(client: TestClient, key: str, body: dict | None = None, user: str = "rider-1"):
    return client.post("/v1/bookings", json=body or REQUEST, headers=keyed(key, user))


def without_timestamp(response) -> dict:
    return {name: value for name, value in response.json().items() if name != "timestamp"}


def test_same_key_same_body_replays_the_original_status_and_body(client, bus):
    key = new_key()
    first, again = post(client, key), post(client, key, {**REQUEST, "idempotencyKey": key})
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert bus.bookings() == 1


def test_the_body_is_compared_as_json_not_as_bytes(client, bus):
    key = new_key()
    post(client, key)
    reordered = client.post("/v1/bookings", content=b'{"seatsBooked": 2, "destinationStopId": "C", "originStopId": "A",'
                                                    b' "travelDate": "' + TRAVEL_DATE.encode() + b'",   "routeId": "R1"}',
                            headers={**keyed(key), "Content-Type": "application/json"})
    assert reordered.status_code == 201 and reordered.headers["idempotent-replayed"] == "true"


def test_same_key_other_request_on_the_trip_is_422(client, bus):
    key = new_key()
    booking_id = post(client, key).json()["booking"]["id"]
    other = post(client, key, {**REQUEST, "seatsBooked": 1})
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    elsewhere = client.post(f"/v1/bookings/{booking_id}/payment", headers=keyed(key))
    assert elsewhere.status_code == 422 and elsewhere.json()["code"] == "idempotency_key_reused"
    assert "idempotent-replayed" not in other.headers
    assert bus.bookings() == 1
    assert client.get(f"/v1/trips/R1/{TRAVEL_DATE}/availability", headers=auth()).json()["legs"][0]["held"] == 2


def test_a_refusal_is_replayed_too_even_once_the_seats_are_free(client, bus):
    first_two = post(client, new_key()).json()["booking"]["id"]
    post(client, new_key())  # the trip's 4 seats are held
    key = new_key()
    refused = post(client, key)
    assert refused.status_code == 409 and refused.json()["code"] == "seats_unavailable"
    cancelled = client.post(f"/v1/bookings/{first_two}/cancel", json={"reason": "plans changed, sorry"},
                            headers=auth())
    assert cancelled.status_code == 200, cancelled.text
    again = post(client, key)
    assert again.status_code == 409 and again.headers["idempotent-replayed"] == "true"
    assert without_timestamp(again) == without_timestamp(refused)
    assert post(client, new_key()).status_code == 201, "a new request gets the freed seats"


def test_a_trip_publication_is_repeatable(client, bus):
    headers = {**auth("ops", "ADMIN"), "Idempotency-Key": new_key()}
    first, again = (client.put(f"/v1/trips/R1/{TRAVEL_DATE}", json=TRIP, headers=headers) for _ in range(2))
    assert first.status_code == again.status_code == 200 and again.content == first.content
    assert first.json()["tripVersion"] == 2 and again.headers["idempotent-replayed"] == "true"
    assert client.put(f"/v1/trips/R1/{TRAVEL_DATE}", json=TRIP, headers=auth("ops", "ADMIN")).json()["tripVersion"] == 3


def test_a_waiting_list_join_and_a_leave_are_repeatable(client, bus):
    """Commands on a waiting-list entry name no trip: the entry id does, and scopes the key."""
    post(client, new_key())
    post(client, new_key())  # the trip's 4 seats are held
    join = {"originStopId": "A", "destinationStopId": "C", "seatsBooked": 2}
    headers = keyed(new_key(), "rider-2")
    first, again = (client.post(f"/v1/trips/R1/{TRAVEL_DATE}/waitlist", json=join, headers=headers) for _ in range(2))
    assert first.status_code == again.status_code == 201 and again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    other = client.post(f"/v1/trips/R1/{TRAVEL_DATE}/waitlist", json={**join, "seatsBooked": 1}, headers=headers)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert bus.store.cache[f"R1:{TRAVEL_DATE}".encode()].state.joined == 1
    entry_id = first.json()["entry"]["id"]
    leave = keyed(new_key(), "rider-2")
    left, left_again = (client.delete(f"/v1/waitlist/{entry_id}", headers=leave) for _ in range(2))
    assert left.status_code == left_again.status_code == 200 and left_again.content == left.content
    assert left.json()["entry"]["status"] == "LEFT" and left_again.headers["idempotent-replayed"] == "true"


def test_keys_are_per_user(client, bus):
    key = new_key()
    mine, theirs = post(client, key, user="rider-1"), post(client, key, user="rider-2")
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["booking"]["riderId"] == "rider-1" and theirs.json()["booking"]["riderId"] == "rider-2"
    assert bus.bookings() == 2


def test_a_key_is_scoped_to_its_trip(client, bus):
    """The same key for another trip is another request (gateway/dispatch.py says why):
    each is applied once and each one's retries get its own outcome."""
    key = new_key()
    here, there = post(client, key), post(client, key, OTHER_TRIP_REQUEST)
    assert here.status_code == there.status_code == 201 and bus.bookings() == 2
    assert post(client, key).content == here.content and post(client, key, OTHER_TRIP_REQUEST).content == there.content


def wait_until_handling(bus: Worker) -> None:
    deadline = time.monotonic() + 10
    while not bus.lock.locked():
        assert time.monotonic() < deadline, "the first request never reached the worker"
        time.sleep(0.005)


def test_a_duplicate_while_the_first_is_in_flight_gets_its_outcome(client, bus):
    key = new_key()
    bus.delay = 0.5
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, client, key)
        wait_until_handling(bus)
        second = post(client, key)
        assert first.result().status_code == second.status_code == 201
    assert second.content == first.result().content and second.headers["idempotent-replayed"] == "true"
    assert len(bus.handled) == 2 + 1, "the duplicate waited for the first one's reply (2 trips published)"


def test_a_duplicate_with_another_body_in_flight_is_422(client, bus):
    key = new_key()
    bus.delay = 0.5
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, client, key)
        wait_until_handling(bus)
        other = post(client, key, {**REQUEST, "seatsBooked": 1})
        assert first.result().status_code == 201
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


def test_concurrent_duplicates_are_sent_once_and_answered_alike(client, bus):
    key = new_key()
    bus.delay = 0.3
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: post(client, key), range(8)))
    assert [r.status_code for r in responses] == [201] * 8
    assert len({r.content for r in responses}) == 1 and bus.bookings() == 1
    assert sum("idempotent-replayed" in r.headers for r in responses) == 7


@pytest.fixture
def second_process(bus):
    """Another gateway process: its own app and in-flight table, the same worker."""
    settings = get_settings().model_copy(update={"database_url": NO_DATABASE})
    with TestClient(create_app(settings, bus=bus), raise_server_exceptions=False) as other:
        yield other


def test_a_duplicate_on_another_gateway_process_gets_the_same_outcome(client, bus, second_process):
    key = new_key()
    bus.delay = 0.5
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, client, key)
        wait_until_handling(bus)
        elsewhere = post(second_process, key)
    assert elsewhere.status_code == first.result().status_code == 201
    assert elsewhere.content == first.result().content and elsewhere.headers["idempotent-replayed"] == "true"
    assert bus.bookings() == 1


def test_after_a_lost_reply_the_retry_gets_the_outcome_that_applied(client, bus):
    key = new_key()
    bus.lose_replies = 1
    timed_out = post(client, key)
    assert timed_out.status_code == 503 and timed_out.json()["code"] == "reply_timeout"
    retried = post(client, key)
    assert retried.status_code == 201 and retried.headers["idempotent-replayed"] == "true"
    assert timed_out.json()["commandId"] == bus.handled[-1]["commandId"] and bus.bookings() == 1


def test_the_key_outlives_the_gateway_that_answered(bus, client):
    key = new_key()
    settings = get_settings().model_copy(update={"database_url": NO_DATABASE})
    with TestClient(create_app(settings, bus=bus)) as gone:
        first = post(gone, key)
    again = post(client, key)
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert post(client, key, {**REQUEST, "seatsBooked": 1}).status_code == 422


def test_keys_are_kept_past_24_hours(client, bus):
    key = new_key()
    first = post(client, key)
    bus.clock_ms = lambda: int(time.time() * 1000) + 25 * 3600 * 1000
    again = post(client, key)
    assert again.status_code == 201 and again.content == first.content
    assert post(client, key, {**REQUEST, "seatsBooked": 1}).status_code == 422
