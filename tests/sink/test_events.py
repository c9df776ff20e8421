"""Parsing records into rows, and what counts as a poison record. Pure: no Kafka, no
Postgres, so these are not integration tests."""

import orjson
import pytest

from app.wire.topics import CONTRACT
from sinks.events import Batch, parse_record
from sinks.schema import BOOKING_FIELDS, ENTRY_FIELDS, Invalid
from tests.support.scenario import every_kind_of_booking, unique_prefix, waiting_list


@pytest.fixture(scope="module")
def log():
    return every_kind_of_booking(unique_prefix("parse"))


def first(log, topic: str) -> dict:
    return next(orjson.loads(v) for t, _, v in log.records if t == topic)


def test_the_mapping_covers_every_snapshot_field_in_order(log):
    snapshot = first(log, CONTRACT.confirmed)["booking"]
    assert [f.key for f in BOOKING_FIELDS] == list(snapshot)


def test_every_genuine_record_parses(log):
    for topic, _, value in log.records:
        parse_record(topic, value)


def test_history_rows_carry_the_versions_they_produced(log):
    confirmed = first(log, CONTRACT.confirmed)  # PAID and CONFIRMED in one event
    rows = parse_record(CONTRACT.confirmed, orjson.dumps(confirmed)).history
    assert [(r[1], r[3], r[4], r[5]) for r in rows] == [
        (0, 3, "PAYMENT_INITIATED", "PAID"), (1, 4, "PAID", "CONFIRMED")]


def test_the_batch_keeps_the_newest_version_whatever_the_order(log):
    parsed = [parse_record(t, v) for t, _, v in log.records]
    forward, backward = Batch(), Batch()
    for rows in parsed:
        forward.add(rows)
    for rows in reversed(parsed):
        backward.add(rows)
    assert forward.bookings == backward.bookings
    assert forward.history == backward.history


def corrupt(event: dict, path: tuple, value) -> bytes:
    target = event
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return orjson.dumps(event)


@pytest.mark.parametrize(("path", "value", "reason"), [
    (("v",), 99, "^v: "),
    (("type",), "booking.created", "type"),
    (("eventId",), None, "^eventId: "),
    (("version",), 7, "differs"),
    (("booking", "totalPrice"), "1e20", "totalPrice"),
    (("booking", "totalPrice"), 1234.5, "totalPrice"),
    (("booking", "seatsBooked"), True, "seatsBooked"),
    (("booking", "totalPrice"), "1000000000000.00", "totalPrice"),
    (("booking", "riderId"), "nul\x00byte", "riderId"),
    (("booking", "createdAt"), "yesterday", "createdAt"),
    (("booking", "status"), "LOST", "status"),
    (("booking", "seatNumbers"), [1, 2**40], "seatNumbers"),
    (("booking", "travelDate"), "2031-02-30", "travelDate"),
    (("booking", "departureTime"), "09:30:00+01:00", "departureTime"),
    (("booking", "createdAt"), "2031-03-10T08:00:00", "createdAt"),
    (("booking", "version"), 0, "version"),
    (("transitions",), [], "transitions"),
    (("transitions", 0, "at"), 12, "at"),
    (("transitions",), [{"from": "HELD"}] * 9, "transitions"),
])
def test_records_that_break_the_contract_are_refused(log, path, value, reason):
    event = first(log, CONTRACT.confirmed)
    with pytest.raises(Invalid, match=reason):
        parse_record(CONTRACT.confirmed, corrupt(event, path, value))


@pytest.mark.parametrize("value", [None, b"", b"not json", b"[1, 2]", b'"text"'])
def test_records_that_are_not_events_are_refused(value):
    with pytest.raises(Invalid):
        parse_record(CONTRACT.created, value)


def test_a_refund_demand_for_an_unknown_booking_writes_nothing(log):
    event = first(log, CONTRACT.refund_required)
    event["booking"] = None
    rows = parse_record(CONTRACT.refund_required, orjson.dumps(event))
    assert rows.booking is None and not rows.history and rows.trip is None


def test_unknown_snapshot_fields_are_ignored(log):
    """The processor may add a field before the sink stores it."""
    event = first(log, CONTRACT.created)
    event["booking"]["loyaltyPoints"] = 12
    assert parse_record(CONTRACT.created, orjson.dumps(event)).booking is not None


def test_an_event_cannot_carry_more_moves_than_its_version(log):
    event = first(log, CONTRACT.confirmed)  # two moves, version 4
    event["version"] = event["booking"]["version"] = 1
    with pytest.raises(Invalid, match="more moves"):
        parse_record(CONTRACT.confirmed, orjson.dumps(event))


def test_every_problem_is_named_in_the_reason():
    with pytest.raises(Invalid, match="^not JSON"):
        parse_record(CONTRACT.created, b"{not json")
    with pytest.raises(Invalid, match="object"):
        parse_record(CONTRACT.created, b"[1, 2]")
    with pytest.raises(Invalid, match="unexpected topic"):
        parse_record("some.other.topic", b"{}")


@pytest.fixture(scope="module")
def waitlist_log():
    return waiting_list(unique_prefix("parse-waitlist"))


def test_the_entry_mapping_covers_every_snapshot_field_in_order(waitlist_log):
    entry = first(waitlist_log, CONTRACT.waitlist_offered)["entry"]
    assert [f.key for f in ENTRY_FIELDS] == list(entry)
    for topic, _, value in waitlist_log.records:
        parse_record(topic, value)
    assert {t for t, _, _ in waitlist_log.records} >= set(CONTRACT.waitlist) - {CONTRACT.waitlist_cancelled}


@pytest.mark.parametrize(("path", "value", "reason"), [
    (("entryId",), "someone-else", "differs"),
    (("version",), 9, "differs"),
    (("entry", "status"), "HELD", "status"),
    (("entry", "seatNumbers"), [2**40], "seatNumbers"),
    (("entry", "position"), 0, "position"),
    (("transitions", 0, "to"), "CONFIRMED", "to"),
])
def test_waiting_list_records_that_break_the_contract_are_refused(waitlist_log, path, value, reason):
    event = first(waitlist_log, CONTRACT.waitlist_offered)
    with pytest.raises(Invalid, match=reason):
        parse_record(CONTRACT.waitlist_offered, corrupt(event, path, value))
