"""The write path (parse, batch, COPY + merge) and the read queries against a real
Postgres, without Kafka: records are handed over in an order the test chooses."""

import asyncio
import random
from datetime import timedelta

import orjson
import psycopg
import pytest

from app.wire.topics import CONTRACT
from gateway import queries
from sinks import store
from sinks.main import build_batch
from tests.sink import support
from tests.support.postgres import rows, scalar
from tests.support.scenario import (
    START,
    TripLog,
    booking_records,
    every_kind_of_booking,
    expected_bookings,
    expected_entries,
    expected_history,
    unique_prefix,
    waiting_list,
)
from tests.support.messages import FakeMessage
from tests.support.sink_write import apply

pytestmark = pytest.mark.integration

def table_dump(url: str) -> dict[str, list]:
    return {table: rows(url, f"SELECT * FROM {table} ORDER BY 1, 2")
            for table in ("bookings", "booking_history", "trips", "waitlist_entries")}


def assert_matches_log(url: str, records) -> None:
    bookings = expected_bookings(records)
    found, moves = support.read_back(url, sorted(bookings))
    for booking_id, snapshot in bookings.items():
        # Byte for byte: the read side renders exactly what the events carried.
        assert orjson.dumps(found[booking_id]) == orjson.dumps(snapshot)
    assert moves == expected_history(records)


def test_events_become_rows_with_ordered_history(database):
    log = every_kind_of_booking(unique_prefix("rows"))
    apply(database, log.records)

    assert_matches_log(database, log.records)
    assert expected_bookings(log.records) == log.final_snapshots()  # the log is the processor's state
    completed = next(b for b in log.final_snapshots().values() if b["status"] == "COMPLETED")
    _, moves = support.read_back(database, [completed["id"]])
    assert [(m["version"], m["from"], m["to"]) for m in moves[completed["id"]]] == [
        (1, "PENDING", "HELD"), (2, "HELD", "PAYMENT_INITIATED"), (3, "PAYMENT_INITIATED", "PAID"),
        (4, "PAID", "CONFIRMED"), (5, "CONFIRMED", "CHECKED_IN"), (6, "CHECKED_IN", "COMPLETED")]
    route_id, travel_date, capacity, status, version, stops = rows(
        database, "SELECT route_id, travel_date, capacity, status, version, stops FROM trips")[0]
    assert (route_id, capacity, status, version) == (log.route_id, 48, "ACTIVE", 1)
    assert [s["stopId"] for s in stops] == ["lagos", "ibadan", "ilorin"]
    assert scalar(database, "SELECT count(*) FROM bookings") == len(log.final_snapshots())


def test_out_of_order_delivery_ends_in_the_same_rows(database):
    log = every_kind_of_booking(unique_prefix("order"))
    # Each booking's events newest first, one record per batch (confirmed before created)...
    apply(database, list(reversed(log.records)), batch_size=1)
    # ...and all shuffled into one batch, on a second database-worth of ids.
    shuffled = every_kind_of_booking(unique_prefix("shuffle"))
    mixed = list(shuffled.records)
    random.Random(7).shuffle(mixed)
    apply(database, mixed, batch_size=len(mixed))

    assert_matches_log(database, log.records)
    assert_matches_log(database, shuffled.records)


@pytest.mark.parametrize("trip_first", [True, False])
def test_a_booking_shows_its_trips_current_driver_whatever_arrives_first(database, trip_first):
    log = TripLog(unique_prefix("driver"))
    booking_id = log.book("rider-a")
    log.reassign("driver-taken-over")
    trips = [r for r in log.records if r[0] == CONTRACT.trip_updated]
    bookings = [r for r in log.records if r[0] != CONTRACT.trip_updated]
    apply(database, trips + bookings if trip_first else bookings + trips, batch_size=1)
    assert scalar(database, "SELECT driver_id FROM bookings WHERE id = %s", (booking_id,)) == \
        "driver-taken-over"
    assert log.final_snapshots()[booking_id]["driverId"] == "driver-taken-over"  # as the processor says


def test_replaying_the_same_events_changes_nothing(database):
    log = every_kind_of_booking(unique_prefix("replay"))
    apply(database, log.records)
    before = table_dump(database)
    apply(database, log.records)
    apply(database, log.records, batch_size=3)

    assert table_dump(database) == before
    transitions = sum(len(h) for h in expected_history(log.records).values())
    assert scalar(database, "SELECT count(*) FROM booking_history") == transitions


