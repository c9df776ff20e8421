"""`decide(state, command, now, policy)`: the rules. Pure: it reads the state and returns
what happened, as events or a rejection; it never changes anything itself."""

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from app.domain import inventory, money
from app.domain.booking import HOLDING, Booking, Status, Transition, can_move, occupies_seats
from app.domain.commands import (
    AcceptOffer,
    Actor,
    CancelBooking,
    CancelTrip,
    CheckIn,
    Command,
    Complete,
    CreateBooking,
    ExpireHolds,
    InitiatePayment,
    JoinWaitlist,
    LeaveWaitlist,
    PaymentFailed,
    PaymentSucceeded,
    PublishTrip,
    QueryAvailability,
    QuerySeatMap,
    RefundDone,
    Role,
)
from app.domain.events import (BookingCreated, BookingMoved, EntryJoined, EntryMoved, Event, RefundRequired,
                               TripPublished)
from app.domain.ids import booking_id_for, entry_id_for, reference_for
from app.domain.policy import Policy
from app.domain.rejections import Code
from app.domain.state import TripState, tally
from app.domain.trip import MS_PER_MINUTE, Trip, TripStatus, whole_hours_before
from app.domain.waitlist import LISTED, Entry, EntryStatus, holds_seats

SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Accepted:
    events: tuple[Event, ...]
    booking_id: str | None = None
    entry_id: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    code: Code
    events: tuple[Event, ...] = ()


Decision = Accepted | Rejected


def decide(state: TripState, command: Command, now: int, policy: Policy) -> Decision:
    match command:
        case PublishTrip():
            return publish_trip(state, command, now, policy)
        case CancelTrip():
            return cancel_trip(state, command, now)
        case CreateBooking():
            return create_booking(state, command, now, policy)
        case ExpireHolds():
            return Accepted(())  # `handle` expires due holds and offers before every command
        case QueryAvailability():
            return Accepted(()) if state.trip else Rejected(Code.TRIP_NOT_FOUND)
        case QuerySeatMap():
            return query_seat_map(state, command)
        case JoinWaitlist():
            return join_waitlist(state, command, now, policy)
        case LeaveWaitlist() | AcceptOffer():
            return decide_on_entry(state, command, now, policy)
        case _:
            return decide_on_booking(state, command, now, policy)


# -- trips ------------------------------------------------------------------------------


def may_manage_trip(actor: Actor, trip: Trip | None) -> bool:
    if actor.role in (Role.ADMIN, Role.SERVICE):
        return True
    return actor.role is Role.DRIVER and trip is not None and trip.driver_id == actor.user_id


def publish_trip(state: TripState, command: PublishTrip, now: int, policy: Policy) -> Decision:
    """Trips are created by the route service or an admin; the trip's own driver may then
    update it, but not hand it to another driver. Publishing a cancelled trip again
    reopens it (not for a driver): its cancelled bookings stay cancelled."""
    actor, current = command.actor, state.trip
    if current is None and actor.role not in (Role.ADMIN, Role.SERVICE):
        return Rejected(Code.FORBIDDEN)
    if not may_manage_trip(actor, current) or not may_manage_trip(actor, command.trip):
        return Rejected(Code.FORBIDDEN)
    if current and current.status is TripStatus.CANCELLED and actor.role is Role.DRIVER:
        return Rejected(Code.TRIP_CANCELLED)
    if not within_publishing_window(command.trip.travel_date, now, policy):
        return Rejected(Code.TRAVEL_DATE_OUT_OF_RANGE)
    if not 1 <= command.trip.capacity <= policy.trip_capacity_max:
        return Rejected(Code.CAPACITY_OUT_OF_RANGE)
    if (state.booked or state.joined) and not keeps_bookings_valid(state, command.trip):
        return Rejected(Code.TRIP_UPDATE_CONFLICT)
    return Accepted((TripPublished(replace(command.trip, status=TripStatus.ACTIVE)),))


def within_publishing_window(travel_date: date, now: int, policy: Policy) -> bool:
    today = datetime.fromtimestamp(now / 1000, UTC).date()
    return (today - timedelta(days=policy.trip_days_behind_max) <= travel_date
            <= today + timedelta(days=policy.trip_days_ahead_max))


