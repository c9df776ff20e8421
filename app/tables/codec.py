"""The table entries of a trip's state as bytes (the layout is `app.tables.store`'s).

Positional arrays rather than objects with field names: entries are written on every
command, so every byte of them is paid for on the hot path.

Leg bitmasks of trips with more than 63 seats are wider than the 64-bit ints JSON
encoders (orjson among them) take: such a mask is written as a hex string. Masks that
fit stay plain ints, so a coach's entry costs what it did before.
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
from app.domain.waitlist import Entry, EntryStatus

# 3: the waiting list (join counter, live entry tokens) and hex masks. Entries of
# format 2 (no waiting list) are still read: a changelog may hold them.
FORMAT = 3
READABLE = (2, FORMAT)
WIDEST_INT_MASK = (1 << 63) - 1

# Which commit a booking or outcome entry was written by: (trip entry seq, command id).
Mark = tuple[int, str]


@dataclass(frozen=True, slots=True)
class TripEntry:
    state: TripState  # the trip, its inventory and counters; no bookings or entries yet
    seq: int
    last: str  # the command id of the commit that wrote it
    live: list[str]  # the id tokens of the trip's working set of bookings (`app.domain.ids.token_of`)
    listed: list[str]  # the id tokens of its live waiting-list entries


def encode_trip_entry(state: TripState, seq: int, last: str, live: list[str], listed: list[str]) -> bytes:
    return orjson.dumps([
        FORMAT,
        trip_to_json(state.trip) if state.trip else None,
        state.trip_version,
        [leg if leg <= WIDEST_INT_MASK else format(leg, "x") for leg in state.legs],  # see mask_from_json
        state.booked,
        seq,
        last,
        live,
        state.joined,
        listed,
    ])


def decode_trip_entry(raw: bytes) -> TripEntry:
    fmt, trip, trip_version, legs, booked, seq, last, live, *waitlist = orjson.loads(raw)
    if fmt not in READABLE:
        raise ValueError(f"unknown trip entry format {fmt}")
    joined, listed = waitlist or (0, [])
    state = TripState(trip=trip_from_json(trip) if trip else None, trip_version=trip_version,
                      legs=[mask_from_json(leg) for leg in legs], booked=booked, joined=joined)
    return TripEntry(state, seq, last, live, listed)


def mask_from_json(value: int | str) -> int:
    """A leg mask as the trip entry holds it: an int, or a hex string if wider than 63 bits."""
    return int(value, 16) if isinstance(value, str) else value


def encode_booking_entry(mark: Mark, prev: int, booking: Booking) -> bytes:
    """`prev` is the booking's version before the commit `mark`: what it was if that
    commit never completes."""
    return orjson.dumps([*mark, prev, _booking_row(booking)])


def decode_booking_entry(raw: bytes) -> tuple[Mark, int, Booking]:
    seq, command_id, prev, row = orjson.loads(raw)
    return (seq, command_id), prev, _booking_from(row)


def encode_waitlist_entry(mark: Mark, prev: int, entry: Entry) -> bytes:
    """As a booking's: `prev` is the entry's version before the commit `mark`."""
    return orjson.dumps([*mark, prev, [entry.entry_id, entry.rider_id, entry.first_leg, entry.last_leg,
                                       entry.seats_wanted, entry.join_order, entry.position,
                                       [_transition_row(t) for t in entry.transitions]]])


def decode_waitlist_entry(raw: bytes) -> tuple[Mark, int, Entry]:
    seq, command_id, prev, row = orjson.loads(raw)
    *head, transitions = row
    return (seq, command_id), prev, Entry(*head, tuple(_transition_from(t, EntryStatus) for t in transitions))


def encode_outcome_entry(mark: Mark, remembered: Remembered) -> bytes:
    return orjson.dumps([*mark, _remembered_row(remembered)])


def decode_outcome_entry(raw: bytes) -> tuple[Mark, Remembered]:
    seq, command_id, row = orjson.loads(raw)
    return (seq, command_id), _remembered_from(row)


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
                   tuple(_transition_from(t, Status) for t in transitions))


def _transition_row(t: Transition) -> list[Any]:
    return [t.source.value, t.target.value, t.reason, t.actor, t.at, t.command_id, t.data]


def _transition_from(row: list[Any], status: type[Status] | type[EntryStatus]) -> Transition:
    source, target, reason, actor, at, command_id, data = row
    return Transition(status(source), status(target), reason, actor, at, command_id, data)


def _remembered_row(r: Remembered) -> list[Any]:
    refund = r.refund
    refund_row = [refund.booking_id, refund.payment_id, refund.amount, refund.reason, refund.at] if refund else None
    return [r.code.value if r.code else None, r.booking_id, refund_row, r.trip_version,
            trip_to_json(r.trip) if r.trip else None, r.touched, r.fingerprint, r.touched_entries]


def _remembered_from(row: list[Any]) -> Remembered:
    # Entries written before fingerprints were kept have six fields, before the waiting
    # list seven.
    code, booking_id, refund, trip_version, trip, touched, *later = row
    fingerprint, touched_entries = (*later, None, ())[:2]
    return Remembered(
        code=Code(code) if code else None,
        booking_id=booking_id,
        refund=RefundRequired(*refund) if refund else None,
        trip_version=trip_version,
        trip=trip_from_json(trip) if trip else None,
        touched=tuple(touched),
        fingerprint=fingerprint,
        touched_entries=tuple(touched_entries),
    )
