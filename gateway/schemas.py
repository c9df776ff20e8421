"""HTTP bodies (camelCase, the Java service's field names).

Request models validate at least as strictly as the worker's wire models
(app.wire.commands): a command the worker would dead-letter must be a 400 here, not a
503 after the reply timeout. Response models document the OpenAPI schema; the handlers
return the worker's JSON directly (no second validation on the hot path).
"""

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from app.config import RULES, get_settings
from app.domain.booking import Status
from app.domain.trip import MAX_CAPACITY
from app.wire.commands import CANCEL_TRIP_REASON_MAX, FreeText, Money, Name, RouteId
from app.wire.contract import BookingSnapshot, EntrySnapshot, LegAvailability, SeatOut

IDEMPOTENCY_KEY_MAX = 100
# Printable ASCII: a key is echoed into command ids, logs and Postgres.
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]+$"
# The core decides a booking cancellation's reason length (app.domain.policy); the HTTP
# path refuses one outside it before anything is sent.
REASON_MIN, REASON_MAX = RULES.cancel_reason_min, RULES.cancel_reason_max


class Camel(BaseModel):
    # Unknown fields are ignored, as the Java service (Jackson's defaults) did.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def examples(*values: dict[str, Any]) -> ConfigDict:
    """Model config with OpenAPI examples (shown by /docs)."""
    return ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore",
                      json_schema_extra={"examples": list(values)})


class Journey(Camel):
    """A party's journey on a trip: from a stop to a later one, for some seats."""

    origin_stop_id: Name
    destination_stop_id: Name
    seats_booked: int = Field(description="1 to MAX_SEATS_PER_BOOKING (4 by default)", strict=True)

    @field_validator("seats_booked")
    @classmethod
    def _seats_in_range(cls, seats: int) -> int:
        # Read per call: the limit is a setting, and get_settings() is cached.
        limit = get_settings().max_seats_per_booking
        if not 1 <= seats <= limit:
            raise ValueError(f"must be between 1 and {limit}")
        return seats

    @field_validator("destination_stop_id")
    @classmethod
    def _not_the_origin(cls, destination: str, info: ValidationInfo) -> str:
        if destination == info.data.get("origin_stop_id"):
            raise ValueError("must differ from originStopId")
        return destination


class BookingCreate(Journey):
    model_config = examples({"routeId": "LAG-IBD", "travelDate": "2030-01-15", "originStopId": "LAG",
                             "destinationStopId": "IBD", "seatsBooked": 2, "idempotencyKey": "7d0c1c9e-booking-1"})

    route_id: RouteId
    travel_date: date
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=IDEMPOTENCY_KEY_MAX,
                                        pattern=IDEMPOTENCY_KEY_PATTERN)
    booking_source: Literal["WEB", "MOBILE", "API"] = "API"
    seat_numbers: list[int] | None = Field(
        default=None, description="seats chosen, one per seat booked: all given, or 409 seat_unavailable; "
                                  "without it, the lowest seats free on every leg of the journey")
    # Search analytics, as the Java service took them (checked, logged, not stored yet).
    search_id: FreeText | None = Field(default=None, max_length=100)
    candidate_count: int | None = Field(default=None, ge=1)
    candidate_rank: int | None = Field(default=None, ge=1, description="at most candidateCount")

    @field_validator("seat_numbers")
    @classmethod
    def _one_distinct_seat_each(cls, seats: list[int] | None, info: ValidationInfo) -> list[int] | None:
        if seats is None:
            return None
        if not all(1 <= seat <= MAX_CAPACITY for seat in seats):
            raise ValueError(f"seat numbers run from 1 to {MAX_CAPACITY}")
        if len(set(seats)) != len(seats) or len(seats) != info.data.get("seats_booked", len(seats)):
            raise ValueError("must be distinct, exactly seatsBooked of them")
        return seats

    @field_validator("candidate_rank")
    @classmethod
    def _rank_within_count(cls, rank: int | None, info: ValidationInfo) -> int | None:
        count = info.data.get("candidate_count")
        if rank is not None and count is not None and rank > count:
            raise ValueError("must not exceed candidateCount")
        return rank


class WaitlistJoin(Journey):
    """The party waits for all its seats: an offer is for all of them or none."""

    model_config = examples({"originStopId": "LAG", "destinationStopId": "IBD", "seatsBooked": 2})