def keeps_bookings_valid(state: TripState, update: Trip) -> bool:
    """What a booking's seats, price and refund rights were decided on stays as it was:
    stops (what legs mean, and when each is reached), departure time, time zone and
    currency. Capacity may shrink only down to the highest seat number in use (held,
    sold or offered). Leg fares may change: they price later bookings only. Waiting-list
    entries count as bookings here: their journeys are legs of these stops."""
    trip = state.trip
    assert trip is not None
    highest = max((leg.bit_length() for leg in state.legs), default=0)
    fixed = (trip.stops, trip.departure_time, trip.timezone, trip.currency)
    return (update.stops, update.departure_time, update.timezone, update.currency) == fixed \
        and update.capacity >= highest


def cancel_trip(state: TripState, command: CancelTrip, now: int) -> Decision:
    trip = state.trip
    if trip is None:
        return Rejected(Code.TRIP_NOT_FOUND)
    if not may_manage_trip(command.actor, trip):
        return Rejected(Code.FORBIDDEN)
    if trip.status is TripStatus.CANCELLED:
        return Rejected(Code.TRIP_CANCELLED)
    cancelled = replace(trip, status=TripStatus.CANCELLED)
    events: list[Event] = [TripPublished(cancelled)]
    for booking in in_id_order(state.bookings.values()):
        if can_move(booking.status, Status.CANCELLED):
            refund = booking.view().amount_paid  # the driver cancelled: everything back
            events.append(moved(booking, Status.CANCELLED, "trip_cancelled", command, now, refund=refund,
                                reason_text=command.reason))
    for entry in in_entry_id_order(e for e in state.entries.values() if e.status in LISTED):
        events.append(entry_moved(entry, EntryStatus.CANCELLED, "trip_cancelled", command.actor.user_id, now,
                                  command.command_id))
    return Accepted(tuple(events))


# -- creating a booking -----------------------------------------------------------------


def create_booking(state: TripState, command: CreateBooking, now: int, policy: Policy) -> Decision:
    trip = state.trip
    if trip is None:
        return Rejected(Code.TRIP_NOT_FOUND)
    if trip.status is TripStatus.CANCELLED:
        return Rejected(Code.TRIP_CANCELLED)
    if not 1 <= command.seats <= policy.max_seats_per_booking:
        return Rejected(Code.TOO_MANY_SEATS)
    if over_hold_limit(state, command.actor.user_id, command.seats, policy):
        return Rejected(Code.HOLD_LIMIT_REACHED)
    journey = open_journey(trip, command, now, policy)
    if isinstance(journey, Code):
        return Rejected(journey)
    first, last = journey
    taken = inventory.taken_on(state.legs, first, last)
    if command.seat_numbers is None:
        seats = inventory.lowest_free(taken, trip.capacity, command.seats)
        if seats is None:
            return Rejected(Code.SEATS_UNAVAILABLE)
    else:
        seats = tuple(sorted(command.seat_numbers))
        if not valid_seat_choice(seats, command.seats, trip.capacity):
            return Rejected(Code.INVALID_SEATS)
        if not inventory.is_free(taken, seats):
            return Rejected(Code.SEAT_UNAVAILABLE)
    booking = new_booking(state, command.command_id, command.actor.user_id, journey, seats, command.source,
                          "seats_held", now, policy)
    return Accepted((BookingCreated(booking),), booking.booking_id)


def over_hold_limit(state: TripState, rider_id: str, seats: int, policy: Policy) -> bool:
    """Seats held unpaid and seats asked for on the waiting list count alike: an offer
    holds seats for the rider just as a booking's hold does."""
    counts = tally(state)
    return counts.held.get(rider_id, 0) + counts.listed.get(rider_id, 0) + seats > policy.hold_limit_seats_per_trip


def open_journey(trip: Trip, command: CreateBooking | JoinWaitlist, now: int, policy: Policy) -> tuple[int, int] | Code:
    """The (first, last) legs of the command's journey, or why it cannot be booked: not a
    journey of the trip, or booking from its pickup has closed."""
    journey = trip.journey(command.origin_stop_id, command.destination_stop_id)
    if journey is None:
        return Code.INVALID_STOPS
    if now > closes_at(trip, journey[0], policy):
        return Code.BOOKING_CLOSED
    return journey


def closes_at(trip: Trip, origin: int, policy: Policy) -> int:
    """The last instant a booking from this stop can be made."""
    return trip.departure_ms(origin) - policy.booking_close_minutes * MS_PER_MINUTE


