"""Commands on the wire (JSON, camelCase, schema version `v`), and their domain form.

Producers outside the gateway (payments, route service) send these same documents; the
JSON Schema published in `schemas/` is generated from these models.
"""

import re
from datetime import date, time
from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic.alias_generators import to_camel

from app.domain import commands as domain
from app.domain.ids import trip_of_booking
from app.domain.trip import MAX_CAPACITY, Stop, Trip, trip_key

SCHEMA_VERSION = 1
ROUTE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def to_minor(amount: Decimal) -> int:
    return int(amount * 100)


def _two_places(amount: Decimal) -> Decimal:
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError("at most two decimal places")
    return amount


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r}") from error
    return name


# Text every part of the system can carry and store is all that gets in, here at the edge,
# on both the HTTP and the Kafka path: Postgres text cannot hold NUL (one such reason once
# froze a booking's row in the read model for good), JSON encoders refuse lone
# surrogates, and the gateway joins ids with a control character to derive command ids.
# Identifiers take no control character at all; free text keeps tabs and line breaks.
_NOT_IN_IDENTIFIERS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NOT_IN_FREE_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def has_control_characters(text: str) -> bool:
    """True for text no identifier may hold (control characters, unpaired surrogates)."""
    return _NOT_IN_IDENTIFIERS.search(text) is not None


def _identifier(text: str) -> str:
    if has_control_characters(text):
        raise ValueError("must not contain control characters or unpaired surrogates")
    return text


def _free_text(text: str) -> str:
    if _NOT_IN_FREE_TEXT.search(text):
        raise ValueError("must not contain control characters (other than tab and line breaks) "
                         "or unpaired surrogates")
    return text


Money = Annotated[Decimal, Field(ge=0, le=Decimal("1e12")), AfterValidator(_two_places)]
RouteId = Annotated[str, Field(pattern=ROUTE_ID_PATTERN)]
CANCEL_TRIP_REASON_MAX = 500
Name = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_identifier)]
CommandId = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_identifier)]
FreeText = Annotated[str, AfterValidator(_free_text)]


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


class ActorIn(Wire):
    user_id: Name
    role: domain.Role

    def to_domain(self) -> domain.Actor:
        return domain.Actor(self.user_id, self.role)


class StopIn(Wire):
    stop_id: Name
    offset_minutes: int = Field(ge=0, le=7 * 24 * 60, strict=True)


class TripIn(Wire):
    """A trip as the route service publishes it (also the body of PUT /v1/trips/…)."""

    timezone: Annotated[str, AfterValidator(_known_zone)] = "Africa/Lagos"
    departure_time: time
    capacity: int = Field(ge=1, le=MAX_CAPACITY, strict=True, description="seats; TRIP_CAPACITY_MAX may cap it lower")
    currency: str = Field(default="NGN", pattern=r"^[A-Z]{3}$")
    stops: list[StopIn] = Field(min_length=2, max_length=64)
    leg_fares: list[Money]
    driver_id: Name | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "TripIn":
        if len(self.leg_fares) != len(self.stops) - 1:
            raise ValueError("legFares needs one fare per leg (stops - 1)")
        if len({s.stop_id for s in self.stops}) != len(self.stops):
            raise ValueError("stop ids must be unique")
        offsets = [s.offset_minutes for s in self.stops]
        if offsets[0] != 0 or offsets != sorted(offsets):
            raise ValueError("stop offsets start at 0 and never decrease")
        return self

    def to_trip(self, route_id: str, travel_date: date) -> Trip:
        return Trip(
            route_id=route_id,
            travel_date=travel_date,
            timezone=self.timezone,
            departure_time=self.departure_time,
            capacity=self.capacity,
            currency=self.currency,
            stops=tuple(Stop(s.stop_id, s.offset_minutes) for s in self.stops),
            leg_fares=tuple(to_minor(f) for f in self.leg_fares),
            driver_id=self.driver_id,
        )


class CommandIn(Wire):
    v: Literal[1] = SCHEMA_VERSION
    command_id: CommandId
    actor: ActorIn
    # What the request this command stands for was (the gateway's hash of an HTTP request
    # sent with an Idempotency-Key): the same command id with another fingerprint is
    # refused as idempotency_key_reused. Without it, a repeated command id is a retry.
    fingerprint: str | None = Field(default=None, min_length=1, max_length=64)


class TripCommandIn(CommandIn):
    route_id: RouteId
    travel_date: date

    def key(self) -> str:
        return trip_key(self.route_id, self.travel_date)


