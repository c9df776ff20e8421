"""The authorization matrix, through the real gateway, worker, sink and Postgres: every
endpoint x {no token, expired, tampered, alg none, owner, other rider, driver of the trip,
other driver, admin, service}. Ownership and "driver of the trip" are decided where the
state is (the worker for commands, Postgres rows for reads), so only the real stack can
prove them.

Every case acts with users of its own (unique ids), so no two cases share a rate-limit
bucket, and a case that changes state gets a fresh trip and booking."""

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from app.config import get_settings
from devstack.stack import Stack
from tests.support.http import token

pytestmark = pytest.mark.integration

TRAVEL_DATE = (date.today() + timedelta(days=30)).isoformat()
TRIP = {"timezone": "Africa/Lagos", "departureTime": "09:00", "capacity": 10, "currency": "NGN",
        "stops": [{"stopId": "LAG", "offsetMinutes": 0}, {"stopId": "IBD", "offsetMinutes": 90}],
        "legFares": ["2500.00"]}
JOURNEY = {"originStopId": "LAG", "destinationStopId": "IBD", "seatsBooked": 1}
WAITLIST_STATES = ("SOLD_OUT", "WAITING", "OFFERED")
IDENTITIES = ("none", "expired", "tampered", "alg_none", "owner", "other_rider", "trip_driver", "other_driver",
              "admin", "service")
BAD_TOKENS = IDENTITIES[:4]
ROLES = {"owner": "RIDER", "other_rider": "RIDER", "trip_driver": "DRIVER", "other_driver": "DRIVER",
         "admin": "ADMIN", "service": "SERVICE"}


@dataclass
class World:
    """A trip driven by `users["trip_driver"]` with one booking of `users["owner"]`, or
    sold out with a waiting-list entry of theirs."""

    users: dict[str, str]
    route_id: str
    booking: dict[str, Any]
    entry: dict[str, Any] | None = None

    def headers(self, identity: str) -> dict[str, str]:
        if identity == "none":
            return {}
        return {"Authorization": f"Bearer {self.token(identity)}"}

    def token(self, identity: str) -> str:
        if identity == "expired":
            return token(self.users["owner"], "RIDER", ttl=-120)
        if identity == "tampered":
            return tampered(token(self.users["owner"], "RIDER"), sub=self.users["admin"], role="ADMIN")
        if identity == "alg_none":
            claims = {"sub": self.users["admin"], "role": "ADMIN", "exp": datetime.now(UTC) + timedelta(hours=1)}
            return jwt.encode(claims, None, algorithm="none")
        return token(self.users[identity], ROLES[identity])


def tampered(valid: str, **claims: Any) -> str:
    """The same signature over a payload changed to claim more."""
    header, payload, signature = valid.split(".")
    decoded = jwt.decode(valid, get_settings().jwt_secret, algorithms=["HS256"])
    forged = jwt.utils.base64url_encode(jwt.api_jws.json.dumps({**decoded, **claims}).encode()).decode()
    assert forged != payload
    return ".".join((header, forged, signature))


def new_users() -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {identity: f"{identity}-{run}" for identity in ROLES}


def call(client: httpx.Client, method: str, path: str, headers: dict[str, str], body: Any = None) -> httpx.Response:
    return client.request(method, path, headers=headers, json=body)


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


def until_answered(client: httpx.Client, method: str, path: str, headers: dict[str, str], body: Any,
                   attempts: int = 6) -> httpx.Response:
    """A setup call, retried after a 503 with the same Idempotency-Key, as a client should
    (the worker may still be taking its partitions when the suite starts)."""
    keyed = {**headers, "Idempotency-Key": str(uuid.uuid4())}
    for _ in range(attempts):
        response = call(client, method, path, keyed, body)
        if response.status_code != 503:
            return response
    return response


def build_world(client: httpx.Client, state: str) -> World:
    """A fresh trip and a booking in `state` (none, HELD, CONFIRMED, CHECKED_IN); or the
    trip sold out (SOLD_OUT) to a rider of the setup's own, with the owner's waiting-list
    entry WAITING or OFFERED (once that rider cancelled)."""
    users = new_users()
    route_id = "AZ" + uuid.uuid4().hex[:10]
    setup = World(users, route_id, {})
    capacity = 1 if state in WAITLIST_STATES else TRIP["capacity"]
    ok(until_answered(client, "PUT", f"/v1/trips/{route_id}/{TRAVEL_DATE}", setup.headers("service"),
                      {**TRIP, "capacity": capacity, "driverId": users["trip_driver"]}))
    if state == "none":
        return setup
    if state in WAITLIST_STATES:
        return waitlist_world(client, setup, state)
    booking = ok(call(client, "POST", "/v1/bookings", setup.headers("owner"),
                      {"routeId": route_id, "travelDate": TRAVEL_DATE, **JOURNEY}), 201)["booking"]
    if state in ("CONFIRMED", "CHECKED_IN"):
        booking = ok(call(client, "POST", f"/v1/bookings/{booking['id']}/confirm", setup.headers("service"),
                          {"paymentId": f"pay-{route_id}", "paymentStatus": "SUCCESS",
                           "amount": booking["totalPrice"]}))
    if state == "CHECKED_IN":
        booking = ok(call(client, "POST", f"/v1/bookings/{booking['id']}/check-in", setup.headers("admin")))
    return World(users, route_id, booking)