def valid_seat_choice(seats: tuple[int, ...], count: int, capacity: int) -> bool:
    return len(seats) == count and len(set(seats)) == count and all(1 <= seat <= capacity for seat in seats)


def new_booking(state: TripState, command_id: str, rider_id: str, journey: tuple[int, int],
                seats: tuple[int, ...], source: str, reason: str, now: int, policy: Policy) -> Booking:
    """A booking holding `seats` for HOLD_MINUTES, priced now."""
    trip = state.trip
    assert trip is not None
    first, last = journey
    price = money.quote(trip.fare_between(first, last), len(seats), occupancy(state, first, last), policy)
    return Booking(
        booking_id=booking_id_for(trip.route_id, trip.travel_date, command_id),
        reference=reference_for(trip.route_id, trip.travel_date, command_id),
        rider_id=rider_id,
        first_leg=first,
        last_leg=last,
        seats=seats,
        price_per_seat=price.per_seat,
        fare=price.fare,
        fee=price.fee,
        total=price.total,
        source=source,
        transitions=(
            Transition(Status.PENDING, Status.HELD, reason, rider_id, now, command_id,
                       {"expires_at": now + policy.hold_minutes * MS_PER_MINUTE}),
        ),
    )


def occupancy(state: TripState, first: int, last: int) -> Decimal:
    """The share of seats sold on the fullest leg of the journey, before this booking.
    Seats held but not paid for do not count: holds that never pay must not raise the
    price for everybody else."""
    assert state.trip is not None
    sold = tally(state).sold
    fullest = max(sold[leg].bit_count() for leg in range(first, last + 1))
    return Decimal(fullest) / Decimal(state.trip.capacity)


# -- expiry -----------------------------------------------------------------------------


def in_id_order(bookings: Iterable[Booking]) -> list[Booking]:
    """A command that moves several bookings moves them in this order, whatever order
    they were loaded in, so that its events are rebuilt the same way on a duplicate."""
    return sorted(bookings, key=lambda b: b.booking_id)


def expiry_command_id(command_id: str) -> str:
    """Expiries are attributed to the record whose time triggered them, so that a
    redelivered record re-emits them, without being mistaken for that command's own move."""
    return f"expiry:{command_id}"


def expire_due_holds(state: TripState, now: int, command_id: str) -> tuple[Event, ...]:
    """Holds whose time is up by `now`, the time of the record being processed."""
    due = [state.bookings[booking_id] for booking_id in state.holds.due(now)]
    return tuple(
        BookingMoved(booking.booking_id, (
            Transition(booking.status, Status.EXPIRED, "hold_expired", SYSTEM, now, expiry_command_id(command_id), {}),
        ))
        for booking in in_id_order(due)
    )


