"""`decide(state, command, now, policy)`: the rules. Pure: it reads the state and returns
what happened, as events or a rejection; it never changes anything itself."""

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from app.domain import inventory, money
from app.domain.booking import HOLDING, Booking, Status, Transition, can_move
from app.domain.commands import (
    Actor,
    CancelBooking,
    CancelTrip,
    CheckIn,
    Command,
    Complete,
    CreateBooking,
    ExpireHolds,
    InitiatePayment,
    PaymentFailed,
    PaymentSucceeded,
    PublishTrip,
    QueryAvailability,
    RefundDone,
    Role,
)
from app.domain.events import BookingCreated, BookingMoved, Event, RefundRequired, TripPublished
from app.domain.ids import booking_id_for, reference_for
from app.domain.policy import Policy
from app.domain.rejections import Code
from app.domain.state import TripState, tally
from app.domain.trip import MS_PER_MINUTE, Trip, TripStatus, whole_hours_before

SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Accepted:
    events: tuple[Event, ...]
    booking_id: str | None = None


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
            return Accepted(())  # `handle` expires due holds before every command
        case QueryAvailability():
            return Accepted(()) if state.trip else Rejected(Code.TRIP_NOT_FOUND)
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
    if state.booked and not keeps_bookings_valid(state, command.trip):
        return Rejected(Code.TRIP_UPDATE_CONFLICT)
    return Accepted((TripPublished(replace(command.trip, status=TripStatus.ACTIVE)),))


def within_publishing_window(travel_date: date, now: int, policy: Policy) -> bool:
    today = datetime.fromtimestamp(now / 1000, UTC).date()
    return (today - timedelta(days=policy.trip_days_behind_max) <= travel_date
            <= today + timedelta(days=policy.trip_days_ahead_max))


def keeps_bookings_valid(state: TripState, update: Trip) -> bool:
    """What a booking's seats, price and refund rights were decided on stays as it was:
    stops (what legs mean, and when each is reached), departure time, time zone and
    currency. Capacity may shrink only down to the highest seat number in use. Leg fares
    may change: they price later bookings only."""
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
    if tally(state).held.get(command.actor.user_id, 0) + command.seats > policy.hold_limit_seats_per_trip:
        return Rejected(Code.HOLD_LIMIT_REACHED)
    origin, destination = trip.stop_index(command.origin_stop_id), trip.stop_index(command.destination_stop_id)
    if origin is None or destination is None or origin >= destination:
        return Rejected(Code.INVALID_STOPS)
    if now > trip.departure_ms(origin) - policy.booking_close_minutes * MS_PER_MINUTE:
        return Rejected(Code.BOOKING_CLOSED)
    first, last = origin, destination - 1
    seats = inventory.lowest_free(inventory.taken_on(state.legs, first, last), trip.capacity, command.seats)
    if seats is None:
        return Rejected(Code.SEATS_UNAVAILABLE)
    price = money.quote(trip.fare_between(first, last), command.seats, occupancy(state, first, last), policy)
    booking = Booking(
        booking_id=booking_id_for(trip.route_id, trip.travel_date, command.command_id),
        reference=reference_for(trip.route_id, trip.travel_date, command.command_id),
        rider_id=command.actor.user_id,
        first_leg=first,
        last_leg=last,
        seats=seats,
        price_per_seat=price.per_seat,
        fare=price.fare,
        fee=price.fee,
        total=price.total,
        source=command.source,
        transitions=(
            Transition(Status.PENDING, Status.HELD, "seats_held", command.actor.user_id, now, command.command_id,
                       {"expires_at": now + policy.hold_minutes * MS_PER_MINUTE}),
        ),
    )
    return Accepted((BookingCreated(booking),), booking.booking_id)


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