def waitlist_world(client: httpx.Client, setup: World, state: str) -> World:
    filler = {"Authorization": f"Bearer {token('filler-' + setup.route_id, 'RIDER')}"}
    taken = ok(call(client, "POST", "/v1/bookings", filler, {"routeId": setup.route_id, "travelDate": TRAVEL_DATE,
                                                             **JOURNEY}), 201)["booking"]
    if state == "SOLD_OUT":
        return setup
    entry = ok(call(client, "POST", f"/v1/trips/{setup.route_id}/{TRAVEL_DATE}/waitlist", setup.headers("owner"),
                    JOURNEY), 201)["entry"]
    if state == "OFFERED":
        ok(call(client, "POST", f"/v1/bookings/{taken['id']}/cancel", filler, REASON))
    return World(setup.users, setup.route_id, {}, entry)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: Callable[[World], str]
    allowed: dict[str, int]  # identity -> success status
    denied: dict[str, int]  # identity -> refusal status (403 or 404); the bad tokens are 401
    state: str = "none"  # the booking (or entry) a changing call needs; reads use the shared world
    body: Callable[[World], Any] = lambda world: None
    changes: bool = True
    hidden: str = "booking_not_found"  # the code of a 404: never "not yours"


def booking_path(suffix: str = "") -> Callable[[World], str]:
    return lambda world: f"/v1/bookings/{world.booking['id']}{suffix}"


def trip_path(suffix: str = "") -> Callable[[World], str]:
    return lambda world: f"/v1/trips/{world.route_id}/{TRAVEL_DATE}{suffix}"


def entry_path(suffix: str = "") -> Callable[[World], str]:
    """The world's entry; in the shared world (bad tokens, refused before any id is read),
    its booking's id, which has an entry id's shape."""
    return lambda world: f"/v1/waitlist/{(world.entry or world.booking)['id']}{suffix}"


RIDERS_ONLY = {"owner": 200, "other_rider": 200}
NOT_RIDERS = {"trip_driver": 403, "other_driver": 403, "admin": 403, "service": 403}
TRIP_MANAGERS = {"trip_driver": 200, "admin": 200, "service": 200}
FORBIDDEN_BUT = {identity: 403 for identity in ROLES}
SEES_BOOKING = {"owner": 200, "trip_driver": 200, "admin": 200, "service": 200}
HIDDEN = {"other_rider": 404, "other_driver": 404}
REASON = {"reason": "my plans changed, sorry"}


def only(allowed: dict[str, int]) -> dict[str, int]:
    return {identity: status for identity, status in FORBIDDEN_BUT.items() if identity not in allowed}


