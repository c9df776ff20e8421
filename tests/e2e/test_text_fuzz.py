"""Whatever text a client puts in a free-text or id field, over HTTP or straight into the
command log: no 5xx, nothing half-applied, and the read model ends equal to the worker's
state. One NUL in a cancel reason once froze a booking's row in Postgres for good (the
sink dead-lettered every later event of it); these examples look for any such text.

Real broker, worker, sink, gateway and Postgres (the session's stack)."""

import asyncio
import json
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.wire.topics import CONTRACT
from gateway import queries
from devstack.stack import Stack
from tests.support.http import auth
from tests.support.kafka import produce_raw, read_topic
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TRAVEL_DATE = (date.today() + timedelta(days=20)).isoformat()
SAFE_STOPS = ("FZ-A", "FZ-B")
NASTY = ["\x00", "\x01", "\x1f", "\x7f", "\x85", "\u2028", "\ud800", "\udfff", "\ufeff", "\ufffe", "\U0001f68c",
         "\n", "\t", "'; DROP TABLE bookings; --", "%00", "\\u0000"]
TEXT = st.one_of(
    st.text(max_size=30),
    st.builds(lambda head, odd, tail: head + odd + tail, st.text(max_size=12), st.sampled_from(NASTY),
              st.text(max_size=12)),
    st.text(min_size=400, max_size=3000),
)


def unstorable(text: str) -> bool:
    """Text no part of the system can carry into Postgres: refused wherever it enters."""
    return "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def send(client: httpx.Client, method: str, path: str, headers: dict[str, str], body: Any) -> httpx.Response:
    """With `json.dumps`, as a client in most languages would: lone surrogates as \\u escapes."""
    response = client.request(method, path, headers={**headers, "Content-Type": "application/json"},
                              content=json.dumps(body).encode())
    assert response.status_code < 500, (method, path, body, response.text)
    return response


def refused_if_unstorable(response: httpx.Response, *texts: str) -> bool:
    """True if the request was applied; an unstorable text must have been refused with 400."""
    if any(unstorable(text) for text in texts):
        assert response.status_code == 400, response.text
    return response.status_code < 300


class Fuzz:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.bookings: set[str] = set()
        self.who = ""

    def new_example(self) -> None:
        """Users of its own per example: the rate limit and hold limits are per user."""
        self.who = uuid.uuid4().hex[:8]

    def rider(self) -> dict[str, str]:
        return auth(f"rider-fz-{self.who}")

    def service(self, name: str) -> dict[str, str]:
        return auth(f"{name}-fz-{self.who}", "SERVICE")

    def trip(self, client: httpx.Client, text: str) -> tuple[str, tuple[str, str]]:
        """A trip whose stop ids and driver are the text, if it can be stored; else plain ones."""
        route_id = "FZ" + uuid.uuid4().hex[:10]
        for stops, driver in (((text[:64] or "x", "to-" + text[:61]), text[:64] or "d"), (SAFE_STOPS, "driver-fz")):
            body = {"timezone": "Africa/Lagos", "departureTime": "09:00", "capacity": 12, "driverId": driver,
                    "stops": [{"stopId": stops[0], "offsetMinutes": 0}, {"stopId": stops[1], "offsetMinutes": 60}],
                    "legFares": ["1000.00"]}
            response = send(client, "PUT", f"/v1/trips/{route_id}/{TRAVEL_DATE}", self.service("routes"), body)
            if refused_if_unstorable(response, *stops, driver):
                return route_id, stops
        raise AssertionError("a trip with plain stops was refused")

    def book(self, client: httpx.Client, route_id: str, stops: tuple[str, str], text: str) -> str:
        request = {"routeId": route_id, "travelDate": TRAVEL_DATE, "originStopId": stops[0],
                   "destinationStopId": stops[1], "seatsBooked": 1}
        response = send(client, "POST", "/v1/bookings", self.rider(), {**request, "searchId": text[:100],
                                                                      "idempotencyKey": text[:100] or "k"})
        if not refused_if_unstorable(response, text[:100]):
            response = send(client, "POST", "/v1/bookings", self.rider(), request)
        assert response.status_code == 201, response.text
        booking_id = response.json()["booking"]["id"]
        self.bookings.add(booking_id)
        return booking_id

    def over_http(self, client: httpx.Client, booking_id: str, text: str) -> None:
        path = f"/v1/bookings/{booking_id}"
        payments = self.service("payments")
        refused_if_unstorable(send(client, "POST", f"{path}/payment", payments, {"paymentId": text[:64] or "p"}),
                              text[:64])
        refused_if_unstorable(send(client, "POST", f"{path}/confirm", payments,
                                   {"paymentId": text[:64] or "p", "paymentStatus": "FAILED"}), text[:64])
        refused_if_unstorable(send(client, "POST", f"{path}/cancel", self.rider(), {"reason": text[:500]}),
                              text[:500])

    def over_kafka(self, route_id: str, booking_id: str, text: str) -> None:
        """Straight into the command log: the worker applies it or dead-letters it."""
        actor = {"userId": f"rider-fz-{self.who}", "role": "RIDER"}
        command = {"v": 1, "type": "cancel_booking", "commandId": f"fz-{uuid.uuid4()}", "actor": actor,
                   "bookingId": booking_id, "reason": text}
        produce_raw(self.stack.namespace + CONTRACT.commands, f"{route_id}:{TRAVEL_DATE}".encode(),
                    json.dumps(command).encode(), {})

    def cancel_trip(self, client: httpx.Client, route_id: str, text: str) -> None:
        response = send(client, "POST", f"/v1/trips/{route_id}/{TRAVEL_DATE}/cancel", self.service("routes"),
                        {"reason": text[:500]})
        refused_if_unstorable(response, text[:500])


