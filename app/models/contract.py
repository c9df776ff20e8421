"""The shapes of what the processor writes (replies, lifecycle events), as models from
which the published JSON Schema files are generated (`python -m app.schemas`).

app.models.outbound renders these documents as plain dicts, which is cheaper on the hot
path than building models; tests/processor/test_schemas.py validates what it renders
against the committed schema files, so the two cannot drift apart.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.domain.booking import Status

Amount = Field(pattern=r"^-?[0-9]+\.[0-9]{2}$", description="decimal string with two places, e.g. \"8400.00\"")
Instant = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$",
                description="UTC, millisecond precision")
StatusName = Literal[tuple(s.value for s in Status)]  # type: ignore[valid-type]


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


class Transition(Shape):
    from_: StatusName = Field(alias="from")
    to: StatusName
    reason: str
    actor: str
    at: str = Instant
    commandId: str


def booking_event(topic: str) -> type[Shape]:
    class BookingEvent(Shape):
        __doc__ = (f"On {topic}, keyed by booking id. `eventId` = `<bookingId>:<version>`: a re-emitted "
                   "event (duplicate command, redelivery) is byte-identical; dedupe by it.")
        v: Literal[1]
        eventId: str
        type: Literal[topic]  # type: ignore[valid-type]
        bookingId: str
        version: int = Field(ge=1)
        occurredAt: str = Instant
        transitions: list[Transition] = Field(min_length=1, description="the moves this event made")
        booking: BookingSnapshot

    BookingEvent.__name__ = BookingEvent.__qualname__ = "BookingEvent"
    return BookingEvent


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
