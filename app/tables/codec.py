"""A trip's state as bytes for its table entry and changelog record.

Positional arrays rather than objects with field names: the whole entry is written once
per command, so every byte of it is paid for on the hot path.
"""

from datetime import date, time
from typing import Any

import orjson

from app.domain.booking import Booking, Status, Transition
from app.domain.events import RefundRequired
from app.domain.rejections import Code
from app.domain.state import Remembered, TripState
from app.domain.trip import Stop, Trip, TripStatus

FORMAT = 1


def encode_state(state: TripState) -> bytes:
    return orjson.dumps([
        FORMAT,
        trip_to_json(state.trip) if state.trip else None,
        state.trip_version,
        state.legs,
        [_booking_row(b) for b in state.bookings.values()],
        [_remembered_row(command_id, r) for command_id, r in state.remembered.items()],
    ])


def decode_state(raw: bytes | None) -> TripState:
    if not raw:
        return TripState()
    fmt, trip, trip_version, legs, bookings, remembered = orjson.loads(raw)
    if fmt != FORMAT:
        raise ValueError(f"unknown trip state format {fmt}")
    return TripState(
        trip=trip_from_json(trip) if trip else None,
        trip_version=trip_version,
        legs=legs,
        bookings={row[0]: _booking_from(row) for row in bookings},
        remembered={row[0]: _remembered_from(row) for row in remembered},
    )


def trip_to_json(trip: Trip) -> dict[str, Any]:
    return {
        "routeId": trip.route_id,
        "travelDate": trip.travel_date.isoformat(),
        "timezone": trip.timezone,
        "departureTime": trip.departure_time.isoformat(),
        "capacity": trip.capacity,
        "currency": trip.currency,
        "stops": [{"stopId": s.stop_id, "offsetMinutes": s.offset_minutes} for s in trip.stops],
        "legFares": list(trip.leg_fares),
        "driverId": trip.driver_id,
        "status": trip.status.value,
    }


def trip_from_json(data: dict[str, Any]) -> Trip:
    return Trip(
        route_id=data["routeId"],
        travel_date=date.fromisoformat(data["travelDate"]),
        timezone=data["timezone"],
        departure_time=time.fromisoformat(data["departureTime"]),
        capacity=data["capacity"],
        currency=data["currency"],
        stops=tuple(Stop(s["stopId"], s["offsetMinutes"]) for s in data["stops"]),
        leg_fares=tuple(data["legFares"]),
        driver_id=data.get("driverId"),
        status=TripStatus(data.get("status", "ACTIVE")),
    )


def _booking_row(b: Booking) -> list[Any]:
    return [b.booking_id, b.reference, b.rider_id, b.first_leg, b.last_leg, b.seats, b.price_per_seat,
            b.fare, b.fee, b.total, b.source, [_transition_row(t) for t in b.transitions]]


def _booking_from(row: list[Any]) -> Booking:
    *head, transitions = row
    booking_id, reference, rider_id, first, last, seats, per_seat, fare, fee, total, source = head
    return Booking(booking_id, reference, rider_id, first, last, tuple(seats), per_seat, fare, fee, total, source,
                   tuple(_transition_from(t) for t in transitions))


def _transition_row(t: Transition) -> list[Any]:
    return [t.source.value, t.target.value, t.reason, t.actor, t.at, t.command_id, t.data]


def _transition_from(row: list[Any]) -> Transition:
    source, target, reason, actor, at, command_id, data = row
    return Transition(Status(source), Status(target), reason, actor, at, command_id, data)


def _remembered_row(command_id: str, r: Remembered) -> list[Any]:
    refund = r.refund
    refund_row = [refund.booking_id, refund.payment_id, refund.amount, refund.reason, refund.at] if refund else None
    return [command_id, r.code.value if r.code else None, r.booking_id, refund_row, r.trip_version]


def _remembered_from(row: list[Any]) -> Remembered:
    _, code, booking_id, refund, trip_version = row
    return Remembered(
        code=Code(code) if code else None,
        booking_id=booking_id,
        refund=RefundRequired(*refund) if refund else None,
        trip_version=trip_version,
    )