@pytest.fixture(scope="module")
def fuzz(stack: Stack) -> Fuzz:
    return Fuzz(stack)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(text=TEXT)
def test_any_text_in_any_field_is_stored_or_refused(fuzz: Fuzz, text: str) -> None:
    fuzz.new_example()
    with fuzz.stack.client() as client:
        route_id, stops = fuzz.trip(client, text)
        by_http, by_kafka, in_trip = (fuzz.book(client, route_id, stops, text) for _ in range(3))
        fuzz.over_http(client, by_http, text)
        fuzz.over_kafka(route_id, by_kafka, text)
        fuzz.cancel_trip(client, route_id, text)
        # Answered after everything before it on the trip's partition: the worker carried on.
        answered = send(client, "GET", f"/v1/trips/{route_id}/{TRAVEL_DATE}/availability", fuzz.rider(), None)
        assert answered.status_code == 200, answered.text
        assert fuzz.bookings >= {by_http, by_kafka, in_trip}


def test_the_read_model_equals_the_workers_state_for_every_fuzzed_booking(fuzz: Fuzz) -> None:
    assert fuzz.bookings, "run after the fuzzing"
    published = latest_snapshots(fuzz.stack.namespace, fuzz.bookings)
    assert set(published) == fuzz.bookings

    def stored_equals_published() -> bool:
        stored = read_bookings(fuzz.stack.database_url, sorted(fuzz.bookings))
        return all(orjson.dumps(stored.get(b)) == orjson.dumps(published[b]) for b in fuzz.bookings)

    wait_for("the sink to hold every booking as the worker published it", stored_equals_published, timeout_s=60)
    commands = (fuzz.stack.namespace + CONTRACT.commands).encode()
    refused_events = [m for m in read_topic(fuzz.stack.namespace + CONTRACT.dead_letters)
                      if m.headers.get("dlq-topic") != commands]
    assert refused_events == [], "the sink refused an event the worker published"


def latest_snapshots(namespace: str, booking_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Each booking as its newest lifecycle event shows it: the worker's state, as published."""
    newest: dict[str, tuple[int, dict[str, Any]]] = {}
    for name in CONTRACT.lifecycle:
        for record in read_topic(namespace + name):
            event = orjson.loads(record.value)
            booking = event.get("booking")
            if event.get("bookingId") in booking_ids and booking and booking["version"] > newest.get(
                    event["bookingId"], (0, {}))[0]:
                newest[event["bookingId"]] = (booking["version"], booking)
    return {booking_id: booking for booking_id, (_, booking) in newest.items()}


def read_bookings(database_url: str, booking_ids: list[str]) -> dict[str, dict[str, Any]]:
    async def read() -> dict[str, dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            found = {b: await queries.booking_by_id(conn, b) for b in booking_ids}
        return {b: booking for b, booking in found.items() if booking is not None}

    return asyncio.run(read())
