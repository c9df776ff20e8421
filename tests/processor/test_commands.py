"""Every command type through the real broker and a real worker process, driven by the
upstream client (app.client): replies, lifecycle events, duplicates, malformed records,
log-driven expiry with a one-minute hold, and a waiting list whose one-minute offer
expires by the log too. The module ends by replaying its whole command log into a fresh
processor (determinism)."""

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest

from app.wire.topics import CONTRACT, REPLAYED, REPLY_PARTITION, REPLY_TO, TICK_KEY
from tests.processor.commands import (
    DRIVER,
    PAYMENTS,
    SERVICE,
    create_booking,
    join_waitlist,
    on_booking,
    on_entry,
    on_trip,
    publish_trip,
    rider,
)
from tests.processor.namespace import Namespace, TICK_SECONDS, worker_namespace
from tests.processor.reading import as_json, lifecycle, replies_by_command
from tests.processor.replay import assert_replay_matches
from tests.processor.sending import answers
from tests.support.kafka import produce_raw, read_topic
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    # One-minute holds and offers (the shortest the policy's minutes allow) for the expiry tests.
    with worker_namespace(tmp_path_factory.mktemp("processor"),
                          {"HOLD_MINUTES": "1", "PAYMENT_HOLD_MINUTES": "1", "OFFER_MINUTES": "1"}) as namespace:
        send(namespace, on_trip("query_availability", "warm-up"), deadline_s=120)
        yield namespace


def send(ns: Namespace, *commands: dict[str, Any], deadline_s: float = 30) -> list[dict[str, Any]] | dict[str, Any]:
    replies = answers(ns, *commands, deadline_s=deadline_s)
    return replies[0] if len(replies) == 1 else replies


def events_of(ns: Namespace, booking_id: str) -> list[dict[str, Any]]:
    """The booking's lifecycle events in version order, each distinct event once."""
    found = [as_json(ms[0]) for ms in lifecycle(ns).values() if as_json(ms[0]).get("bookingId") == booking_id]
    return sorted(found, key=lambda e: (e.get("version") or 0, e["type"]))


def at_least(count: int, found: list) -> list | None:
    return found if len(found) >= count else None


def new_trip(ns: Namespace, capacity: int = 4) -> str:
    route_id = "R" + uuid.uuid4().hex[:10]
    published = send(ns, publish_trip(route_id, capacity))
    assert published["ok"] and published["tripVersion"] == 1, published
    return route_id


def test_a_booking_lives_through_every_command_type(ns: Namespace) -> None:
    route = new_trip(ns)
    available = send(ns, on_trip("query_availability", route, rider("rider-1")))
    assert [(leg["free"], leg["held"], leg["sold"]) for leg in available["availability"]] == [(4, 0, 0), (4, 0, 0)]

    created = send(ns, create_booking(route, "rider-1", seats=2))
    booking = created["booking"]
    assert (booking["status"], booking["seatNumbers"], booking["totalPrice"]) == ("HELD", [1, 2], "8400.00")
    steps = [
        on_booking("initiate_payment", booking["id"], PAYMENTS, paymentId="pay-1"),
        on_booking("payment_succeeded", booking["id"], PAYMENTS, paymentId="pay-1", amount="8400.00"),
        on_booking("check_in", booking["id"], DRIVER),
        on_booking("complete", booking["id"], DRIVER),
    ]
    statuses = [reply["booking"]["status"] for reply in send(ns, *steps)]
    assert statuses == ["PAYMENT_INITIATED", "CONFIRMED", "CHECKED_IN", "COMPLETED"]

    events = wait_for("five lifecycle events", lambda: at_least(5, events_of(ns, booking["id"])))
    assert [(e["type"], e["version"]) for e in events] == [
        (CONTRACT.created, 1), (CONTRACT.payment_initiated, 2), (CONTRACT.confirmed, 4),
        (CONTRACT.checked_in, 5), (CONTRACT.completed, 6)]
    for event in events:
        assert event["eventId"] == f"{booking['id']}:{event['version']}"
        assert event["booking"]["version"] == event["version"] and event["booking"]["id"] == booking["id"]


