"""Oversell checks on a final state, shared by the benchmark and the chaos checker, and
the waiting list's order checks on each command the chaos checker replays."""

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import psycopg

from app.domain import inventory
from app.domain.booking import Status, occupies_seats
from app.domain.decide import closes_at
from app.domain.events import BookingCreated, EntryMoved, Event
from app.domain.policy import Policy
from app.domain.state import TripState, evolve
from app.domain.waitlist import EntryStatus

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


def before_command(state: TripState) -> TripState | None:
    """What `waitlist_problems` needs of a trip before a command: a copy sharing the
    (immutable) bookings and entries. None for a trip with no waiting list, where there
    is nothing to check."""
    if not state.entries:
        return None
    return replace(state, legs=list(state.legs), bookings=dict(state.bookings), entries=dict(state.entries),
                   remembered={}, counted=None)


def waitlist_problems(before: TripState, events: tuple[Event, ...], now: int, policy: Policy) -> Counter[str]:
    """The command's events folded, one by one, into the trip as it was before it; at
    each event the waiting list's rules are checked against the seats free at that
    moment:
    - `offer_skipped`: an offer while an entry that joined earlier, still waiting and
      open for booking, fitted in the free seats;
    - `offered_twice`: an offer to an entry that was not waiting (it holds one already);
    - `walk_in_took_due_seats`: a booking created (not from an offer) while a waiting
      entry fitted in the free seats;
    - `offer_not_made`: after the command, a waiting open entry still fits."""
    problems: Counter[str] = Counter()
    for event in events:
        if isinstance(event, EntryMoved) and event.moves[-1].target is EntryStatus.OFFERED:
            entry = before.entries[event.entry_id]
            problems["offered_twice"] += entry.status is not EntryStatus.WAITING
            problems["offer_skipped"] += bool(fitting_entries(before, now, policy, joined_before=entry.join_order))
        elif isinstance(event, BookingCreated) and event.booking.transitions[0].reason != "offer_accepted":
            problems["walk_in_took_due_seats"] += bool(fitting_entries(before, now, policy))
        evolve(before, event)
    problems["offer_not_made"] += bool(fitting_entries(before, now, policy))
    return problems


def fitting_entries(state: TripState, now: int, policy: Policy, joined_before: int | None = None) -> list[str]:
    """Waiting entries (that joined before `joined_before`, if given) open for booking at
    `now` whose whole party fits in the seats free on every leg of their journey."""
    trip = state.trip
    if trip is None or trip.status.value == "CANCELLED":
        return []
    return [entry.entry_id for entry in state.entries.values()
            if entry.status is EntryStatus.WAITING and (joined_before is None or entry.join_order < joined_before)
            and now < closes_at(trip, entry.first_leg, policy)
            and inventory.lowest_free(inventory.taken_on(state.legs, entry.first_leg, entry.last_leg),
                                      trip.capacity, entry.seats_wanted) is not None]