def test_offsets_are_written_with_the_rows(database):
    log = every_kind_of_booking(unique_prefix("offsets"))
    batch, _ = build_batch([FakeMessage(k.encode(), v, topic=t, offset=100 + i, partition=i % 2)
                            for i, (t, k, v) in enumerate(log.records)], CONTRACT)
    with store.connect(database) as conn:
        store.write_batch(conn, batch)
        stored = store.stored_offsets(conn, [(topic, p) for topic in CONTRACT.lifecycle for p in (0, 1, 2)])
    expected = {}
    for i, (topic, _, _) in enumerate(log.records):
        expected[(topic, i % 2)] = 100 + i + 1
    expected = {k: v for k, v in expected.items() if k[0] != CONTRACT.trip_updated}
    assert stored == expected


def test_queries_of_a_rider(database):
    log = every_kind_of_booking(unique_prefix("queries"))
    apply(database, booking_records(log.records))
    mine = sorted((b for b in log.final_snapshots().values() if b["riderId"] == "rider-a"),
                  key=lambda b: (b["createdAt"], b["id"]), reverse=True)
    some = next(iter(log.final_snapshots().values()))

    async def read():
        async with await psycopg.AsyncConnection.connect(database) as conn:
            first_page = await queries.bookings_of_rider(conn, "rider-a", None, 0, 1)
            second_page = await queries.bookings_of_rider(conn, "rider-a", None, 1, 1)
            beyond = await queries.bookings_of_rider(conn, "rider-a", None, 5, 10)
            refunded = await queries.bookings_of_rider(conn, "rider-a", "REFUNDED", 0, 10)
            by_reference = await queries.booking_by_reference(conn, some["bookingReference"])
            not_theirs = await queries.booking_by_reference(conn, some["bookingReference"], rider_id="nobody")
            upcoming_b = await queries.upcoming_of_rider(conn, "rider-b", START)
            after_departure = await queries.upcoming_of_rider(conn, "rider-b", START + timedelta(days=3))
            missing = await queries.booking_by_id(conn, "no-such-booking")
            return (first_page, second_page, beyond, refunded, by_reference, not_theirs, upcoming_b,
                    after_departure, missing)

    first, second, beyond, refunded, by_reference, not_theirs, upcoming_b, after, missing = asyncio.run(read())
    assert first == ([mine[0]], 2) and second == ([mine[1]], 2)
    assert beyond == ([], 2)
    assert refunded == ([b for b in mine if b["status"] == "REFUNDED"], 1)
    assert by_reference == some and not_theirs is None
    assert [b["status"] for b in upcoming_b] == ["CONFIRMED"]  # the cancelled one is not upcoming
    assert after == [] and missing is None


def test_waiting_list_entries_become_rows_whatever_the_order(database):
    log = waiting_list(unique_prefix("waitlist"))
    shuffled = list(log.records)
    random.Random(3).shuffle(shuffled)
    apply(database, shuffled, batch_size=4)
    entries = expected_entries(log.records)
    assert entries == log.final_entries() and len(entries) == 5  # the log is the processor's state

    async def read():
        async with await psycopg.AsyncConnection.connect(database) as conn:
            return (await queries.waitlist_of_trip(conn, log.route_id, log.travel_date),
                    await queries.waitlist_of_rider(conn, "rider-w5"))

    of_trip, of_rider = asyncio.run(read())
    assert [e["joinOrder"] for e in of_trip] == [1, 2, 3, 4, 5]
    # Byte for byte the events' snapshots, but a waiting entry's position is its current
    # one: the four ahead of rider-w5 when it joined have all been offered seats since.
    live = {**entries[of_trip[4]["id"]], "position": 1}
    assert orjson.dumps(of_trip) == orjson.dumps([*(entries[e["id"]] for e in of_trip[:4]), live])
    assert [e["status"] for e in of_trip] == ["ACCEPTED", "LEFT", "OFFER_EXPIRED", "OFFERED", "WAITING"]
    assert of_rider == [live]
    before = table_dump(database)
    apply(database, log.records)
    assert table_dump(database) == before
