"""Prices and refunds in integer minor units (kobo, cents): no float ever touches money."""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from app.domain.policy import Policy


@dataclass(frozen=True, slots=True)
class Price:
    per_seat: int
    fare: int
    fee: int
    total: int


def round_half_up(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def demand_multiplier(occupancy: Decimal, policy: Policy) -> Decimal:
    multiplier = Decimal(1)
    for threshold, band in policy.demand_bands:
        if occupancy >= threshold:
            multiplier = band
    return multiplier


def quote(leg_fares: int, seats: int, occupancy: Decimal, policy: Policy) -> Price:
    """Fare = leg fares x demand multiplier per seat; the platform fee goes on top."""
    per_seat = round_half_up(leg_fares * demand_multiplier(occupancy, policy))
    fare = per_seat * seats
    fee = round_half_up(fare * policy.platform_fee_rate)
    return Price(per_seat=per_seat, fare=fare, fee=fee, total=fare + fee)


def refund_share(hours_before_departure: int, policy: Policy) -> Decimal:
    for hours, share in policy.refund_bands:
        if hours_before_departure >= hours:
            return share
    return Decimal(0)


def refund_amount(paid: int, hours_before_departure: int, policy: Policy) -> int:
    return round_half_up(paid * refund_share(hours_before_departure, policy))


def format_minor(amount: int) -> str:
    """Minor units as a decimal string with two places: 123450 -> '1234.50'."""
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole}.{cents:02d}"
