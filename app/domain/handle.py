"""`handle`: one command against one trip's state, exactly once per command id.

The order of steps matters:
1. Recall: a command id seen before gets the outcome it got then, with the same events
   (rebuilt from the bookings' transitions or the remembered outcome), and changes nothing.
2. Expire holds due by the record's time, before deciding, so a payment that arrives
   after its hold ran out sees the hold expired, live or in a replay.
3. Decide, then fold the events into the state.
4. Remember what the bookings cannot tell later (rejections, trip commands, refund
   demands), and forget the oldest closed bookings, to bound the entry's size.
"""

from dataclasses import dataclass, replace

from app.domain.booking import Booking, Status
from app.domain.commands import (
    CancelTrip,
    Command,
    CreateBooking,
    ExpireHolds,
    PaymentSucceeded,
    PublishTrip,
    QueryAvailability,
)
from app.domain.decide import Accepted, decide, expire_due_holds, expiry_command_id
from app.domain.events import BookingCreated, BookingMoved, Event, TripPublished
from app.domain.ids import booking_id_for
from app.domain.policy import Policy
from app.domain.rejections import Code
from app.domain.state import Remembered, TripState, evolve, forget_oldest_closed, remember


@dataclass(frozen=True, slots=True)
class Outcome:
    command_id: str
    code: Code | None  # None: accepted
    events: tuple[Event, ...]
    booking_id: str | None = None
    version: int | None = None  # the booking version the reply shows
    trip_version: int | None = None
    duplicate: bool = False

    @property
    def accepted(self) -> bool:
        return self.code is None


def handle(state: TripState, command: Command, now: int, policy: Policy) -> Outcome:
    prior = recall(state, command)
    if prior is not None:
        return prior
    events = expire_due_holds(state, now, command.command_id)
    for event in events:
        evolve(state, event)
    decision = decide(state, command, now, policy)
    for event in decision.events:
        evolve(state, event)
    outcome = outcome_of(state, command, decision)
    outcome = replace(outcome, events=events + decision.events)
    if needs_remembering(command, outcome):
        remember(state, command.command_id, Remembered(
            code=outcome.code,
            booking_id=outcome.booking_id,
            refund=decision.events[0] if decision.events and outcome.code else None,  # type: ignore[arg-type]
            trip_version=outcome.trip_version,
        ), policy.outcomes_kept)
    forget_oldest_closed(state, policy.closed_bookings_kept, touched_bookings(outcome.events))
    return outcome


def outcome_of(state: TripState, command: Command, decision) -> Outcome:
    if not isinstance(decision, Accepted):
        return Outcome(command.command_id, decision.code, (), booking_id=getattr(command, "booking_id", None))
    if isinstance(command, (PublishTrip, CancelTrip)):
        return Outcome(command.command_id, None, (), trip_version=state.trip_version)
    if decision.booking_id is None:
        return Outcome(command.command_id, None, ())
    booking = state.bookings[decision.booking_id]
    return Outcome(command.command_id, None, (), booking_id=booking.booking_id, version=booking.version)


def needs_remembering(command: Command, outcome: Outcome) -> bool:
    if isinstance(command, (ExpireHolds, QueryAvailability)):
        return False
    return not outcome.accepted or outcome.trip_version is not None


def touched_bookings(events: tuple[Event, ...]) -> frozenset[str]:
    return frozenset(
        e.booking.booking_id if isinstance(e, BookingCreated) else e.booking_id
        for e in events
        if isinstance(e, (BookingCreated, BookingMoved))
    )


# -- recall -----------------------------------------------------------------------------


def recall(state: TripState, command: Command) -> Outcome | None:
    command_id = command.command_id
    if isinstance(command, QueryAvailability):
        return None
    if (known := state.remembered.get(command_id)) is not None:
        events = events_of(state, command_id, trip_published_by(state, known)) + ((known.refund,) if known.refund else ())
        return Outcome(command_id, known.code, events, booking_id=known.booking_id,
                       trip_version=known.trip_version, duplicate=True)
    booking, version = booking_moved_by(state, command)
    if booking is not None and version is not None:
        return Outcome(command_id, None, events_of(state, command_id),
                       booking_id=booking.booking_id, version=version, duplicate=True)
    if isinstance(command, ExpireHolds) and (events := events_of(state, command_id)):
        return Outcome(command_id, None, events, duplicate=True)
    return None


def booking_moved_by(state: TripState, command: Command) -> tuple[Booking | None, int | None]:
    """The booking this command already created or moved, and the version it left."""
    if isinstance(command, CreateBooking):
        if state.trip is None:
            return None, None
        booking = state.bookings.get(booking_id_for(state.trip.route_id, state.trip.travel_date, command.command_id))
        return booking, (1 if booking else None)
    booking = state.bookings.get(getattr(command, "booking_id", ""))
    if booking is None:
        return None, None
    if isinstance(command, PaymentSucceeded):
        return booking, booking.command_version(command.command_id) or confirmed_by_payment(booking, command.payment_id)
    return booking, booking.command_version(command.command_id)


def confirmed_by_payment(booking: Booking, payment_id: str) -> int | None:
    """Confirming twice with the same payment is a no-op that returns the same result."""
    for version, move in enumerate(booking.transitions, start=1):
        if move.target is Status.PAID and move.data.get("payment_id") == payment_id:
            return version + 1  # the CONFIRMED move that follows it
    return None


def events_of(state: TripState, command_id: str, published: tuple[Event, ...] = ()) -> tuple[Event, ...]:
    """The booking events a command produced, rebuilt from the transitions it left: its
    triggered expiries first, then the trip it published if any, then its own moves, as
    `handle` emitted them."""
    expiries = _events_with(state, expiry_command_id(command_id))
    return expiries + published + _events_with(state, command_id)


def trip_published_by(state: TripState, known: Remembered) -> tuple[Event, ...]:
    """An accepted trip command published the trip as of its version: rebuilt from the state
    while that version is current (always, for a cancel: a cancelled trip never changes)."""
    if known.code is None and known.trip_version is not None and known.trip_version == state.trip_version \
            and state.trip is not None:
        return (TripPublished(state.trip),)
    return ()


def _events_with(state: TripState, command_id: str) -> tuple[Event, ...]:
    events: list[Event] = []
    for booking in state.bookings.values():
        indexes = [i for i, move in enumerate(booking.transitions) if move.command_id == command_id]
        if not indexes:
            continue
        if indexes[0] == 0:
            events.append(BookingCreated(replace(booking, transitions=booking.transitions[:1])))
        else:
            events.append(BookingMoved(booking.booking_id, tuple(booking.transitions[i] for i in indexes)))
    return tuple(events)

