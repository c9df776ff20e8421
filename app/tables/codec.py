"""The table entries of a trip's state as bytes (the layout is `app.tables.store`'s).

Positional arrays rather than objects with field names: entries are written on every
command, so every byte of them is paid for on the hot path.
"""

from dataclasses import dataclass
from datetime import date, time
from typing import Any

import orjson

from app.domain.booking import Booking, Status, Transition
from app.domain.events import RefundRequired
from app.domain.rejections import Code
from app.domain.state import Remembered, TripState
from app.domain.trip import Stop, Trip, TripStatus

FORMAT = 3


@dataclass(slots=True)
class OutcomeQueue:
    """The trip's remembered outcomes in the order they were written, numbered from 0:
    entries `first` to `next - 1` are kept, `first_at` is when the oldest was decided."""

    first: int = 0
    next: int = 0
    first_at: int | None = None


@dataclass(frozen=True, slots=True)
class TripEntry:
    state: TripState  # the trip, its inventory and counters; no bookings yet
    mark: int  # the log offset of the last command that changed the trip
    live: dict[str, int]  # the trip's working set: id token (`app.domain.ids.token_of`) -> version
    queue: OutcomeQueue


def encode_trip_entry(state: TripState, mark: int, live: dict[str, int], queue: OutcomeQueue,
                      trip_json: orjson.Fragment | None) -> bytes:
    """`trip_json`: the trip as `encode_trip`, encoded once while it does not change."""
    return orjson.dumps([FORMAT, trip_json, state.trip_version, state.legs, state.booked, mark, live,
                         [queue.first, queue.next, queue.first_at]])


def encode_trip(trip: Trip) -> orjson.Fragment:
    return orjson.Fragment(orjson.dumps(trip_to_json(trip)))


def decode_trip_entry(raw: bytes) -> TripEntry:
    fmt, trip, trip_version, legs, booked, mark, live, queue = orjson.loads(raw)
    if fmt != FORMAT:
        raise ValueError(f"unknown trip entry format {fmt}")
    state = TripState(trip=trip_from_json(trip) if trip else None, trip_version=trip_version, legs=legs, booked=booked)
    return TripEntry(state, mark, live, OutcomeQueue(*queue))


def encode_booking_entry(mark: int, booking: Booking) -> bytes:
    return orjson.dumps([mark, _booking_row(booking)])


def decode_booking_entry(raw: bytes) -> tuple[int, Booking]:
    mark, row = orjson.loads(raw)
    return mark, _booking_from(row)


def encode_outcome_entry(mark: int, remembered: Remembered) -> bytes:
    return orjson.dumps([mark, _remembered_row(remembered)])


def decode_outcome_entry(raw: bytes) -> tuple[int, Remembered]:
    mark, row = orjson.loads(raw)
    return mark, _remembered_from(row)


def encode_queue_entry(at: int, command_id: str) -> bytes:
    return orjson.dumps([at, command_id])


def decode_queue_entry(raw: bytes) -> tuple[int, str]:
    at, command_id = orjson.loads(raw)
    return at, command_id


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


# Status(value) goes through the enum machinery; a trip read back decodes thousands.
_STATUS = {status.value: status for status in Status}


def _transition_from(row: list[Any]) -> Transition:
    source, target, reason, actor, at, command_id, data = row
    return Transition(_STATUS[source], _STATUS[target], reason, actor, at, command_id, data)


def _remembered_row(r: Remembered) -> list[Any]:
    refund = r.refund
    refund_row = [refund.booking_id, refund.payment_id, refund.amount, refund.reason, refund.at] if refund else None
    return [r.code.value if r.code else None, r.booking_id, refund_row, r.trip_version,
            trip_to_json(r.trip) if r.trip else None, r.touched, r.fingerprint, r.at]


def _remembered_from(row: list[Any]) -> Remembered:
    code, booking_id, refund, trip_version, trip, touched, fingerprint, at = row
    return Remembered(
        code=Code(code) if code else None,
        booking_id=booking_id,
        refund=RefundRequired(*refund) if refund else None,
        trip_version=trip_version,
        trip=trip_from_json(trip) if trip else None,
        touched=tuple(touched),
        fingerprint=fingerprint,
        at=at,
    )