class CancelRequest(Camel):
    model_config = examples({"reason": "My plans changed, sorry."})

    reason: FreeText = Field(description=f"{REASON_MIN} to {REASON_MAX} characters (spaces around do not count)")

    @field_validator("reason")
    @classmethod
    def _reason_length(cls, reason: str) -> str:
        if not REASON_MIN <= len(reason.strip()) <= REASON_MAX:
            raise ValueError(f"must be {REASON_MIN} to {REASON_MAX} characters")
        return reason.strip()


class TripCancelRequest(Camel):
    model_config = examples({"reason": "Vehicle broke down."})

    reason: FreeText = Field(min_length=1, max_length=CANCEL_TRIP_REASON_MAX)


class PaymentRequest(Camel):
    model_config = examples({"paymentId": "pay_8f2a61"}, {})

    payment_id: Name | None = Field(default=None, description="the payment provider's id, if known yet")


class ConfirmRequest(Camel):
    """The payments service reports a payment (the Java service's confirm body, plus the
    amount, which must equal the booking's total)."""

    model_config = examples({"paymentId": "pay_8f2a61", "paymentStatus": "SUCCESS", "amount": "5250.00"},
                            {"paymentId": "pay_8f2a61", "paymentStatus": "FAILED"})

    payment_id: Name
    payment_status: Literal["SUCCESS", "FAILED"]
    amount: Money | None = Field(default=None, description="decimal, 2 places; required when SUCCESS")

    @model_validator(mode="after")
    def _amount_when_paid(self) -> "ConfirmRequest":
        if self.payment_status == "SUCCESS" and self.amount is None:
            raise ValueError("amount is required when paymentStatus is SUCCESS")
        return self


class RefundDoneRequest(Camel):
    model_config = examples({"amount": "5250.00"})

    amount: Money = Field(description="decimal, 2 places: what was returned to the rider")


# -- responses (documentation) ----------------------------------------------------------

BOOKING_EXAMPLE: dict[str, Any] = {
    "id": "LAG-IBD.20300115.M3ZQ7KX2B4TQJH6A", "bookingReference": "BK20300115RW4C2N", "riderId": "rider-1",
    "driverId": "driver-7", "routeId": "LAG-IBD", "originStopId": "LAG", "destinationStopId": "IBD",
    "travelDate": "2030-01-15", "departureTime": "09:00:00", "departureAt": "2030-01-15T08:00:00.000Z",
    "seatsBooked": 2, "seatNumbers": [1, 2], "pricePerSeat": "2500.00", "fare": "5000.00",
    "platformFee": "250.00", "totalPrice": "5250.00", "currency": "NGN", "status": "HELD", "paymentId": None,
    "paymentStatus": "PENDING", "cancellationReason": None, "cancelledAt": None, "refundAmount": "0.00",
    "refundStatus": "NONE", "bookingSource": "API", "createdAt": "2030-01-10T10:00:00.000Z",
    "updatedAt": "2030-01-10T10:00:00.000Z", "expiresAt": "2030-01-10T10:10:00.000Z", "confirmedAt": None,
    "version": 1,
}


class BookingOut(BookingSnapshot):
    """The booking body: the snapshot the events carry (app.wire.contract), with an example."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [BOOKING_EXAMPLE]})


class BookingCreatedOut(Camel):
    booking: BookingOut
    payment_url: str | None = None
    expires_at: str | None
    message: str


class BookingPage(Camel):
    """A page as the Java service's clients read it (Spring's Page: numbered from 0)."""

    content: list[BookingOut]
    total_elements: int
    total_pages: int
    size: int
    number: int = Field(description="this page's number, from 0")


class AvailabilityOut(Camel):
    model_config = examples({"routeId": "LAG-IBD", "travelDate": "2030-01-15", "legs": [
        {"fromStopId": "LAG", "toStopId": "IBD", "free": 12, "held": 2, "sold": 0}]})

    route_id: str
    travel_date: date
    legs: list[LegAvailability] = Field(description="in route order; free + held + sold = capacity")


class SeatMapOut(Camel):
    model_config = examples({"routeId": "LAG-IBD", "travelDate": "2030-01-15", "fromStopId": "LAG",
                             "toStopId": "IBD", "seats": [{"seatNumber": 1, "free": False},
                                                          {"seatNumber": 2, "free": True}]})

    route_id: str
    travel_date: date
    from_stop_id: str
    to_stop_id: str
    seats: list[SeatOut] = Field(description="every seat of the trip, in order")


ENTRY_EXAMPLE: dict[str, Any] = {
    "id": "LAG-IBD.20300115.Q4SB2MXKZ7D3NH5E", "riderId": "rider-1", "routeId": "LAG-IBD", "travelDate": "2030-01-15",
    "originStopId": "LAG", "destinationStopId": "IBD", "seatsBooked": 2, "joinOrder": 3, "position": 2,
    "status": "WAITING", "seatNumbers": [], "joinedAt": "2030-01-10T10:00:00.000Z",
    "updatedAt": "2030-01-10T10:00:00.000Z", "offeredAt": None, "offerExpiresAt": None, "bookingId": None,
    "version": 1,
}


class EntryOut(EntrySnapshot):
    """A waiting-list entry: the snapshot the events carry (app.wire.contract), with an example."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [ENTRY_EXAMPLE]})