def _trip_key_of(identifier: str) -> str:
    """The trip key a booking or waiting-list entry id names (checked routable already)."""
    route_id, travel_date = trip_of_booking(identifier)  # type: ignore[misc]
    return trip_key(route_id, travel_date)


class BookingCommandIn(CommandIn):
    booking_id: CommandId

    @model_validator(mode="after")
    def _routable(self) -> "BookingCommandIn":
        if trip_of_booking(self.booking_id) is None:
            raise ValueError("bookingId is not a booking id")
        return self

    def key(self) -> str:
        return _trip_key_of(self.booking_id)


class EntryCommandIn(CommandIn):
    """A command on a waiting-list entry: its id names the trip, as a booking id does."""

    entry_id: CommandId

    @model_validator(mode="after")
    def _routable(self) -> "EntryCommandIn":
        if trip_of_booking(self.entry_id) is None:
            raise ValueError("entryId is not a waiting-list entry id")
        return self

    def key(self) -> str:
        return _trip_key_of(self.entry_id)


class PublishTripIn(TripCommandIn):
    type: Literal["publish_trip"]
    trip: TripIn

    def to_domain(self) -> domain.PublishTrip:
        return domain.PublishTrip(self.command_id, self.actor.to_domain(), self.trip.to_trip(self.route_id, self.travel_date))


class CancelTripIn(TripCommandIn):
    type: Literal["cancel_trip"]
    reason: FreeText = Field(min_length=1, max_length=CANCEL_TRIP_REASON_MAX)

    def to_domain(self) -> domain.CancelTrip:
        return domain.CancelTrip(self.command_id, self.actor.to_domain(), self.reason)


SeatNumber = Annotated[int, Field(ge=1, le=MAX_CAPACITY, strict=True)]
Source = Literal["WEB", "MOBILE", "API"]


class CreateBookingIn(TripCommandIn):
    type: Literal["create_booking"]
    origin_stop_id: Name
    destination_stop_id: Name
    seats_booked: int = Field(ge=0, le=1000, strict=True)
    source: Source = "API"
    seat_numbers: list[SeatNumber] | None = Field(
        None, description="seats chosen (distinct, one per seat booked): given all or none; "
                          "without it, the lowest seats free on every leg")

    @model_validator(mode="after")
    def _one_distinct_seat_each(self) -> "CreateBookingIn":
        chosen = self.seat_numbers
        if chosen is not None and (len(chosen) != self.seats_booked or len(set(chosen)) != len(chosen)):
            raise ValueError("seatNumbers must be distinct, exactly seatsBooked of them")
        return self

    def to_domain(self) -> domain.CreateBooking:
        chosen = tuple(self.seat_numbers) if self.seat_numbers is not None else None
        return domain.CreateBooking(self.command_id, self.actor.to_domain(), self.origin_stop_id,
                                    self.destination_stop_id, self.seats_booked, self.source, chosen)


class ExpireHoldsIn(TripCommandIn):
    type: Literal["expire_holds"]

    def to_domain(self) -> domain.ExpireHolds:
        return domain.ExpireHolds(self.command_id, self.actor.to_domain())


class QueryAvailabilityIn(TripCommandIn):
    type: Literal["query_availability"]

    def to_domain(self) -> domain.QueryAvailability:
        return domain.QueryAvailability(self.command_id, self.actor.to_domain())


class QuerySeatMapIn(TripCommandIn):
    type: Literal["query_seat_map"]
    origin_stop_id: Name
    destination_stop_id: Name

    def to_domain(self) -> domain.QuerySeatMap:
        return domain.QuerySeatMap(self.command_id, self.actor.to_domain(), self.origin_stop_id,
                                   self.destination_stop_id)


class JoinWaitlistIn(TripCommandIn):
    type: Literal["join_waitlist"]
    origin_stop_id: Name
    destination_stop_id: Name
    seats_booked: int = Field(ge=1, le=1000, strict=True)

    def to_domain(self) -> domain.JoinWaitlist:
        return domain.JoinWaitlist(self.command_id, self.actor.to_domain(), self.origin_stop_id,
                                   self.destination_stop_id, self.seats_booked)


class LeaveWaitlistIn(EntryCommandIn):
    type: Literal["leave_waitlist"]

    def to_domain(self) -> domain.LeaveWaitlist:
        return domain.LeaveWaitlist(self.command_id, self.actor.to_domain(), self.entry_id)


