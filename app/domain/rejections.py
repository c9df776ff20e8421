"""The stable catalogue of reasons a command is refused.

Rejections are values, not exceptions: the codes are a public contract (replies, HTTP
error bodies, metrics), so a code is never renamed; new ones are only added.
"""

from enum import StrEnum


class Code(StrEnum):
    TRIP_NOT_FOUND = "trip_not_found"
    TRIP_CANCELLED = "trip_cancelled"
    TRIP_UPDATE_CONFLICT = "trip_update_conflict"
    BOOKING_NOT_FOUND = "booking_not_found"
    BOOKING_CLOSED = "booking_closed"
    INVALID_STOPS = "invalid_stops"
    TOO_MANY_SEATS = "too_many_seats"
    SEATS_UNAVAILABLE = "seats_unavailable"
    HOLD_EXPIRED = "hold_expired"
    AMOUNT_MISMATCH = "amount_mismatch"
    INVALID_TRANSITION = "invalid_transition"
    INVALID_REASON = "invalid_reason"
    NOT_OWNER = "not_owner"
    FORBIDDEN = "forbidden"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    HOLD_LIMIT_REACHED = "hold_limit_reached"
    TRAVEL_DATE_OUT_OF_RANGE = "travel_date_out_of_range"


MESSAGES: dict[Code, str] = {
    Code.TRIP_NOT_FOUND: "No trip is published for this route and travel date.",
    Code.TRIP_CANCELLED: "This trip was cancelled by the driver.",
    Code.TRIP_UPDATE_CONFLICT: ("Once a trip has bookings, its stops, times, time zone and currency are fixed, "
                                "and its capacity may not drop below a seat in use."),
    Code.BOOKING_NOT_FOUND: "No such booking.",
    Code.BOOKING_CLOSED: "Booking for this pickup stop has closed.",
    Code.INVALID_STOPS: "Pickup and drop-off must be stops of the route, pickup before drop-off.",
    Code.TOO_MANY_SEATS: "Too many or too few seats requested.",
    Code.SEATS_UNAVAILABLE: "Not enough free seats on every leg of this journey.",
    Code.HOLD_EXPIRED: "The hold on this booking has expired.",
    Code.AMOUNT_MISMATCH: "The amount paid does not equal the booking total.",
    Code.INVALID_TRANSITION: "The booking's current status does not allow this action.",
    Code.INVALID_REASON: "A cancellation reason of 10 to 500 characters is required.",
    Code.NOT_OWNER: "Only the booking's rider may do this.",
    Code.FORBIDDEN: "This role may not do this.",
    Code.IDEMPOTENCY_KEY_REUSED: "This Idempotency-Key was already used for a different request.",
    Code.HOLD_LIMIT_REACHED: "You already hold as many unpaid seats on this trip as one rider may; pay or cancel first.",
    Code.TRAVEL_DATE_OUT_OF_RANGE: "Trips can be published from yesterday up to the configured number of days ahead.",
}
