"""The shapes of what the processor writes (replies, lifecycle events), as models from
which the published JSON Schema files are generated (`python -m tools.write_schemas`).

app.wire.outbound renders these documents as plain dicts, which is cheaper on the hot
path than building models; tests/processor/test_schemas.py validates what it renders
against the committed schema files, so the two cannot drift apart.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from app.domain.booking import Status
from app.domain.waitlist import EntryStatus

Amount = Field(pattern=r"^-?[0-9]+\.[0-9]{2}$", description="decimal string with two places, e.g. \"8400.00\"")
Instant = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$",
                description="UTC, millisecond precision")
StatusName = Literal[tuple(s.value for s in Status)]  # type: ignore[valid-type]
EntryStatusName = Literal[tuple(s.value for s in EntryStatus)]  # type: ignore[valid-type]


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BookingSnapshot(Shape):
    """The booking as of the event's version (the HTTP contract's booking body)."""

    id: str
    bookingReference: str = Field(pattern=r"^BK[0-9]{8}[A-Z2-7]{6}$")
    riderId: str
    driverId: str | None
    routeId: str
    originStopId: str
    destinationStopId: str
    travelDate: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    departureTime: str = Field(description="local time at the pickup stop, HH:MM:SS")
    departureAt: str = Instant
    seatsBooked: int = Field(ge=1)
    seatNumbers: list[int]
    pricePerSeat: str = Amount
    fare: str = Amount
    platformFee: str = Amount
    totalPrice: str = Amount
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    status: StatusName
    paymentId: str | None
    paymentStatus: str
    cancellationReason: str | None
    cancelledAt: str | None = Instant
    refundAmount: str = Amount
    refundStatus: str
    bookingSource: str
    createdAt: str = Instant
    updatedAt: str = Instant
    expiresAt: str | None = Instant
    confirmedAt: str | None = Instant
    version: int = Field(ge=1, description="the number of transitions up to this snapshot")


class LegAvailability(Shape):
    fromStopId: str
    toStopId: str
    free: int = Field(ge=0)
    held: int = Field(ge=0)
    sold: int = Field(ge=0)


class EntrySnapshot(Shape):
    """A waiting-list entry as of the event's version."""

    id: str = Field(description="`<routeId>.<YYYYMMDD>.<token>`, like a booking id: it names its trip")
    riderId: str
    routeId: str
    travelDate: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    originStopId: str
    destinationStopId: str
    seatsBooked: int = Field(ge=1, description="the party size: offered all together or not at all")
    joinOrder: int = Field(ge=1, description="the order it joined the trip's list in; offers follow it")
    position: int | None = Field(ge=1, description="while WAITING: its place in the trip's queue when it joined "
                                                    "(1 = next); null otherwise")
    status: EntryStatusName
    seatNumbers: list[int] = Field(description="the seats offered (empty until an offer)")
    joinedAt: str = Instant
    updatedAt: str = Instant
    offeredAt: str | None = Instant
    offerExpiresAt: str | None = Instant
    bookingId: str | None = Field(description="the HELD booking the accepted offer became")
    version: int = Field(ge=1, description="the number of transitions up to this snapshot")


class SeatOut(Shape):
    seatNumber: int = Field(ge=1)
    free: bool = Field(description="free on every leg of the journey asked about")


class Reply(Shape):
    """On the replies topic, keyed by command id, to the partition the command's
    `reply-partition` header named. `ok: false` carries a stable `code`: a domain
    rejection (app.domain.rejections) or a dead-letter code (docs/processor.md)."""

    v: Literal[1]
    commandId: str
    ok: bool
    code: str | None
    message: str | None
    booking: BookingSnapshot | None = Field(None, description="accepted commands on a booking")
    bookingId: str | None = Field(None, description="rejected commands on a booking")
    tripVersion: int | None = Field(None, description="trip commands")
    availability: list[LegAvailability] | None = Field(None, description="query_availability")
    entry: EntrySnapshot | None = Field(None, description="accepted commands on a waiting-list entry")
    entryId: str | None = Field(None, description="rejected commands on a waiting-list entry")
    seats: list[SeatOut] | None = Field(None, description="query_seat_map: every seat of the trip, in order")


class Transition(Shape):
    from_: StatusName = Field(alias="from")
    to: StatusName
    reason: str
    actor: str
    at: str = Instant
    commandId: str


class EntryTransition(Transition):
    from_: EntryStatusName = Field(alias="from")  # type: ignore[assignment]
    to: EntryStatusName  # type: ignore[assignment]


def booking_event(topic: str) -> type[Shape]:
    return moves_event(topic, "booking", BookingSnapshot, Transition, "BookingEvent",
                       "(duplicate command, redelivery) ")


def waitlist_event(topic: str) -> type[Shape]:
    return moves_event(topic, "entry", EntrySnapshot, EntryTransition, "WaitlistEvent")


def moves_event(topic: str, subject: str, snapshot: type[Shape], transition: type[Shape], name: str,
                why: str = "") -> type[Shape]:
    """The event of a booking's or a waiting-list entry's moves on `topic`: `<subject>Id`
    and the `<subject>` snapshot as of the version the moves left it at."""
    return create_model(
        name,
        __base__=Shape,
        __doc__=(f"On {topic}, keyed by {subject} id. `eventId` = `<{subject}Id>:<version>`: a re-emitted event "
                 f"{why}is byte-identical; dedupe by it."),
        v=(Literal[1], ...),
        eventId=(str, ...),
        type=(Literal[topic], ...),  # type: ignore[valid-type]
        **{f"{subject}Id": (str, ...)},
        version=(int, Field(ge=1)),
        occurredAt=(str, Instant),
        transitions=(list[transition], Field(min_length=1, description="the moves this event made")),  # type: ignore[valid-type]
        **{subject: (snapshot, ...)},
    )


class RefundRequiredEvent(Shape):
    """A payment the booking could not take (expired hold, wrong amount, unknown booking…):
    the payments service must return it. `eventId` = `<bookingId>:refund_required:<paymentId>`."""

    v: Literal[1]
    eventId: str
    type: Literal["booking.refund_required"]
    bookingId: str
    paymentId: str
    amount: str = Amount
    currency: str | None = Field(description="the trip's currency; null if the trip was never published")
    reason: str = Field(description="the rejection code, e.g. hold_expired")
    occurredAt: str = Instant
    version: int | None = Field(description="the booking's version when the payment was refused; null if unknown")
    booking: BookingSnapshot | None


class TripStop(Shape):
    stopId: str
    offsetMinutes: int


class TripSnapshot(Shape):
    routeId: str
    travelDate: str
    timezone: str
    departureTime: str
    capacity: int
    currency: str
    stops: list[TripStop]
    legFares: list[int] = Field(description="minor units")
    driverId: str | None
    status: Literal["ACTIVE", "CANCELLED"]


class TripUpdatedEvent(Shape):
    """On trip.updated, keyed by trip key: the processor's view of a trip after each change.
    `eventId` = `<tripKey>:<version>`."""

    v: Literal[1]
    eventId: str
    type: Literal["trip.updated"]
    version: int = Field(ge=1)
    trip: TripSnapshot