def test_failed_payment_cancel_refund_expire_and_trip_cancel(ns: Namespace) -> None:
    route = new_trip(ns, capacity=6)
    unpaid, paid, live = (send(ns, create_booking(route, f"rider-{n}"))["booking"] for n in range(3))

    failed = send(ns, on_booking("payment_failed", unpaid["id"], PAYMENTS, paymentId="pay-x"))
    assert failed["ok"] and failed["booking"]["paymentStatus"] == "FAILED"
    cancelled = send(ns, on_booking("cancel_booking", unpaid["id"], rider("rider-0"), reason="changed my plans"))
    assert cancelled["booking"]["status"] == "CANCELLED" and cancelled["booking"]["refundAmount"] == "0.00"

    send(ns, on_booking("payment_succeeded", paid["id"], PAYMENTS, paymentId="pay-2", amount=paid["totalPrice"]))
    refund_owed = send(ns, on_booking("cancel_booking", paid["id"], rider("rider-1"), reason="cannot travel then"))
    assert refund_owed["booking"]["refundAmount"] == paid["totalPrice"]  # 30 days ahead: all of it
    refunded = send(ns, on_booking("refund_done", paid["id"], PAYMENTS, amount=paid["totalPrice"]))
    assert refunded["booking"]["status"] == "REFUNDED"

    assert send(ns, on_trip("expire_holds", route))["ok"]  # nothing due: accepted, no change
    trip_cancelled = send(ns, on_trip("cancel_trip", route, SERVICE, reason="driver is ill"))
    assert trip_cancelled["ok"] and trip_cancelled["tripVersion"] == 2
    after = send(ns, on_trip("query_availability", route, rider("rider-9")))
    assert [leg["free"] for leg in after["availability"]] == [6, 6]

    late = send(ns, create_booking(route, "rider-7"))
    assert (late["ok"], late["code"]) == (False, "trip_cancelled")
    stranger = send(ns, on_booking("check_in", live["id"], rider("rider-2")))
    assert (stranger["ok"], stranger["code"]) == (False, "forbidden")
    assert wait_for("the trip's cancel event", lambda: [
        e for e in events_of(ns, live["id"]) if e["type"] == CONTRACT.cancelled])


def test_a_duplicate_gets_the_identical_reply_and_re_emits_identical_events(ns: Namespace) -> None:
    route = new_trip(ns)
    command = create_booking(route, "rider-1")
    first, again = send(ns, command, command)
    booking_id = first["booking"]["id"]
    rejected = create_booking(route, "rider-2", seats=4)
    send(ns, rejected, rejected)

    replies = replies_by_command(ns)
    assert len(replies[command["commandId"]]) == 2 and len(set(replies[command["commandId"]])) == 1
    assert len(replies[rejected["commandId"]]) == 2 and len(set(replies[rejected["commandId"]])) == 1
    assert again.pop(REPLAYED) is True and REPLAYED not in first  # the reply's header says so
    assert first == again
    created = wait_for("the event twice", lambda: at_least(2, lifecycle(ns)[f"{booking_id}:1"]))
    assert created[0].value == created[1].value
    available = send(ns, on_trip("query_availability", route, rider("rider-3")))
    assert [leg["held"] for leg in available["availability"]] == [1, 1], "the duplicate held nothing more"


MALFORMED = [
    # (key, value, the dead-letter code, whether an error reply is due)
    (b"R1:2030-01-01", b"{not json", "invalid_json", False),
    (b"R1:2030-01-01", b'{"type": "teleport", "commandId": "m-unknown"}', "unknown_type", True),
    (b"R1:2030-01-01", b'{"v": 9, "type": "expire_holds", "commandId": "m-version", "actor": '
                       b'{"userId": "u", "role": "SERVICE"}, "routeId": "R1", "travelDate": "2030-01-01"}',
     "unsupported_version", True),
    (b"R1:2030-01-01", b'{"type": "create_booking", "commandId": "m-missing"}', "invalid_command", True),
    (b"R2:2030-01-01", b'{"type": "expire_holds", "commandId": "m-key", "actor": {"userId": "u", "role": '
                       b'"SERVICE"}, "routeId": "R1", "travelDate": "2030-01-01"}', "wrong_key", True),
    (TICK_KEY, b'{"type": "tick"}', "invalid_command", False),
    # Text the read model could not store is refused here too, not only over HTTP.
    (b"R1:2030-01-01", b'{"type": "cancel_booking", "commandId": "m-nul", "actor": {"userId": "u", "role": "RIDER"}, '
                       b'"bookingId": "R1.20300101.AAAAAAAAAAAAAAAA", "reason": "My plans changed\\u0000, sorry"}',
     "invalid_command", True),
    (b"R1:2030-01-01", b'{"type": "payment_failed", "commandId": "m-nul-pay", "actor": {"userId": "payments", '
                       b'"role": "SERVICE"}, "bookingId": "R1.20300101.AAAAAAAAAAAAAAAA", "paymentId": "p\\u0000"}',
     "invalid_command", True),
]


def test_malformed_records_go_to_dead_letters_with_bytes_headers_and_reason(ns: Namespace) -> None:
    marker = uuid.uuid4().hex
    headers = {REPLY_TO: ns.topics.replies.encode(), REPLY_PARTITION: b"0",
               "x-test": marker.encode()}
    for key, value, _, _ in MALFORMED:
        produce_raw(ns.topics.commands, key, value, headers)
    assert send(ns, on_trip("query_availability", "R1"))["code"] == "trip_not_found", "the worker carries on"

    letters = [m for m in read_topic(ns.topics.dead_letters) if m.headers.get("x-test") == marker.encode()]
    assert sorted((m.key, m.value, m.headers["dlq-code"].decode()) for m in letters) == sorted(
        (key, value, code) for key, value, code, _ in MALFORMED)
    for letter in letters:
        assert letter.headers["dlq-reason"] and letter.headers["dlq-topic"] == ns.topics.commands.encode()
        assert letter.headers[REPLY_TO] == headers[REPLY_TO]
    replies = replies_by_command(ns)
    for _, value, code, answered in MALFORMED:
        if answered:
            command_id = orjson.loads(value)["commandId"]
            body = orjson.loads(replies[command_id][0])
            assert (body["ok"], body["code"]) == (False, code)