class AcceptOfferIn(EntryCommandIn):
    type: Literal["accept_offer"]
    source: Source = "API"

    def to_domain(self) -> domain.AcceptOffer:
        return domain.AcceptOffer(self.command_id, self.actor.to_domain(), self.entry_id, self.source)


class InitiatePaymentIn(BookingCommandIn):
    type: Literal["initiate_payment"]
    payment_id: Name | None = None

    def to_domain(self) -> domain.InitiatePayment:
        return domain.InitiatePayment(self.command_id, self.actor.to_domain(), self.booking_id, self.payment_id)


class PaymentSucceededIn(BookingCommandIn):
    type: Literal["payment_succeeded"]
    payment_id: Name
    amount: Money

    def to_domain(self) -> domain.PaymentSucceeded:
        return domain.PaymentSucceeded(self.command_id, self.actor.to_domain(), self.booking_id, self.payment_id,
                                       to_minor(self.amount))


class PaymentFailedIn(BookingCommandIn):
    type: Literal["payment_failed"]
    payment_id: Name

    def to_domain(self) -> domain.PaymentFailed:
        return domain.PaymentFailed(self.command_id, self.actor.to_domain(), self.booking_id, self.payment_id)


class CancelBookingIn(BookingCommandIn):
    type: Literal["cancel_booking"]
    reason: FreeText = Field(max_length=2000)

    def to_domain(self) -> domain.CancelBooking:
        return domain.CancelBooking(self.command_id, self.actor.to_domain(), self.booking_id, self.reason)


class CheckInIn(BookingCommandIn):
    type: Literal["check_in"]

    def to_domain(self) -> domain.CheckIn:
        return domain.CheckIn(self.command_id, self.actor.to_domain(), self.booking_id)


class CompleteIn(BookingCommandIn):
    type: Literal["complete"]

    def to_domain(self) -> domain.Complete:
        return domain.Complete(self.command_id, self.actor.to_domain(), self.booking_id)


class RefundDoneIn(BookingCommandIn):
    type: Literal["refund_done"]
    amount: Money

    def to_domain(self) -> domain.RefundDone:
        return domain.RefundDone(self.command_id, self.actor.to_domain(), self.booking_id, to_minor(self.amount))


AnyCommandIn = Annotated[
    PublishTripIn | CancelTripIn | CreateBookingIn | ExpireHoldsIn | QueryAvailabilityIn | InitiatePaymentIn
    | PaymentSucceededIn | PaymentFailedIn | CancelBookingIn | CheckInIn | CompleteIn | RefundDoneIn
    | QuerySeatMapIn | JoinWaitlistIn | LeaveWaitlistIn | AcceptOfferIn,
    Field(discriminator="type"),
]
COMMAND = TypeAdapter(AnyCommandIn)


def parse_command(raw: bytes) -> AnyCommandIn:
    """Raises pydantic.ValidationError (the reason goes to the dead-letter topic)."""
    return COMMAND.validate_json(raw)


class TickIn(Wire):
    """A clock tick, written by the leader worker into every partition of the command topic
    with key `tick` (app.wire.topics.TICK_KEY). The owner of the partition expires the
    holds due by the tick's record time (broker-stamped), not by `emittedAt`, which only
    helps a reader of the log."""

    v: Literal[1] = SCHEMA_VERSION
    type: Literal["tick"]
    tick_id: CommandId
    emitted_at: int = Field(ge=0, description="emitter's clock, epoch ms (informational)")


TICK = TypeAdapter(TickIn)


class TripRecordIn(TripIn):
    """A record of the trips catalog topic: the trip and which route and date it runs."""

    route_id: RouteId
    travel_date: date

    def to_command(self, command_id: str) -> dict:
        """The `publish_trip` command this catalog record stands for."""
        trip = self.model_dump(mode="json", by_alias=True, exclude={"route_id", "travel_date"})
        return {
            "v": SCHEMA_VERSION, "type": "publish_trip", "commandId": command_id,
            "actor": {"userId": "route-service", "role": domain.Role.SERVICE.value},
            "routeId": self.route_id, "travelDate": self.travel_date.isoformat(), "trip": trip,
        }


TRIP_RECORD = TypeAdapter(TripRecordIn)


def claimed_command_id(value: bytes | None) -> str | None:
    """The command id a record's value claims, if it is one at all: enough to answer a
    record that is not a valid command (a dead letter's error reply, a reply's waiter)."""
    try:
        document = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    command_id = document.get("commandId") if isinstance(document, dict) else None
    return command_id if isinstance(command_id, str) and 0 < len(command_id) <= 128 else None
