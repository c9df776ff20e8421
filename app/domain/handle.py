"""`handle`: one command against one trip's state, exactly once per command id.

The order of steps matters:
1. Recall: a command id seen before gets the outcome it got then, with the same events
   (rebuilt from the bookings' and entries' transitions and the remembered outcome), and
   changes nothing. A remembered outcome is recalled for
   `Policy.outcome_retention_hours`. The caller loads into the state what recall needs:
   the booking or waiting-list entry the command names or would create, the remembered
   outcome of its id and the bookings and entries it touched.
   A command may carry the fingerprint of the request it stands for (an HTTP request
   with an Idempotency-Key): its outcome is then always remembered with it, and the same
   command id with another fingerprint is refused as `idempotency_key_reused`, changing
   nothing.
2. Expire holds and waiting-list offers due by the record's time, before deciding, so a
   payment that arrives after its hold ran out sees the hold expired, live or in a
   replay; and offer the seats that freed to the waiting list, before a walk-in can
   take them.
3. Decide, then fold the events into the state; if they freed seats, offer those to the
   waiting list in the same command, before anything later in the log can take them.
4. Remember what the command's own booking or entry cannot tell later: a rejection, a
   trip command, a refund demand, or moves of other bookings or entries (expiries,
   offers, a trip's cancels).

A command's events come in one order, which a duplicate rebuilds from the transitions:
per attribution (first the record's expiries, `expiry:<command id>`, then the command's
own), a trip it published, bookings in id order, entries moved in id order, then entries
offered seats in join order.
"""

from dataclasses import dataclass, replace

from app.domain.booking import Booking, Status
from app.domain.commands import (
    AcceptOffer,
    CancelTrip,
    Command,
    CreateBooking,
    JoinWaitlist,
    PaymentSucceeded,
    PublishTrip,
)
from app.domain.decide import (
    Accepted,
    decide,
    expire_due_holds,
    expire_due_offers,
    expiry_command_id,
    frees_seats,
    in_id_order,
    offer_freed_seats,
)
from app.domain.events import BookingCreated, BookingMoved, EntryJoined, EntryMoved, Event, TripPublished
from app.domain.ids import booking_id_for, entry_id_for
from app.domain.policy import Policy
from app.domain.rejections import Code
from app.domain.state import Remembered, TripState, evolve
from app.domain.trip import Trip
from app.domain.waitlist import Entry, EntryStatus


@dataclass(frozen=True, slots=True)
class Outcome:
    command_id: str
    code: Code | None  # None: accepted
    events: tuple[Event, ...]
    booking_id: str | None = None
    version: int | None = None  # the booking version the reply shows
    trip_version: int | None = None
    duplicate: bool = False
    entry_id: str | None = None
    entry_version: int | None = None  # the waiting-list entry version the reply shows

    @property
    def accepted(self) -> bool:
        return self.code is None


def handle(state: TripState, command: Command, now: int, policy: Policy, fingerprint: str | None = None) -> Outcome:
    known = remembered_by(state, command.command_id, now, policy)
    prior = recall(state, command, known)
    if prior is not None:
        return prior if same_request(known, fingerprint) else key_reused(command)
    expired = fold(state, expire_due_holds(state, now, command.command_id)
                   + (expire_due_offers(state, now, command.command_id) if state.entries else ()))
    offered = fold(state, offer_freed_seats(state, now, expiry_command_id(command.command_id), policy)) \
        if expired and state.entries else ()
    decision = decide(state, command, now, policy)
    fold(state, decision.events)
    reoffered = fold(state, offer_freed_seats(state, now, command.command_id, policy)) \
        if state.entries and frees_seats(decision.events) else ()
    outcome = outcome_of(state, command, decision)
    outcome = replace(outcome, events=expired + offered + decision.events + reoffered)
    if fingerprint is not None or needs_remembering(outcome):
        state.remembered[command.command_id] = Remembered(
            code=outcome.code,
            booking_id=outcome.booking_id,
            refund=decision.events[0] if decision.events and outcome.code else None,  # type: ignore[arg-type]
            trip_version=outcome.trip_version,
            trip=state.trip if outcome.trip_version is not None else None,
            touched=tuple(sorted(touched_bookings(outcome.events))),
            touched_entries=tuple(sorted(touched_entries(outcome.events))),
            fingerprint=fingerprint,
            at=now,
        )
    return outcome