ENDPOINTS: dict[str, Endpoint] = {
    "create": Endpoint("POST", lambda w: "/v1/bookings", {"owner": 201, "other_rider": 201}, NOT_RIDERS,
                       body=lambda w: {"routeId": w.route_id, "travelDate": TRAVEL_DATE, "originStopId": "LAG",
                                       "destinationStopId": "IBD", "seatsBooked": 1}),
    "get": Endpoint("GET", booking_path(), SEES_BOOKING, HIDDEN, changes=False),
    "by_reference": Endpoint("GET", lambda w: f"/v1/bookings/reference/{w.booking['bookingReference']}",
                             SEES_BOOKING, HIDDEN, changes=False),
    "mine": Endpoint("GET", lambda w: "/v1/bookings", RIDERS_ONLY, NOT_RIDERS, changes=False),
    "upcoming": Endpoint("GET", lambda w: "/v1/bookings/upcoming", RIDERS_ONLY, NOT_RIDERS, changes=False),
    "payment": Endpoint("POST", booking_path("/payment"), {"owner": 200, "admin": 200, "service": 200},
                        {"other_rider": 404, "trip_driver": 403, "other_driver": 403}, state="HELD"),
    "confirm": Endpoint("POST", booking_path("/confirm"), {"service": 200}, only({"service": 200}), state="HELD",
                        body=lambda w: {"paymentId": "pay-1", "paymentStatus": "SUCCESS",
                                        "amount": w.booking["totalPrice"]}),
    "cancel": Endpoint("POST", booking_path("/cancel"), {"owner": 200},
                       {"other_rider": 404, **NOT_RIDERS}, state="HELD", body=lambda w: REASON),
    # Another trip's driver is told no more than for an unknown booking.
    "check_in": Endpoint("POST", booking_path("/check-in"), TRIP_MANAGERS,
                         {**only(TRIP_MANAGERS), "other_driver": 404}, state="CONFIRMED"),
    "complete": Endpoint("POST", booking_path("/complete"), TRIP_MANAGERS,
                         {**only(TRIP_MANAGERS), "other_driver": 404}, state="CHECKED_IN"),
    "refund_done": Endpoint("POST", booking_path("/refund-done"), {"service": 200}, only({"service": 200}),
                            state="CONFIRMED", body=lambda w: {"amount": w.booking["totalPrice"]}),
    "publish_trip": Endpoint("PUT", trip_path(), TRIP_MANAGERS, only(TRIP_MANAGERS),
                             body=lambda w: {**TRIP, "driverId": w.users["trip_driver"]}),
    "cancel_trip": Endpoint("POST", trip_path("/cancel"), TRIP_MANAGERS, only(TRIP_MANAGERS),
                            body=lambda w: {"reason": "vehicle broke down"}),
    "availability": Endpoint("GET", trip_path("/availability"), {identity: 200 for identity in ROLES}, {},
                             changes=False),
    "manifest": Endpoint("GET", trip_path("/manifest"), {"trip_driver": 200, "admin": 200},
                         only({"trip_driver": 200, "admin": 200}), changes=False),
    "admin_search": Endpoint("GET", lambda w: f"/v1/admin/bookings?routeId={w.route_id}", {"admin": 200},
                             only({"admin": 200}), changes=False),
    "admin_statistics": Endpoint("GET", lambda w: f"/v1/admin/statistics?from={TRAVEL_DATE}&to={TRAVEL_DATE}",
                                 {"admin": 200}, only({"admin": 200}), changes=False),
    "force_cancel": Endpoint("POST", lambda w: f"/v1/admin/bookings/{w.booking['id']}/cancel", {"admin": 200},
                             only({"admin": 200}), state="CONFIRMED", body=lambda w: REASON),
    "seat_map": Endpoint("GET", trip_path("/seats?from=LAG&to=IBD"), {identity: 200 for identity in ROLES}, {},
                         changes=False),
    "join_waitlist": Endpoint("POST", trip_path("/waitlist"), {"owner": 201, "other_rider": 201}, NOT_RIDERS,
                              state="SOLD_OUT", body=lambda w: JOURNEY),
    "my_entries": Endpoint("GET", lambda w: "/v1/waitlist", RIDERS_ONLY, NOT_RIDERS, changes=False),
    "leave_waitlist": Endpoint("DELETE", entry_path(), {"owner": 200}, {"other_rider": 404, **NOT_RIDERS},
                               state="WAITING", hidden="waitlist_entry_not_found"),
    "accept_offer": Endpoint("POST", entry_path("/accept"), {"owner": 201}, {"other_rider": 404, **NOT_RIDERS},
                             state="OFFERED", hidden="waitlist_entry_not_found"),
    "trip_waitlist": Endpoint("GET", trip_path("/waitlist"), {"admin": 200}, only({"admin": 200}), changes=False),
}


def test_the_matrix_covers_every_authenticated_operation(stack: Stack) -> None:
    with stack.client() as client:
        spec = client.get("/openapi.json").json()
    operations = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops
                  if not path.startswith("/health") and path != "/metrics"}
    assert len(operations) == len(ENDPOINTS)
    for endpoint in ENDPOINTS.values():
        assert set(endpoint.allowed) | set(endpoint.denied) == set(ROLES)


@pytest.fixture(scope="module")
def read_world(stack: Stack) -> World:
    """One confirmed booking, once the sink has written it (reads come from Postgres)."""
    with stack.client() as client:
        world = build_world(client, "CONFIRMED")
        deadline = time.monotonic() + 30
        while call(client, "GET", f"/v1/bookings/{world.booking['id']}", world.headers("admin")).status_code != 200:
            assert time.monotonic() < deadline, "the sink never wrote the booking"
            time.sleep(0.2)
    return world


CASES = [(name, identity) for name in ENDPOINTS for identity in IDENTITIES]


@pytest.mark.parametrize(("name", "identity"), CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_authorization(stack: Stack, read_world: World, name: str, identity: str) -> None:
    endpoint = ENDPOINTS[name]
    with stack.client() as client:
        if identity in BAD_TOKENS or not endpoint.changes:
            world = read_world
        else:
            world = build_world(client, endpoint.state)
        response = call(client, endpoint.method, endpoint.path(world), world.headers(identity), endpoint.body(world))
    expected = 401 if identity in BAD_TOKENS else {**endpoint.allowed, **endpoint.denied}[identity]
    assert response.status_code == expected, response.text
    body = response.json()
    if expected >= 400:
        assert body["status"] == expected and body["code"]
        if expected == 404:
            assert body["code"] == endpoint.hidden  # never "not yours"
    if name in ("get", "by_reference") and expected == 200:
        assert body["id"] == world.booking["id"]
    if name == "mine" and expected == 200:
        assert (world.booking["id"] in [b["id"] for b in body["content"]]) == (identity == "owner")

