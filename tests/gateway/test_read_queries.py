"""Contract tests of the read queries the gateway adds (gateway/queries.py) against a real
Postgres, on events made by the real core and written by the sink's own write path."""

import asyncio
from datetime import date, timedelta
from decimal import Decimal

import psycopg
import pytest

from app.domain.booking import Status
from gateway import queries
from gateway.queries import SearchFilters
from tests.gateway.stored import far_date, mixed, store_log, trip_log
from tests.support.scenario import TripLog

pytestmark = pytest.mark.integration


def run(database_url: str, query):
    """Runs `query(conn)` on a fresh async connection."""

    async def go():
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            return await query(conn)

    return asyncio.run(go())


def newest_first(bookings) -> list[dict]:
    return sorted(bookings, key=lambda b: (b["createdAt"], b["id"]), reverse=True)


@pytest.fixture(scope="module")
def stored(database_url) -> TripLog:
    return store_log(database_url, mixed(trip_log("reads", travel_date=far_date())))


def test_search_pages_newest_first_with_a_total(database_url, stored):
    expected = newest_first(stored.final_snapshots().values())
    mine = SearchFilters(route_id=stored.route_id)
    first = run(database_url, lambda c: queries.search_bookings(c, mine, 0, 4))
    second = run(database_url, lambda c: queries.search_bookings(c, mine, 1, 4))
    beyond = run(database_url, lambda c: queries.search_bookings(c, mine, 9, 4))
    assert first == (expected[:4], len(expected))
    assert second == (expected[4:8], len(expected))
    assert beyond == ([], len(expected))


@pytest.mark.parametrize("name", ["statuses", "rider", "driver", "reference", "dates", "nothing"])
def test_search_filters_are_anded(database_url, stored, name):
    bookings = newest_first(stored.final_snapshots().values())
    some = bookings[2]
    day = stored.travel_date
    filters, wanted = {
        "statuses": (SearchFilters(statuses=("CONFIRMED", "COMPLETED"), route_id=stored.route_id),
                     [b for b in bookings if b["status"] in ("CONFIRMED", "COMPLETED")]),
        "rider": (SearchFilters(rider_id="rider-a", route_id=stored.route_id),
                  [b for b in bookings if b["riderId"] == "rider-a"]),
        "driver": (SearchFilters(driver_id=stored.driver.user_id), bookings),
        "reference": (SearchFilters(reference=some["bookingReference"]), [some]),
        "dates": (SearchFilters(route_id=stored.route_id, travel_date_from=day, travel_date_to=day), bookings),
        "nothing": (SearchFilters(route_id=stored.route_id, travel_date_from=day + timedelta(days=1)), []),
    }[name]
    assert run(database_url, lambda c: queries.search_bookings(c, filters, 0, 100)) == (wanted, len(wanted))


def test_statistics_count_statuses_people_and_money(database_url, stored):
    bookings = list(stored.final_snapshots().values())
    day = stored.travel_date
    stats = run(database_url, lambda c: queries.booking_statistics(c, day, day))
    paid = [b for b in bookings if b["confirmedAt"] is not None]
    gross = sum(Decimal(b["totalPrice"]) for b in paid)
    refunded = sum(Decimal(b["refundAmount"]) for b in bookings if b["status"] == "REFUNDED")
    pending = sum(Decimal(b["refundAmount"]) for b in bookings if b["status"] == "CANCELLED")
    assert stats["totalBookings"] == len(bookings) == 6
    assert stats["byStatus"] == {s.value: sum(b["status"] == s.value for b in bookings) for s in Status}
    assert stats["byStatus"]["CONFIRMED"] == 2 and stats["byStatus"]["HELD"] == 1
    assert (stats["uniqueRiders"], stats["uniqueDrivers"]) == (3, 1) and len(paid) == 5
    assert stats["revenue"] == [{
        "currency": "NGN", "paidBookings": len(paid), "gross": f"{gross:.2f}", "refunded": f"{refunded:.2f}",
        "refundsPending": f"{pending:.2f}", "net": f"{gross - refunded:.2f}",
        "averageValue": f"{(gross / len(paid)).quantize(Decimal('0.01')):.2f}",
    }]
    assert Decimal(stats["revenue"][0]["refundsPending"]) > 0  # the cancelled, paid one is owed


def test_statistics_of_an_empty_range_are_zeros(database_url):
    day = date(2089, 12, 31)  # before every far_date()
    stats = run(database_url, lambda c: queries.booking_statistics(c, day, day))
    assert stats["totalBookings"] == 0 and stats["revenue"] == [] and set(stats["byStatus"].values()) == {0}
    with pytest.raises(ValueError):
        run(database_url, lambda c: queries.booking_statistics(c, day, day - timedelta(days=1)))


def test_trip_by_key_is_the_published_trip(database_url, stored):
    trip = run(database_url, lambda c: queries.trip_by_key(c, stored.route_id, stored.travel_date))
    assert trip["driverId"] == stored.driver.user_id and trip["status"] == "ACTIVE"
    assert [s["stopId"] for s in trip["stops"]] == ["lagos", "ibadan", "ilorin"]
    assert trip["departureTime"] == "09:30:00" and trip["capacity"] == stored.capacity
    assert run(database_url, lambda c: queries.trip_by_key(c, "no-such-route", stored.travel_date)) is None


def test_manifest_is_the_paid_passengers_by_departure_and_seat(database_url, stored):
    passengers = run(database_url, lambda c: queries.manifest_bookings(c, stored.route_id, stored.travel_date))
    riding = [b for b in stored.final_snapshots().values() if b["status"] in ("CONFIRMED", "CHECKED_IN", "COMPLETED")]
    assert sorted(b["id"] for b in passengers) == sorted(b["id"] for b in riding)
    assert [b["seatNumbers"][0] for b in passengers] == sorted(b["seatNumbers"][0] for b in passengers)