class EntryBody(Camel):
    entry: EntryOut


class EntryList(Camel):
    entries: list[EntryOut]


class OfferAcceptedOut(BookingCreatedOut):
    entry: EntryOut


class TripCancelledOut(Camel):
    route_id: str
    travel_date: date
    trip_version: int
    status: Literal["CANCELLED"]


class PassengerOut(Camel):
    booking_id: str
    booking_reference: str
    rider_id: str
    seats_booked: int
    seat_numbers: list[int]
    destination_stop_id: str
    status: str
    checked_in: bool


class BoardingStopOut(Camel):
    stop_id: str
    offset_minutes: int
    boarding: list[PassengerOut]
    alighting_seats: int = Field(description="seats freed at this stop")


class ManifestOut(Camel):
    model_config = examples({"routeId": "LAG-IBD", "travelDate": "2030-01-15", "driverId": "driver-7",
                             "status": "ACTIVE", "timezone": "Africa/Lagos", "departureTime": "09:00:00",
                             "capacity": 14, "passengers": 1, "seats": 2, "stops": [
                                 {"stopId": "LAG", "offsetMinutes": 0, "alightingSeats": 0, "boarding": [
                                     {"bookingId": "LAG-IBD.20300115.M3ZQ7KX2B4TQJH6A",
                                      "bookingReference": "BK20300115RW4C2N", "riderId": "rider-1",
                                      "seatsBooked": 2, "seatNumbers": [1, 2], "destinationStopId": "IBD",
                                      "status": "CONFIRMED", "checkedIn": False}]},
                                 {"stopId": "IBD", "offsetMinutes": 90, "alightingSeats": 2, "boarding": []}]})

    route_id: str
    travel_date: date
    driver_id: str | None
    status: str
    timezone: str
    departure_time: str
    capacity: int
    passengers: int = Field(description="bookings on board (confirmed, checked in or completed)")
    seats: int
    stops: list[BoardingStopOut]


class RevenueOut(Camel):
    currency: str
    paid_bookings: int
    gross: str
    refunded: str
    refunds_pending: str
    net: str
    average_value: str


class StatisticsOut(Camel):
    model_config = examples({"from": "2030-01-01", "to": "2030-01-31", "totalBookings": 3,
                             "byStatus": {status.value: 0 for status in Status} | {"CONFIRMED": 2, "EXPIRED": 1},
                             "uniqueRiders": 3, "uniqueDrivers": 1, "revenue": [
                                 {"currency": "NGN", "paidBookings": 2, "gross": "10500.00", "refunded": "0.00",
                                  "refundsPending": "0.00", "net": "10500.00", "averageValue": "5250.00"}]})

    from_: date = Field(alias="from")
    to: date
    total_bookings: int
    by_status: dict[str, int]
    unique_riders: int
    unique_drivers: int
    revenue: list[RevenueOut] = Field(description="per currency: amounts in different currencies are never summed")


class StopOut(Camel):
    stop_id: str
    offset_minutes: int


class TripOut(Camel):
    route_id: str
    travel_date: date
    timezone: str
    departure_time: str
    capacity: int
    currency: str
    stops: list[StopOut]
    leg_fares: list[str] = Field(description="decimal amounts, 2 places, one per leg")
    driver_id: str | None
    status: str


class TripPublishedOut(Camel):
    route_id: str
    travel_date: date
    trip_version: int
    trip: TripOut


class ErrorOut(BaseModel):
    status: int
    error: str
    code: str = Field(description="stable machine-readable reason")
    message: str
    errors: dict[str, str] | None = Field(default=None, description="per field, on 400 validation_failed")
    commandId: str | None = Field(default=None, description="on 503 reply_timeout: the command that may still apply")
    timestamp: str


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI entries for the error statuses an operation can answer with. Declaring them
    (with 4XX) also keeps FastAPI from documenting a 422 validation body we never send."""
    described: dict[int | str, dict] = {status: {"model": ErrorOut} for status in statuses}
    described["4XX"] = {"model": ErrorOut, "description": "any other client error, same shape"}
    return described
