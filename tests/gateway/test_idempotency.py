"""Idempotency-Key: replay, conflicting body, in flight, concurrent duplicates, across
gateway processes (two apps sharing the Postgres store), and the retry after a 503."""

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from fastapi.testclient import TestClient

from app.config import get_settings
from gateway.kafka import ReplyTimeout
from gateway.main import create_app
from tests.gateway.support import BOOKING_REQUEST, FakeBus, auth, new_key, rejected

pytestmark = pytest.mark.integration


def keyed(key: str, user: str = "rider-1") -> dict[str, str]:
    return {**auth(user), "Idempotency-Key": key}


def post(client: TestClient, key: str, body: dict | None = None, user: str = "rider-1"):
    return client.post("/v1/bookings", json=body or BOOKING_REQUEST, headers=keyed(key, user))


def test_same_key_same_body_replays_the_original_status_and_body(client, bus):
    key = new_key()
    first, again = post(client, key), post(client, key, {**BOOKING_REQUEST, "idempotencyKey": key})
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert len(bus.sent) == 1


def test_the_body_is_compared_as_json_not_as_bytes(client, bus):
    key = new_key()
    post(client, key)
    reordered = client.post("/v1/bookings", content=b'{"seatsBooked": 2, "destinationStopId": "C", "originStopId": "A",'
                                                    b' "travelDate": "2030-01-15",   "routeId": "R1"}',
                            headers={**keyed(key), "Content-Type": "application/json"})
    assert reordered.status_code == 201 and reordered.headers["idempotent-replayed"] == "true"


def test_same_key_other_body_is_422(client, bus):
    key = new_key()
    post(client, key)
    other = post(client, key, {**BOOKING_REQUEST, "seatsBooked": 1})
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    elsewhere = client.post("/v1/bookings/R1.20300115.ABCDEFGHIJKLMNOP/payment", headers=keyed(key))
    assert elsewhere.status_code == 422
    assert len(bus.sent) == 1


def test_a_refusal_is_replayed_too(client, bus):
    key = new_key()
    bus.answer = rejected("seats_unavailable")
    first = post(client, key)
    bus.answer = lambda *_: pytest.fail("a replay must not reach the worker")
    again = post(client, key)
    assert first.status_code == again.status_code == 409 and again.content == first.content


def test_keys_are_per_user(client, bus):
    key = new_key()
    mine, theirs = post(client, key, user="rider-1"), post(client, key, user="rider-2")
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["booking"]["riderId"] == "rider-1" and theirs.json()["booking"]["riderId"] == "rider-2"
    assert len(bus.sent) == 2


def test_still_in_flight_is_409_then_the_outcome(client, bus):
    key = new_key()
    bus.delay = 1.0
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, client, key)
        while not bus.sent:  # the first one is with the "worker"
            pass
        second = post(client, key)
        assert second.status_code == 409 and second.json()["code"] == "request_in_flight"
        assert "retry-after" in second.headers
        assert first.result().status_code == 201
    assert post(client, key).content == first.result().content


def test_concurrent_duplicates_reach_the_worker_once(client, bus):
    key = new_key()
    bus.delay = 0.3
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: post(client, key), range(8)))
    assert len(bus.sent) == 1
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}
    created = [r.content for r in responses if r.status_code == 201]
    assert len(set(created)) == 1


@pytest.fixture
def second_process(database_url):
    """Another gateway process: its own app, bus and pool, the same Postgres."""
    other_bus = FakeBus()
    settings = get_settings().model_copy(update={"database_url": database_url})
    with TestClient(create_app(settings, bus=other_bus), raise_server_exceptions=False) as other:
        yield other, other_bus


def test_a_retry_on_another_process_sees_the_key(client, bus, second_process):
    other, other_bus = second_process
    key = new_key()
    bus.delay = 1.0
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, client, key)
        while not bus.sent:
            pass
        assert post(other, key).status_code == 409
        first.result()
    replay = post(other, key)
    assert replay.content == first.result().content and other_bus.sent == []


def test_after_a_timeout_the_retry_sends_the_same_command_again(client, bus):
    key = new_key()

    def time_out(_key, command):
        raise ReplyTimeout(command["commandId"])

    bus.answer = time_out
    timed_out = post(client, key)
    assert timed_out.status_code == 503 and timed_out.json()["commandId"] == bus.sent[0][1]["commandId"]
    bus.answer = FakeBus().answer
    retried = post(client, key)
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
    assert bus.sent[1][1]["commandId"] == bus.sent[0][1]["commandId"]


def age_key(database_url: str, key: str, column: str, interval: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"UPDATE idempotency_keys SET {column} = now() - %s::interval WHERE idempotency_key = %s",
                     (interval, key))


def test_a_claim_left_by_a_dead_gateway_is_taken_over_once_its_lock_ends(client, bus, database_url):
    key = new_key()
    bus.delay = 1.0
    with ThreadPoolExecutor(1) as pool:
        pool.submit(post, client, key)
        while not bus.sent:
            pass
        age_key(database_url, key, "locked_until", "1 second")  # as if its gateway died long ago
        taken_over = post(client, key)
    assert taken_over.status_code == 201 and len(bus.sent) == 2
    assert bus.sent[0][1]["commandId"] == bus.sent[1][1]["commandId"]


def test_keys_are_kept_24_hours(client, bus, database_url):
    key = new_key()
    post(client, key)
    age_key(database_url, key, "created_at", "23 hours")
    assert post(client, key, {**BOOKING_REQUEST, "seatsBooked": 1}).status_code == 422
    age_key(database_url, key, "created_at", "25 hours")
    assert post(client, key, {**BOOKING_REQUEST, "seatsBooked": 1}).status_code == 201
