"""The state of one trip, and `evolve`, the fold of events into it.

A `TripState` holds what one command may need: the trip, its leg inventory, its live
bookings, and any closed booking or earlier outcome the caller loaded for this command
(a booking the command names, the outcome of its command id). How it is stored, and
what is kept in memory between commands, is the caller's business (`app.tables.store`).
"""

from dataclasses import dataclass, field

from app.domain import inventory
from app.domain.booking import HOLDING, SOLD, TERMINAL, Booking, Status, occupies_seats
from app.domain.events import BookingCreated, BookingMoved, Event, RefundRequired, TripPublished
from app.domain.rejections import Code
from app.domain.trip import Trip


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


@dataclass(slots=True)
class TripState:
    trip: Trip | None = None
    trip_version: int = 0
    legs: list[int] = field(default_factory=list)
    bookings: dict[str, Booking] = field(default_factory=dict)
    remembered: dict[str, Remembered] = field(default_factory=dict)
    booked: int = 0  # bookings ever created on the trip, closed and forgotten ones too
    holds: HoldIndex = field(default_factory=HoldIndex)  # of the bookings above
    # Derived from the live bookings, on first use (`tally`): never stored.
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
            after = before.with_transitions(*moves)
            if occupies_seats(before.status) and not occupies_seats(after.status):
                inventory.release(state.legs, after.first_leg, after.last_leg, after.seats)
            state.put(after)
            if state.counted is not None:
                count_in(state.counted, before, -1)
                count_in(state.counted, after, 1)
        case RefundRequired():
            pass
    return state


def tally(state: TripState) -> Tally:
    """The state's counts, counted from its live bookings the first time they are asked for."""
    if state.counted is None:
        state.counted = Tally([0] * len(state.legs), {})
        for booking in state.bookings.values():
            count_in(state.counted, booking, 1)
    return state.counted


def count_in(counts: Tally, booking: Booking, sign: int) -> None:
    """Adds (sign 1) or takes away (sign -1) what a booking, as it stands, counts for."""
    if booking.status in HOLDING:
        held = counts.held.get(booking.rider_id, 0) + sign * len(booking.seats)
        if held:
            counts.held[booking.rider_id] = held
        else:
            counts.held.pop(booking.rider_id, None)
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
    """Free seats from the inventory, held and sold counted from the bookings: the two
    views agree (free + held + sold = capacity) by construction of `evolve`."""
    trip = state.trip
    assert trip is not None
    held, sold = [0] * len(state.legs), [0] * len(state.legs)
    for booking in state.bookings.values():
        tally = held if booking.status in HOLDING else sold if booking.status in SOLD else None
        if tally is not None:
            for leg in range(booking.first_leg, booking.last_leg + 1):
                tally[leg] += len(booking.seats)
    return [
        LegAvailability(trip.stops[leg].stop_id, trip.stops[leg + 1].stop_id,
                        trip.capacity - mask.bit_count(), held[leg], sold[leg])
        for leg, mask in enumerate(state.legs)
    ]