def fold(state: TripState, events: tuple[Event, ...]) -> tuple[Event, ...]:
    for event in events:
        evolve(state, event)
    return events


def same_request(known: Remembered | None, fingerprint: str | None) -> bool:
    """Whether a command id seen before stands for the same request now. Only two
    fingerprints can tell requests apart: without one on either side, it is a duplicate."""
    return fingerprint is None or known is None or known.fingerprint in (None, fingerprint)


def key_reused(command: Command) -> Outcome:
    """The refusal of a command id reused for another request: it changes nothing, and is
    not remembered (the command id keeps the outcome of its first request)."""
    return Outcome(command.command_id, Code.IDEMPOTENCY_KEY_REUSED, (), duplicate=True)


def outcome_of(state: TripState, command: Command, decision) -> Outcome:
    if not isinstance(decision, Accepted):
        return Outcome(command.command_id, decision.code, (), booking_id=getattr(command, "booking_id", None),
                       entry_id=getattr(command, "entry_id", None))
    if isinstance(command, (PublishTrip, CancelTrip)):
        return Outcome(command.command_id, None, (), trip_version=state.trip_version)
    booking = state.bookings[decision.booking_id] if decision.booking_id else None
    entry = state.entries[decision.entry_id] if decision.entry_id else None
    return Outcome(command.command_id, None, (),
                   booking_id=booking.booking_id if booking else None, version=booking.version if booking else None,
                   entry_id=entry.entry_id if entry else None, entry_version=entry.version if entry else None)


def needs_remembering(outcome: Outcome) -> bool:
    """A rejection, a trip command, or one that moved a booking or entry not its own."""
    if not outcome.accepted or outcome.trip_version is not None:
        return True
    own = (outcome.booking_id, outcome.entry_id)  # ids of bookings and entries never coincide
    for event in outcome.events:
        match event:
            case BookingCreated(booking=Booking(booking_id=moved)) | BookingMoved(booking_id=moved) \
                    | EntryJoined(entry=Entry(entry_id=moved)) | EntryMoved(entry_id=moved) if moved not in own:
                return True
    return False


def touched_bookings(events: tuple[Event, ...]) -> frozenset[str]:
    return frozenset(
        e.booking.booking_id if isinstance(e, BookingCreated) else e.booking_id
        for e in events
        if isinstance(e, (BookingCreated, BookingMoved))
    )


def touched_entries(events: tuple[Event, ...]) -> frozenset[str]:
    return frozenset(
        e.entry.entry_id if isinstance(e, EntryJoined) else e.entry_id
        for e in events
        if isinstance(e, (EntryJoined, EntryMoved))
    )


# -- recall -----------------------------------------------------------------------------


def recall(state: TripState, command: Command, known: Remembered | None) -> Outcome | None:
    """The outcome a command id seen before got, from `known` (what is remembered of it
    within the retention window, `remembered_by`) and the transitions it left."""
    command_id = command.command_id
    booking, version = booking_moved_by(state, command)
    entry, entry_version = entry_moved_by(state, command)
    if known is None and version is None and entry_version is None:
        return None
    published = (TripPublished(known.trip),) if known is not None and known.trip is not None else ()
    refund = (known.refund,) if known is not None and known.refund is not None else ()
    refused = known is not None and known.code is not None
    return Outcome(
        command_id,
        known.code if known else None,
        events_of(state, command_id, published) + refund,
        booking_id=known.booking_id if known else booking.booking_id if booking else None,
        version=version,
        trip_version=known.trip_version if known else None,
        duplicate=True,
        entry_id=getattr(command, "entry_id", None) if refused else entry.entry_id if entry else None,
        entry_version=entry_version,
    )


