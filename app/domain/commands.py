"""Commands: what someone asks of a trip. Each carries a `command_id` (the unit of
idempotency) and the actor, whose role decides what they may do."""

from dataclasses import dataclass
from enum import StrEnum

from app.domain.trip import Trip


class Role(StrEnum):
    RIDER = "RIDER"
    DRIVER = "DRIVER"
    ADMIN = "ADMIN"
    SERVICE = "SERVICE"


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: str
    role: Role


@dataclass(frozen=True, slots=True)
class PublishTrip:
    command_id: str
    actor: Actor
    trip: Trip


@dataclass(frozen=True, slots=True)
class CancelTrip:
    command_id: str
    actor: Actor
    reason: str


@dataclass(frozen=True, slots=True)
class CreateBooking:
    command_id: str
    actor: Actor
    origin_stop_id: str
    destination_stop_id: str
    seats: int
    source: str = "API"
    seat_numbers: tuple[int, ...] | None = None  # the rider's choice; None: the lowest free seats


@dataclass(frozen=True, slots=True)
class InitiatePayment:
    command_id: str
    actor: Actor
    booking_id: str
    payment_id: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentSucceeded:
    command_id: str
    actor: Actor
    booking_id: str
    payment_id: str
    amount: int  # minor units


@dataclass(frozen=True, slots=True)
class PaymentFailed:
    command_id: str
    actor: Actor
    booking_id: str
    payment_id: str


@dataclass(frozen=True, slots=True)
class CancelBooking:
    """By the rider, or force-cancelled by an admin (the actor's role tells which)."""

    command_id: str
    actor: Actor
    booking_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CheckIn:
    command_id: str
    actor: Actor
    booking_id: str


@dataclass(frozen=True, slots=True)
class Complete:
    command_id: str
    actor: Actor
    booking_id: str


@dataclass(frozen=True, slots=True)
class RefundDone:
    command_id: str
    actor: Actor
    booking_id: str
    amount: int  # minor units


@dataclass(frozen=True, slots=True)
class ExpireHolds:
    """A clock tick written into the log: expires holds due by the record's time."""

    command_id: str
    actor: Actor


@dataclass(frozen=True, slots=True)
class QueryAvailability:
    command_id: str
    actor: Actor


@dataclass(frozen=True, slots=True)
class QuerySeatMap:
    """Which seats are free for a journey (free on every leg of it)."""

    command_id: str
    actor: Actor
    origin_stop_id: str
    destination_stop_id: str


@dataclass(frozen=True, slots=True)
class JoinWaitlist:
    command_id: str
    actor: Actor
    origin_stop_id: str
    destination_stop_id: str
    seats: int


@dataclass(frozen=True, slots=True)
class LeaveWaitlist:
    command_id: str
    actor: Actor
    entry_id: str


@dataclass(frozen=True, slots=True)
class AcceptOffer:
    """The offered seats become a booking, HELD for the usual payment flow."""

    command_id: str
    actor: Actor
    entry_id: str
    source: str = "API"


BookingCommand = (
    InitiatePayment | PaymentSucceeded | PaymentFailed | CancelBooking | CheckIn | Complete | RefundDone
)
EntryCommand = LeaveWaitlist | AcceptOffer
Query = QueryAvailability | QuerySeatMap
Command = PublishTrip | CancelTrip | CreateBooking | BookingCommand | ExpireHolds | Query | JoinWaitlist | EntryCommand
