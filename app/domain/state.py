"""The state of one trip, and `evolve`, the fold of events into it.

A `TripState` holds what one command may need: the trip, its leg inventory, its live
bookings and waiting-list entries, and any closed booking or entry or earlier outcome the
caller loaded for this command (one the command names, the outcome of its command id).
How it is stored, and what is kept in memory between commands, is the caller's business
(`app.tables.store`).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from app.domain import inventory
from app.domain.booking import HOLDING, SOLD, TERMINAL, Booking, Status, Transition, occupies_seats
from app.domain.events import (BookingCreated, BookingMoved, EntryJoined, EntryMoved, Event, RefundRequired,
                               TripPublished)
from app.domain.rejections import Code
from app.domain.trip import Trip
from app.domain.waitlist import LISTED, Entry, EntryStatus, holds_seats


@dataclass(frozen=True, slots=True)
class Remembered:
    """An outcome not recoverable from a booking's transitions (a rejection, a trip
    command, a refund demand), or any outcome of a command that names the request it
    stands for (`fingerprint`). Kept so a duplicate gets the same reply and events, and a
    different request under the same command id is told apart, for
    `Policy.outcome_retention_hours` after `at` (`app.domain.handle.recall`)."""

    code: Code | None
    booking_id: str | None = None
    refund: RefundRequired | None = None
    trip_version: int | None = None
    trip: Trip | None = None  # as a trip command published it
    touched: tuple[str, ...] = ()  # the bookings its events moved, to rebuild them
    touched_entries: tuple[str, ...] = ()  # the waiting-list entries its events moved
    fingerprint: str | None = None  # of the request the command stands for (gateway.dispatch)
    at: int = 0  # the time of the record that was decided


@dataclass(slots=True)
class HoldIndex:
    """When each hold on the trip runs out (booking id -> epoch ms), so that finding the
    holds due reads a dict, not every booking's history."""

    expires: dict[str, int] = field(default_factory=dict)
    _earliest: int | None = field(default=None, compare=False, repr=False)
    _stale: bool = field(default=False, compare=False, repr=False)

    def note(self, booking: Booking) -> None:
        at = booking.current.expires_at if booking.status in HOLDING else None
        if at is None:
            self.discard(booking.booking_id)
            return
        before = self.expires.get(booking.booking_id)
        self.expires[booking.booking_id] = at
        if before is not None and before == self._earliest and at > before:
            self._stale = True
        elif not self._stale and (self._earliest is None or at < self._earliest):
            self._earliest = at

    def discard(self, booking_id: str) -> None:
        at = self.expires.pop(booking_id, None)
        if at is not None and at == self._earliest:
            self._stale = True

    def recompute(self) -> None:
        """After `expires` was replaced whole."""
        self._stale = True

    def earliest(self) -> int | None:
        if self._stale:
            self._earliest = min(self.expires.values(), default=None)
            self._stale = False
        return self._earliest

    def due(self, now: int) -> list[str]:
        earliest = self.earliest()
        if earliest is None or earliest > now:
            return []
        return [booking_id for booking_id, at in self.expires.items() if at <= now]


@dataclass(slots=True)
class Tally:
    """Counts over the live bookings that rules read on every booking, kept up to date by
    `evolve` instead of recounted per command."""

    sold: list[int]  # per leg, as a seat mask: the seats paid for (what demand pricing counts)
    held: dict[str, int]  # rider id -> seats held unpaid
    listed: dict[str, int]  # rider id -> seats asked for by their live waiting-list entries


@dataclass(slots=True)
class TripState:
    trip: Trip | None = None
    trip_version: int = 0
    legs: list[int] = field(default_factory=list)
    bookings: dict[str, Booking] = field(default_factory=dict)
    remembered: dict[str, Remembered] = field(default_factory=dict)
    booked: int = 0  # bookings ever created on the trip, closed and forgotten ones too
    entries: dict[str, Entry] = field(default_factory=dict)
    joined: int = 0  # waiting-list entries ever made on the trip: the last join order given
    holds: HoldIndex = field(default_factory=HoldIndex)  # of the bookings above
    # Derived from the live bookings and entries, on first use (`tally`): never stored.
    counted: Tally | None = None

    def put(self, booking: Booking) -> None:
        """Every booking enters the state here, so that the hold index follows it."""
        self.bookings[booking.booking_id] = booking
        self.holds.note(booking)

    def drop(self, booking_id: str) -> None:
        del self.bookings[booking_id]
        self.holds.discard(booking_id)


def is_closed(booking: Booking) -> bool:
    """Nothing more can happen to it: terminal, or cancelled with no refund owed."""
    if booking.status in TERMINAL:
        return True
    return booking.status is Status.CANCELLED and not booking.view().refund_amount


def is_live(booking: Booking) -> bool:
    """Part of the trip's working set: it may still move, or its seats still count (a
    completed booking is closed, but its seats stay sold on its legs)."""
    return occupies_seats(booking.status) or not is_closed(booking)


def is_listed(entry: Entry) -> bool:
    """Part of the trip's working set: on the waiting list, or holding an offer."""
    return entry.status in LISTED