def remembered_by(state: TripState, command_id: str, now: int, policy: Policy) -> Remembered | None:
    """The outcome remembered for the command id, unless it is older than the retention
    window at `now`: then the command is decided again, as if new. The window is read
    from the record times, so every replay of the log forgets at the same records."""
    known = state.remembered.get(command_id)
    if known is None or now - known.at >= policy.outcome_retention_ms:
        return None
    return known


def bookings_named(trip: Trip | None, command: Command) -> tuple[str, ...]:
    """The booking a command names, or would create: what recall and decide read beyond
    the trip's live bookings."""
    if isinstance(command, (CreateBooking, AcceptOffer)):
        return (booking_id_for(trip.route_id, trip.travel_date, command.command_id),) if trip else ()
    booking_id = getattr(command, "booking_id", None)
    return (booking_id,) if booking_id else ()


def entries_named(trip: Trip | None, command: Command) -> tuple[str, ...]:
    """The waiting-list entry a command names, or would create."""
    if isinstance(command, JoinWaitlist):
        return (entry_id_for(trip.route_id, trip.travel_date, command.command_id),) if trip else ()
    entry_id = getattr(command, "entry_id", None)
    return (entry_id,) if entry_id else ()


def entry_moved_by(state: TripState, command: Command) -> tuple[Entry | None, int | None]:
    """The entry this command already created or moved, and the version it left."""
    if not state.entries:  # the caller loads the entry a command names, if there is one
        return None, None
    named = entries_named(state.trip, command)
    entry = state.entries.get(named[0]) if named else None
    if entry is None:
        return None, None
    if isinstance(command, JoinWaitlist):
        return entry, 1
    return entry, entry.command_version(command.command_id)


def booking_moved_by(state: TripState, command: Command) -> tuple[Booking | None, int | None]:
    """The booking this command already created or moved, and the version it left."""
    named = bookings_named(state.trip, command)
    booking = state.bookings.get(named[0]) if named else None
    if booking is None:
        return None, None
    if isinstance(command, (CreateBooking, AcceptOffer)):
        return booking, 1
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
    """The events a command produced, rebuilt from the transitions it left: its triggered
    expiries (and the offers they made) first, then the trip it published if any, then
    its own moves (and the offers they made), as `handle` emitted them."""
    expiries = _events_with(state, expiry_command_id(command_id))
    return expiries + published + _events_with(state, command_id)


def _events_with(state: TripState, command_id: str) -> tuple[Event, ...]:
    events: list[Event] = []
    for booking in in_id_order(state.bookings.values()):
        indexes = [i for i, move in enumerate(booking.transitions) if move.command_id == command_id]
        if not indexes:
            continue
        if indexes[0] == 0:
            events.append(BookingCreated(replace(booking, transitions=booking.transitions[:1])))
        else:
            events.append(BookingMoved(booking.booking_id, tuple(booking.transitions[i] for i in indexes)))
    return tuple(events) + _entry_events_with(state, command_id)


def _entry_events_with(state: TripState, command_id: str) -> tuple[Event, ...]:
    moved: list[tuple[str, Event]] = []
    offered: list[tuple[int, Event]] = []
    for entry in state.entries.values():
        indexes = [i for i, move in enumerate(entry.transitions) if move.command_id == command_id]
        if not indexes:
            continue
        if indexes[0] == 0:
            moved.append((entry.entry_id, EntryJoined(replace(entry, transitions=entry.transitions[:1]))))
            continue
        moves = tuple(entry.transitions[i] for i in indexes)
        if moves[-1].target is EntryStatus.OFFERED:
            offered.append((entry.join_order, EntryMoved(entry.entry_id, moves)))
        else:
            moved.append((entry.entry_id, EntryMoved(entry.entry_id, moves)))
    return tuple(event for _, event in sorted(moved, key=lambda pair: pair[0])) \
        + tuple(event for _, event in sorted(offered, key=lambda pair: pair[0]))

