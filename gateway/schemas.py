"""HTTP bodies (camelCase, the Java service's field names).

Request models validate at least as strictly as the worker's wire models
(app.models.commands): a command the worker would dead-letter must be a 400 here, not a
503 after the reply timeout. Response models document the OpenAPI schema; the handlers
return the worker's JSON directly (no second validation on the hot path).
"""

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from app.config import get_settings
from app.models.commands import Name, RouteId

IDEMPOTENCY_KEY_MAX = 100


class Camel(BaseModel):
    # Unknown fields are ignored, as the Java service (Jackson's defaults) did.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class BookingCreate(Camel):
    route_id: RouteId
    travel_date: date
    origin_stop_id: Name
    destination_stop_id: Name
    seats_booked: int = Field(description="1 to MAX_SEATS_PER_BOOKING (4 by default)")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=IDEMPOTENCY_KEY_MAX)
    booking_source: Literal["WEB", "MOBILE", "API"] = "API"
    # Search analytics, as the Java service took them (checked, logged, not stored yet).
    search_id: str | None = Field(default=None, max_length=100)
    candidate_count: int | None = Field(default=None, ge=1)
    candidate_rank: int | None = Field(default=None, ge=1, description="at most candidateCount")

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

    @field_validator("candidate_rank")
    @classmethod
    def _rank_within_count(cls, rank: int | None, info: ValidationInfo) -> int | None:
        count = info.data.get("candidate_count")
        if rank is not None and count is not None and rank > count:
            raise ValueError("must not exceed candidateCount")
        return rank


# -- responses (documentation) ----------------------------------------------------------


class BookingOut(Camel):
    id: str
    booking_reference: str
    rider_id: str
    driver_id: str | None
    route_id: str
    origin_stop_id: str
    destination_stop_id: str
    travel_date: date
    departure_time: str = Field(description="local time at the pickup stop, HH:MM:SS")
    departure_at: str = Field(description="departure from the pickup stop, ISO-8601 UTC")
    seats_booked: int
    seat_numbers: list[int]
    price_per_seat: str = Field(description="decimal amount, 2 places")
    fare: str
    platform_fee: str
    total_price: str
    currency: str
    status: str
    payment_id: str | None
    payment_status: str | None
    cancellation_reason: str | None
    cancelled_at: str | None
    refund_amount: str
    refund_status: str | None
    booking_source: str
    created_at: str
    updated_at: str
    expires_at: str | None
    confirmed_at: str | None
    version: int


class BookingCreatedOut(Camel):
    booking: BookingOut
    payment_url: str | None = None
    expires_at: str | None
    message: str


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