def evolve(state: TripState, event: Event) -> TripState:
    """Apply one event. Mutates and returns `state`: the caller owns it, and copying a
    trip per event would cost the hot path for no gain."""
    match event:
        case TripPublished(trip=trip):
            if len(state.legs) != len(trip.stops) - 1:  # first publish, or new stops before any booking
                state.legs = [0] * (len(trip.stops) - 1)
                state.counted = None
            state.trip = trip
            state.trip_version += 1
        case BookingCreated(booking=booking):
            inventory.occupy(state.legs, booking.first_leg, booking.last_leg, booking.seats)
            state.put(booking)
            state.booked += 1
            if state.counted is not None:
                count_in(state.counted, booking, 1)
        case BookingMoved(booking_id=booking_id, moves=moves):
            before = state.bookings[booking_id]
            after = moved_on(state, before, moves, count_in)
            state.put(after)
            if occupies_seats(before.status) and not occupies_seats(after.status):
                inventory.release(state.legs, after.first_leg, after.last_leg, after.seats)
        case EntryJoined(entry=entry):
            state.entries[entry.entry_id] = entry
            state.joined += 1
            if state.counted is not None:
                count_entry(state.counted, entry, 1)
        case EntryMoved(entry_id=entry_id, moves=moves):
            before = state.entries[entry_id]
            after = state.entries[entry_id] = moved_on(state, before, moves, count_entry)
            move_offered_seats(state.legs, before, after)
        case RefundRequired():
            pass
    return state


Item = TypeVar("Item", Booking, Entry)


def moved_on(state: TripState, before: Item, moves: tuple[Transition, ...],
             count: Callable[[Tally, Item, int], None]) -> Item:
    """The booking or entry after the moves (the caller puts it in the state); the
    state's counts, if counted, follow."""
    after = before.with_transitions(*moves)
    if state.counted is not None:
        count(state.counted, before, -1)
        count(state.counted, after, 1)
    return after


def move_offered_seats(legs: list[int], before: Entry, after: Entry) -> None:
    """An offer occupies its seats as a hold does. Accepted, they pass to the booking the
    same command creates (BookingCreated occupies them already), with no moment free."""
    if holds_seats(after.status) and not holds_seats(before.status):
        inventory.occupy(legs, after.first_leg, after.last_leg, after.view().seats)
    elif holds_seats(before.status) and not holds_seats(after.status) and after.status is not EntryStatus.ACCEPTED:
        inventory.release(legs, after.first_leg, after.last_leg, before.view().seats)


def tally(state: TripState) -> Tally:
    """The state's counts, counted from its live bookings and entries the first time they
    are asked for."""
    if state.counted is None:
        state.counted = Tally([0] * len(state.legs), {}, {})
        for booking in state.bookings.values():
            count_in(state.counted, booking, 1)
        for entry in state.entries.values():
            count_entry(state.counted, entry, 1)
    return state.counted


def count_entry(counts: Tally, entry: Entry, sign: int) -> None:
    if entry.status in LISTED:
        add_seats(counts.listed, entry.rider_id, sign * entry.seats_wanted)


def add_seats(per_rider: dict[str, int], rider_id: str, seats: int) -> None:
    total = per_rider.get(rider_id, 0) + seats
    if total:
        per_rider[rider_id] = total
    else:
        per_rider.pop(rider_id, None)


def count_in(counts: Tally, booking: Booking, sign: int) -> None:
    """Adds (sign 1) or takes away (sign -1) what a booking, as it stands, counts for."""
    if booking.status in HOLDING:
        add_seats(counts.held, booking.rider_id, sign * len(booking.seats))
    elif booking.status in SOLD:
        change = inventory.occupy if sign > 0 else inventory.release
        change(counts.sold, booking.first_leg, booking.last_leg, booking.seats)


@dataclass(frozen=True, slots=True)
class LegAvailability:
    from_stop_id: str
    to_stop_id: str
    free: int
    held: int
    sold: int


def availability(state: TripState) -> list[LegAvailability]:
    """Free seats from the inventory, held (seats held by bookings or by waiting-list
    offers) and sold counted from the bookings and entries: the two views agree (free +
    held + sold = capacity) by construction of `evolve`."""
    trip = state.trip
    assert trip is not None
    held, sold = [0] * len(state.legs), [0] * len(state.legs)
    for booking in state.bookings.values():
        tally = held if booking.status in HOLDING else sold if booking.status in SOLD else None
        if tally is not None:
            for leg in range(booking.first_leg, booking.last_leg + 1):
                tally[leg] += len(booking.seats)
    for entry in state.entries.values():
        if holds_seats(entry.status):
            for leg in range(entry.first_leg, entry.last_leg + 1):
                held[leg] += entry.seats_wanted
    return [
        LegAvailability(trip.stops[leg].stop_id, trip.stops[leg + 1].stop_id,
                        trip.capacity - mask.bit_count(), held[leg], sold[leg])
        for leg, mask in enumerate(state.legs)
    ]


def seat_map(state: TripState, first: int, last: int) -> list[bool]:
    """For each seat of the trip in order: free on every leg from `first` to `last`."""
    assert state.trip is not None
    return inventory.free_flags(inventory.taken_on(state.legs, first, last), state.trip.capacity)
