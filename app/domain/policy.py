"""Business rules that operators may tune, passed into the core as one value."""

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Policy:
    max_seats_per_booking: int = 4
    booking_close_minutes: int = 15
    hold_minutes: int = 10
    payment_hold_minutes: int = 15
    platform_fee_rate: Decimal = Decimal("0.05")
    # (occupancy at or above, multiplier), ascending; occupancy is the fullest leg used.
    demand_bands: tuple[tuple[Decimal, Decimal], ...] = (
        (Decimal("0"), Decimal("1.00")),
        (Decimal("0.5"), Decimal("1.10")),
        (Decimal("0.8"), Decimal("1.25")),
    )
    # (whole hours before departure at or above, share of the total refunded), descending.
    refund_bands: tuple[tuple[int, Decimal], ...] = (
        (24, Decimal("1")),
        (6, Decimal("0.5")),
    )
    cancel_reason_min: int = 10
    cancel_reason_max: int = 500
    # Seats one rider may hold unpaid on one trip at a time: without it, one account could
    # hold a whole trip for the hold's length, again and again.
    hold_limit_seats_per_trip: int = 8
    # How far ahead a trip may be published (days after the record's date), and how far
    # back (a trip already run is not republished; one day of slack for time zones).
    trip_days_ahead_max: int = 400
    trip_days_behind_max: int = 1
    # The most seats a trip may have (app.domain.trip.MAX_CAPACITY at most).
    trip_capacity_max: int = 1000
    # How long freed seats offered to a waiting-list entry are held for it.
    offer_minutes: int = 15
    # Entries on one trip's waiting list (waiting or holding an offer): bounds the trip's
    # state and the work of finding who an offer goes to.
    waitlist_entries_max: int = 500
    # How long a command id re-sent gets the outcome it got first, when that outcome is a
    # remembered one (a rejection, a trip command, a refund demand: app.domain.state.Remembered).
    outcome_retention_hours: int = 48

    @property
    def outcome_retention_ms(self) -> int:
        return self.outcome_retention_hours * 3_600_000