def test_a_hold_expires_by_tick_frees_its_seats_and_refuses_a_late_payment(ns: Namespace) -> None:
    route = new_trip(ns, capacity=2)
    booking = send(ns, create_booking(route, "rider-1", seats=2))["booking"]
    assert send(ns, create_booking(route, "rider-2"))["code"] == "seats_unavailable"

    expired = wait_for("booking.expired", lambda: [e for e in events_of(ns, booking["id"])
                                                   if e["type"] == CONTRACT.expired], timeout_s=90, every_s=1)
    event = expired[0]
    assert event["booking"]["status"] == "EXPIRED" and event["eventId"] == f"{booking['id']}:2"
    late_by_ms = iso_ms(event["occurredAt"]) - iso_ms(booking["expiresAt"])
    assert 0 <= late_by_ms <= (TICK_SECONDS + 1) * 1000, f"expired {late_by_ms} ms after its time"

    available = send(ns, on_trip("query_availability", route, rider("rider-3")))
    assert [(leg["free"], leg["held"]) for leg in available["availability"]] == [(2, 0), (2, 0)]
    late = send(ns, on_booking("payment_succeeded", booking["id"], PAYMENTS, paymentId="pay-late",
                               amount=booking["totalPrice"]))
    assert (late["ok"], late["code"]) == (False, "hold_expired")
    refund = wait_for("booking.refund_required", lambda: [e for e in events_of(ns, booking["id"])
                                                           if e["type"] == CONTRACT.refund_required])[0]
    assert (refund["paymentId"], refund["amount"], refund["reason"]) == ("pay-late", booking["totalPrice"],
                                                                         "hold_expired")
    assert send(ns, create_booking(route, "rider-2"))["booking"]["seatNumbers"] == [1]


def entry_events(ns: Namespace, entry_id: str) -> list[dict[str, Any]]:
    found = [as_json(ms[0]) for ms in lifecycle(ns).values() if as_json(ms[0]).get("entryId") == entry_id]
    return sorted(found, key=lambda e: e["version"])


def test_a_waiting_list_gets_freed_seats_in_join_order_and_an_unaccepted_offer_passes_on(ns: Namespace) -> None:
    route = new_trip(ns, capacity=2)
    chosen = send(ns, {**create_booking(route, "rider-1", seats=2), "seatNumbers": [2, 1]})["booking"]
    assert chosen["seatNumbers"] == [1, 2]
    seat_map = send(ns, on_trip("query_seat_map", route, rider("rider-9"), originStopId="IBD",
                                destinationStopId="OYO"))["seats"]
    assert seat_map == [{"seatNumber": 1, "free": False}, {"seatNumber": 2, "free": False}]
    assert send(ns, join_waitlist(route, "rider-2", seats=3))["code"] == "too_many_seats"
    first, second = (send(ns, join_waitlist(route, who))["entry"] for who in ("rider-2", "rider-3"))
    assert (first["status"], first["position"], second["position"]) == ("WAITING", 1, 2)

    send(ns, on_booking("cancel_booking", chosen["id"], rider("rider-1"), reason="changed my plans"))
    offered = wait_for("both offers", lambda: [e for e in (*entry_events(ns, first["id"]),
                                                            *entry_events(ns, second["id"]))
                                               if e["type"] == "waitlist.offered"])
    assert sorted((e["entryId"], e["entry"]["seatNumbers"][0]) for e in offered) == sorted(
        [(first["id"], 1), (second["id"], 2)])
    assert send(ns, create_booking(route, "rider-4"))["code"] == "seats_unavailable"  # held for the offers

    accepted = send(ns, on_entry("accept_offer", first["id"], rider("rider-2")))
    assert (accepted["booking"]["status"], accepted["booking"]["seatNumbers"]) == ("HELD", [1])
    assert accepted["entry"]["status"] == "ACCEPTED" and accepted["entry"]["bookingId"] == accepted["booking"]["id"]

    ended = wait_for("the second offer's expiry", lambda: [e for e in entry_events(ns, second["id"])
                                                           if e["type"] == "waitlist.offer_expired"],
                     timeout_s=90, every_s=1)[0]
    late_by_ms = iso_ms(ended["occurredAt"]) - iso_ms(ended["entry"]["offerExpiresAt"])
    assert 0 <= late_by_ms <= (TICK_SECONDS + 1) * 1000, f"expired {late_by_ms} ms after its time"
    late = send(ns, on_entry("accept_offer", second["id"], rider("rider-3")))
    assert (late["ok"], late["code"], late["entryId"]) == (False, "offer_expired", second["id"])


def test_the_whole_command_log_replays_to_the_same_state_replies_and_events(ns: Namespace) -> None:
    ns.assert_alive("worker-1")
    ns.workers["worker-1"].stop()  # no more ticks: the log can come to rest
    assert assert_replay_matches(ns) > 50


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
