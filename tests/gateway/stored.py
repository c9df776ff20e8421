"""What the gateway reads, written to the session's Postgres through the sink's own
write path: trips driven through the real core, unique to the test run."""

import itertools
from datetime import date, timedelta

from tests.support.scenario import TRAVEL_DATE, TripLog, unique_prefix
from tests.support.sink_write import apply

_far_days = itertools.count()


def trip_log(name: str, travel_date: date = TRAVEL_DATE, capacity: int = 48) -> TripLog:
    """A trip driven through the real core (tests/support/scenario.py), unique to this run."""
    return TripLog(unique_prefix(name), travel_date=travel_date, capacity=capacity)


def store_log(database_url: str, log: TripLog) -> TripLog:
    """Writes the trip's events to Postgres through the sink's own write path."""
    apply(database_url, log.records)
    return log


def far_date() -> date:
    """A travel date no other test of this session writes (statistics sum over dates; the
    session's database is fresh)."""
    return date(2090, 1, 1) + timedelta(days=next(_far_days))


def mixed(log: TripLog) -> TripLog:
    """Bookings in most statuses, by three riders."""
    for rider in ("rider-a", "rider-b"):
        log.pay(log.book(rider, seats=2))
    ridden = log.book("rider-c")
    log.pay(ridden)
    log.check_in(ridden)
    log.complete(ridden)
    refunded = log.book("rider-a")
    log.pay(refunded)
    log.cancel(refunded)
    log.refund(refunded)
    owed = log.book("rider-b", to_stop="ibadan")
    log.pay(owed)
    log.cancel(owed)
    log.book("rider-c")  # stays HELD
    return log
