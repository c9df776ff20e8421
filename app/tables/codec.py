"""The table entries of a trip's state as bytes (the layout is `app.tables.store`'s).

Positional arrays rather than objects with field names: entries are written on every
command, so every byte of them is paid for on the hot path.

Leg bitmasks of trips with more than 63 seats are wider than the 64-bit ints JSON
encoders (orjson among them) take: such a mask is written as a hex string. Masks that
fit stay plain ints, so a coach's entry costs what it did before.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, time
from enum import StrEnum
from typing import Any

import orjson

from app.domain.booking import Booking, Status, Transition
from app.domain.events import RefundRequired
from app.domain.rejections import Code
from app.domain.state import Remembered, TripState
from app.domain.trip import Stop, Trip, TripStatus
from app.domain.waitlist import Entry, EntryStatus

# 4: the waiting list (join counter, live entry tokens and versions) and hex masks.
# Entries of format 3 (no waiting list) are still read: a changelog may hold them.
FORMAT = 4
READABLE = (3, FORMAT)
WIDEST_INT_MASK = (1 << 63) - 1


@dataclass(slots=True)
class OutcomeQueue:
    """The trip's remembered outcomes in the order they were written, numbered from 0:
    entries `first` to `next - 1` are kept, `first_at` is when the oldest was decided."""

    first: int = 0
    next: int = 0
    first_at: int | None = None


@dataclass(frozen=True, slots=True)
class TripEntry:
    state: TripState  # the trip, its inventory and counters; no bookings or entries yet
    mark: int  # the log offset of the last command that changed the trip
    live: dict[str, int]  # the trip's working set: id token (`app.domain.ids.token_of`) -> version
    queue: OutcomeQueue
    listed: dict[str, int]  # its live waiting-list entries: id token -> version


def encode_trip_entry(state: TripState, mark: int, live: dict[str, int], queue: OutcomeQueue,
                      trip_json: orjson.Fragment | None, listed: dict[str, int]) -> bytes:
    """`trip_json`: the trip as `encode_trip`, encoded once while it does not change."""
    legs = [leg if leg <= WIDEST_INT_MASK else format(leg, "x") for leg in state.legs]  # see mask_from_json
    return orjson.dumps([FORMAT, trip_json, state.trip_version, legs, state.booked, mark, live,
                         [queue.first, queue.next, queue.first_at], state.joined, listed])


def encode_trip(trip: Trip) -> orjson.Fragment:
    return orjson.Fragment(orjson.dumps(trip_to_json(trip)))


def decode_trip_entry(raw: bytes) -> TripEntry:
    fmt, trip, trip_version, legs, booked, mark, live, queue, *waitlist = orjson.loads(raw)
    if fmt not in READABLE:
        raise ValueError(f"unknown trip entry format {fmt}")
    joined, listed = waitlist or (0, {})
    state = TripState(trip=trip_from_json(trip) if trip else None, trip_version=trip_version,
                      legs=[mask_from_json(leg) for leg in legs], booked=booked, joined=joined)
    return TripEntry(state, mark, live, OutcomeQueue(*queue), listed)


def mask_from_json(value: int | str) -> int:
    """A leg mask as the trip entry holds it: an int, or a hex string if wider than 63 bits."""
    return int(value, 16) if isinstance(value, str) else value


def encode_booking_entry(mark: int, booking: Booking) -> bytes:
    return orjson.dumps([mark, _booking_row(booking)])


def decode_booking_entry(raw: bytes) -> tuple[int, Booking]:
    mark, row = orjson.loads(raw)
    return mark, _booking_from(row)


def encode_waitlist_entry(mark: int, entry: Entry) -> bytes:
    return orjson.dumps([mark, [entry.entry_id, entry.rider_id, entry.first_leg, entry.last_leg,
                                entry.seats_wanted, entry.join_order, entry.position,
                                [_transition_row(t) for t in entry.transitions]]])


def decode_waitlist_entry(raw: bytes) -> tuple[int, Entry]:
    mark, row = orjson.loads(raw)
    *head, transitions = row
    return mark, Entry(*head, tuple(_transition_from(t, _ENTRY_STATUS) for t in transitions))


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
                   tuple(_transition_from(t, _STATUS) for t in transitions))


def _transition_row(t: Transition) -> list[Any]:
    return [t.source.value, t.target.value, t.reason, t.actor, t.at, t.command_id, t.data]


# Status(value) goes through the enum machinery; a trip read back decodes thousands.
_STATUS = {status.value: status for status in Status}
_ENTRY_STATUS = {status.value: status for status in EntryStatus}


def _transition_from(row: list[Any], statuses: Mapping[str, StrEnum]) -> Transition:
    source, target, reason, actor, at, command_id, data = row
    return Transition(statuses[source], statuses[target], reason, actor, at, command_id, data)


def _remembered_row(r: Remembered) -> list[Any]:
    refund = r.refund
    refund_row = [refund.booking_id, refund.payment_id, refund.amount, refund.reason, refund.at] if refund else None
    return [r.code.value if r.code else None, r.booking_id, refund_row, r.trip_version,
            trip_to_json(r.trip) if r.trip else None, r.touched, r.fingerprint, r.at, r.touched_entries]


def _remembered_from(row: list[Any]) -> Remembered:
    # Entries written before the waiting list (format 3) have eight fields.
    code, booking_id, refund, trip_version, trip, touched, fingerprint, at, *later = row
    touched_entries = later[0] if later else ()
    return Remembered(
        code=Code(code) if code else None,
        booking_id=booking_id,
        refund=RefundRequired(*refund) if refund else None,
        trip_version=trip_version,
        trip=trip_from_json(trip) if trip else None,
        touched=tuple(touched),
        fingerprint=fingerprint,
        at=at,
        touched_entries=tuple(touched_entries),
    )
