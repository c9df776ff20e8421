"""Oversell checks on a final state, shared by the benchmark and the chaos checker."""

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import psycopg

from app.domain.booking import Status, occupies_seats

SEAT_HOLDING = tuple(s.value for s in Status if occupies_seats(s))


def oversold_legs(bookings: Iterable[tuple[str, int, int, Iterable[int]]], capacity: dict[str, int]) -> int:
    """(trip, leg) pairs with more seats taken than the capacity, a seat number out of
    range, or one seat number given twice. `bookings`: (trip key, first leg, last leg,
    seat numbers) of the bookings that hold or have sold seats."""
    taken: dict[tuple[str, int], list[int]] = defaultdict(list)
    for trip, first, last, seats in bookings:
        for leg in range(first, last + 1):
            taken[trip, leg].extend(seats)
    return sum(
        1 for (trip, _), seats in taken.items()
        if len(seats) != len(set(seats)) or len(seats) > capacity[trip] or not all(1 <= s <= capacity[trip] for s in seats)
    )


def postgres_oversold(database_url: str) -> dict[str, Any]:
    """The oversell check over the sink's read model (the Kafka-native system)."""
    with psycopg.connect(database_url) as conn:
        trips = {key: (capacity, [s["stopId"] for s in stops])
                 for key, capacity, stops in conn.execute("SELECT trip_key, capacity, stops FROM trips")}
        rows = conn.execute(
            "SELECT trip_key, origin_stop_id, destination_stop_id, seat_numbers FROM bookings WHERE status = ANY(%s)",
            (list(SEAT_HOLDING),)).fetchall()
    bookings = [(key, trips[key][1].index(origin), trips[key][1].index(destination) - 1, seats)
                for key, origin, destination, seats in rows]
    return {"bookings_holding_seats": len(bookings),
            "oversold_legs": oversold_legs(bookings, {key: value[0] for key, value in trips.items()})}


def baseline_oversold(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        capacity = {key: trip["capacity"] for key, trip in conn.execute("SELECT trip_key, trip FROM baseline_trips")}
        bookings = conn.execute("SELECT trip_key, first_leg, last_leg, seat_numbers FROM baseline_bookings"
                                " WHERE status = ANY(%s)", (list(SEAT_HOLDING),)).fetchall()
    return {"bookings_holding_seats": len(bookings), "oversold_legs": oversold_legs(bookings, capacity)}


def availability_problems(availability: list[dict[str, Any]], capacity: int) -> int:
    """Legs of a query_availability reply breaking invariants 1 or 2."""
    return sum(1 for leg in availability
               if leg["free"] + leg["held"] + leg["sold"] != capacity or leg["held"] + leg["sold"] > capacity
               or min(leg["free"], leg["held"], leg["sold"]) < 0)