def in_entry_id_order(entries: Iterable[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: e.entry_id)


def expire_due_offers(state: TripState, now: int, command_id: str) -> tuple[Event, ...]:
    """Offers whose time is up by `now`: their seats are free again (and `handle` offers
    them to the next fitting entry in the same command)."""
    due = [e for e in state.entries.values() if e.status is EntryStatus.OFFERED and offer_ends_by(e, now)]
    return tuple(
        EntryMoved(entry.entry_id, (
            Transition(entry.status, EntryStatus.OFFER_EXPIRED, "offer_expired", SYSTEM, now,
                       expiry_command_id(command_id), {}),
        ))
        for entry in in_entry_id_order(due)
    )


def offer_ends_by(entry: Entry, now: int) -> bool:
    expires_at = entry.view().offer_expires_at
    return expires_at is not None and expires_at <= now


# -- the waiting list -------------------------------------------------------------------


def query_seat_map(state: TripState, command: QuerySeatMap) -> Decision:
    if state.trip is None:
        return Rejected(Code.TRIP_NOT_FOUND)
    if state.trip.journey(command.origin_stop_id, command.destination_stop_id) is None:
        return Rejected(Code.INVALID_STOPS)
    return Accepted(())


def join_waitlist(state: TripState, command: JoinWaitlist, now: int, policy: Policy) -> Decision:
    """A rider waits for seats on a journey that has too few free: a party of `seats`, all
    or none. The entry takes the next join order; offers follow it."""
    trip, rider_id = state.trip, command.actor.user_id
    if trip is None:
        return Rejected(Code.TRIP_NOT_FOUND)
    if trip.status is TripStatus.CANCELLED:
        return Rejected(Code.TRIP_CANCELLED)
    if command.actor.role is not Role.RIDER:
        return Rejected(Code.FORBIDDEN)
    if not 1 <= command.seats <= min(policy.max_seats_per_booking, trip.capacity):
        return Rejected(Code.TOO_MANY_SEATS)
    journey = open_journey(trip, command, now, policy)
    if isinstance(journey, Code):
        return Rejected(journey)
    first, last = journey
    if inventory.lowest_free(inventory.taken_on(state.legs, first, last), trip.capacity, command.seats) is not None:
        return Rejected(Code.SEATS_AVAILABLE)
    if over_hold_limit(state, rider_id, command.seats, policy):
        return Rejected(Code.HOLD_LIMIT_REACHED)
    listed = [e for e in state.entries.values() if e.status in LISTED]
    if len(listed) >= policy.waitlist_entries_max:
        return Rejected(Code.WAITLIST_FULL)
    entry = Entry(
        entry_id=entry_id_for(trip.route_id, trip.travel_date, command.command_id),
        rider_id=rider_id,
        first_leg=first,
        last_leg=last,
        seats_wanted=command.seats,
        join_order=state.joined + 1,
        position=sum(e.status is EntryStatus.WAITING for e in listed) + 1,
        transitions=(Transition(EntryStatus.NEW, EntryStatus.WAITING, "joined", rider_id, now, command.command_id, {}),),
    )
    return Accepted((EntryJoined(entry),), entry_id=entry.entry_id)


def decide_on_entry(state: TripState, command: LeaveWaitlist | AcceptOffer, now: int, policy: Policy) -> Decision:
    """Only the entry's own rider may leave the list or accept its offer; another rider
    learns no more than for an unknown entry id."""
    entry = state.entries.get(command.entry_id)
    actor = command.actor
    if entry is None or state.trip is None or (actor.role is Role.RIDER and actor.user_id != entry.rider_id):
        return Rejected(Code.ENTRY_NOT_FOUND)
    if actor.role is not Role.RIDER:
        return Rejected(Code.FORBIDDEN)
    if isinstance(command, LeaveWaitlist):
        if entry.status not in LISTED:
            return Rejected(Code.INVALID_TRANSITION)
        return Accepted((entry_moved(entry, EntryStatus.LEFT, "left", actor.user_id, now, command.command_id),),
                        entry_id=entry.entry_id)
    return accept_offer(state, entry, command, now, policy)


def accept_offer(state: TripState, entry: Entry, command: AcceptOffer, now: int, policy: Policy) -> Decision:
    """The offered seats become a HELD booking in the same command, never free between."""
    if entry.status is not EntryStatus.OFFERED:
        return Rejected({EntryStatus.CANCELLED: Code.TRIP_CANCELLED,
                         EntryStatus.OFFER_EXPIRED: Code.OFFER_EXPIRED}.get(entry.status, Code.INVALID_TRANSITION))
    booking = new_booking(state, command.command_id, entry.rider_id, (entry.first_leg, entry.last_leg),
                          entry.view().seats, command.source, "offer_accepted", now, policy)
    accepted = entry_moved(entry, EntryStatus.ACCEPTED, "offer_accepted", entry.rider_id, now, command.command_id,
                           booking_id=booking.booking_id)
    return Accepted((BookingCreated(booking), accepted), booking.booking_id, entry.entry_id)


def entry_moved(entry: Entry, target: EntryStatus, reason: str, actor: str, now: int, command_id: str,
                **data) -> EntryMoved:
    return EntryMoved(entry.entry_id, (Transition(entry.status, target, reason, actor, now, command_id, data),))


def frees_seats(events: Iterable[Event]) -> bool:
    """Whether these events may have left seats free that a waiting entry could fit in: a
    hold or a sale ended, an offer ended unaccepted, or the trip was published again
    (with more seats, or reopened)."""
    for event in events:
        match event:
            case TripPublished():
                return True
            case BookingMoved(moves=moves) if occupies_seats(moves[0].source) and not occupies_seats(moves[-1].target):
                return True
            case EntryMoved(moves=moves) if holds_seats(moves[0].source) and moves[-1].target is not EntryStatus.ACCEPTED:
                return True
    return False


def offer_freed_seats(state: TripState, now: int, command_id: str, policy: Policy) -> tuple[Event, ...]:
    """Free seats go to waiting entries first, in join order: each entry whose whole
    party fits on every leg of its journey is offered the lowest such seats, held for it
    for OFFER_MINUTES (at most until its pickup's booking closes). An entry that does not
    fit is passed over, not blocked on: a later, smaller or shorter one may fit. Pure: the
    seats are taken on a copy of the inventory; `handle` folds the offers in."""
    trip = state.trip
    if trip is None or trip.status is TripStatus.CANCELLED:
        return ()
    waiting = sorted((e for e in state.entries.values() if e.status is EntryStatus.WAITING),
                     key=lambda e: e.join_order)
    legs = list(state.legs)
    offers: list[Event] = []
    for entry in waiting:
        closes = closes_at(trip, entry.first_leg, policy)
        if now >= closes:
            continue
        taken = inventory.taken_on(legs, entry.first_leg, entry.last_leg)
        seats = inventory.lowest_free(taken, trip.capacity, entry.seats_wanted)
        if seats is None:
            continue
        inventory.occupy(legs, entry.first_leg, entry.last_leg, seats)
        offer = {"seats": list(seats), "expires_at": min(now + policy.offer_minutes * MS_PER_MINUTE, closes)}
        offers.append(EntryMoved(entry.entry_id, (
            Transition(EntryStatus.WAITING, EntryStatus.OFFERED, "seats_freed", SYSTEM, now, command_id, offer),
        )))
    return tuple(offers)


# -- commands on an existing booking ----------------------------------------------------


def decide_on_booking(state: TripState, command: Command, now: int, policy: Policy) -> Decision:
    booking = state.bookings.get(command.booking_id)  # type: ignore[union-attr]
    if booking is None or state.trip is None:
        return refuse_payment(command, Code.BOOKING_NOT_FOUND, now)
    match command:
        case InitiatePayment():
            return initiate_payment(booking, command, now, policy)
        case PaymentSucceeded():
            return payment_succeeded(booking, command, now)
        case PaymentFailed():
            return payment_failed(booking, command, now)
        case CancelBooking():
            return cancel_booking(state.trip, booking, command, now, policy)
        case CheckIn():
            return driver_move(state.trip, booking, command, Status.CHECKED_IN, "checked_in", now)
        case Complete():
            return driver_move(state.trip, booking, command, Status.COMPLETED, "completed", now)
        case RefundDone():
            return refund_done(booking, command, now)
    raise TypeError(f"not a command: {command!r}")


def moved(booking: Booking, target: Status, reason: str, command, now: int, **data) -> BookingMoved:
    move = Transition(booking.status, target, reason, command.actor.user_id, now, command.command_id, data)
    return BookingMoved(booking.booking_id, (move,))


def refused_to(actor: Actor, booking: Booking, *roles: Role) -> Code | None:
    """None if the actor may act on the booking: its rider, or one of `roles`. Another
    rider is told the booking is not theirs; any other role, that the act is not its."""
    if actor.role in roles or (actor.role is Role.RIDER and actor.user_id == booking.rider_id):
        return None
    return Code.NOT_OWNER if actor.role is Role.RIDER else Code.FORBIDDEN


def initiate_payment(booking: Booking, command: InitiatePayment, now: int, policy: Policy) -> Decision:
    if refused := refused_to(command.actor, booking, Role.SERVICE, Role.ADMIN):
        return Rejected(refused)
    if not can_move(booking.status, Status.PAYMENT_INITIATED):
        return Rejected(Code.HOLD_EXPIRED if booking.status is Status.EXPIRED else Code.INVALID_TRANSITION)
    data = {"expires_at": now + policy.payment_hold_minutes * MS_PER_MINUTE}
    if command.payment_id:
        data["payment_id"] = command.payment_id
    return Accepted((moved(booking, Status.PAYMENT_INITIATED, "payment_initiated", command, now, **data),),
                    booking.booking_id)


def refuse_payment(command: Command, code: Code, now: int) -> Rejected:
    """A refused payment that was really taken must go back: say so to the payments service."""
    if isinstance(command, PaymentSucceeded) and code is not Code.FORBIDDEN:
        return Rejected(code, (RefundRequired(command.booking_id, command.payment_id, command.amount, code, now),))
    return Rejected(code)


def payment_succeeded(booking: Booking, command: PaymentSucceeded, now: int) -> Decision:
    if command.actor.role not in (Role.SERVICE, Role.ADMIN):
        return Rejected(Code.FORBIDDEN)
    if booking.status is Status.EXPIRED:
        return refuse_payment(command, Code.HOLD_EXPIRED, now)
    if booking.status not in HOLDING:
        return refuse_payment(command, Code.INVALID_TRANSITION, now)
    if command.amount != booking.total:
        return refuse_payment(command, Code.AMOUNT_MISMATCH, now)
    actor, at, cid = command.actor.user_id, now, command.command_id
    paid = Transition(booking.status, Status.PAID, "payment_succeeded", actor, at, cid,
                      {"payment_id": command.payment_id, "payment_status": "SUCCESS", "amount": command.amount})
    confirmed = Transition(Status.PAID, Status.CONFIRMED, "confirmed", actor, at, cid, {})
    return Accepted((BookingMoved(booking.booking_id, (paid, confirmed)),), booking.booking_id)


def payment_failed(booking: Booking, command: PaymentFailed, now: int) -> Decision:
    """Recorded as a fact, not a move: the seats stay held until the hold runs out, so the
    rider may try another payment."""
    if command.actor.role not in (Role.SERVICE, Role.ADMIN):
        return Rejected(Code.FORBIDDEN)
    if booking.status not in HOLDING:
        return Rejected(Code.INVALID_TRANSITION)
    fact = Transition(booking.status, booking.status, "payment_failed", command.actor.user_id, now,
                      command.command_id, {"payment_id": command.payment_id, "payment_status": "FAILED"})
    return Accepted((BookingMoved(booking.booking_id, (fact,)),), booking.booking_id)


def cancel_booking(trip: Trip, booking: Booking, command: CancelBooking, now: int, policy: Policy) -> Decision:
    forced = command.actor.role is Role.ADMIN
    if not forced and (refused := refused_to(command.actor, booking)):
        return Rejected(refused)
    if not policy.cancel_reason_min <= len(command.reason.strip()) <= policy.cancel_reason_max:
        return Rejected(Code.INVALID_REASON)
    if not can_move(booking.status, Status.CANCELLED):
        return Rejected(Code.INVALID_TRANSITION)
    paid = booking.view().amount_paid
    if forced:
        refund = paid
    else:
        hours = whole_hours_before(trip.departure_ms(booking.first_leg), now)
        refund = money.refund_amount(paid, hours, policy)
    reason = "force_cancelled" if forced else "cancelled_by_rider"
    return Accepted((moved(booking, Status.CANCELLED, reason, command, now, refund=refund,
                           reason_text=command.reason.strip()),), booking.booking_id)


def driver_move(trip: Trip, booking: Booking, command, target: Status, reason: str, now: int) -> Decision:
    if not may_manage_trip(command.actor, trip):
        # Another trip's driver learns no more than for an unknown booking id.
        return Rejected(Code.BOOKING_NOT_FOUND if command.actor.role is Role.DRIVER else Code.FORBIDDEN)
    if not can_move(booking.status, target):
        return Rejected(Code.INVALID_TRANSITION)
    return Accepted((moved(booking, target, reason, command, now),), booking.booking_id)


def refund_done(booking: Booking, command: RefundDone, now: int) -> Decision:
    """The payments service returned money: the refund owed after a cancel, or (from a paid
    booking) any part of what was paid."""
    if command.actor.role not in (Role.SERVICE, Role.ADMIN):
        return Rejected(Code.FORBIDDEN)
    view = booking.view()
    if not can_move(booking.status, Status.REFUNDED) or (booking.status is Status.CANCELLED and not view.refund_amount):
        return Rejected(Code.INVALID_TRANSITION)
    owed = view.refund_amount if booking.status is Status.CANCELLED else view.amount_paid
    if not 0 < command.amount <= owed or (booking.status is Status.CANCELLED and command.amount != owed):
        return Rejected(Code.AMOUNT_MISMATCH)
    return Accepted((moved(booking, Status.REFUNDED, "refund_done", command, now, refund=command.amount),),
                    booking.booking_id)
