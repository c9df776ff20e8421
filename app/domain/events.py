"""Events: the facts a command produced. The state is the fold of them."""

from dataclasses import dataclass

from app.domain.booking import Booking, Transition
from app.domain.trip import Trip
from app.domain.waitlist import Entry


@dataclass(frozen=True, slots=True)
class TripPublished:
    trip: Trip


@dataclass(frozen=True, slots=True)
class BookingCreated:
    booking: Booking  # with its first transition, PENDING -> HELD


@dataclass(frozen=True, slots=True)
class BookingMoved:
    booking_id: str
    moves: tuple[Transition, ...]


@dataclass(frozen=True, slots=True)
class RefundRequired:
    """A payment arrived that the booking cannot take: the payments service must return it."""

    booking_id: str
    payment_id: str
    amount: int
    reason: str
    at: int


@dataclass(frozen=True, slots=True)
class EntryJoined:
    entry: Entry  # with its first transition, NEW -> WAITING


@dataclass(frozen=True, slots=True)
class EntryMoved:
    entry_id: str
    moves: tuple[Transition, ...]


Event = TripPublished | BookingCreated | BookingMoved | RefundRequired | EntryJoined | EntryMoved
