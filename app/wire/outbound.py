"""What the processor writes: replies, lifecycle events and the booking and waiting-list
entry snapshots they carry.

Rendering is a pure function of the outcome and the state, so a duplicate command (whose
outcome is rebuilt from the state) yields byte-identical replies and events.
"""

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from app.domain.booking import Booking, Transition
from app.domain.commands import Command, QueryAvailability, QuerySeatMap
from app.domain.events import (BookingCreated, BookingMoved, EntryJoined, EntryMoved, Event, RefundRequired,
                               TripPublished)
from app.domain.handle import Outcome
from app.domain.money import format_minor
from app.domain.rejections import MESSAGES
from app.domain.state import TripState, availability, seat_map
from app.domain.trip import Trip
from app.domain.waitlist import Entry, EntryStatus
from app.wire.topics import CONTRACT
from app.wire.commands import SCHEMA_VERSION
from app.tables.codec import trip_to_json


@lru_cache(maxsize=8192)
def iso(ms: int | None) -> str | None:
    """A command's replies and events show the same few instants many times: cached."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


@lru_cache(maxsize=4096)
def local_clock(ms: int, timezone: str) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(timezone)).strftime("%H:%M:%S")


# The last snapshot made: a command's reply shows the booking as its event does.
_last_snapshot: tuple[Trip, Booking, int | None, dict[str, Any]] | None = None


def snapshot(trip: Trip, booking: Booking, version: int | None = None) -> dict[str, Any]:
    """The booking body of the HTTP contract (docs/design.md §15; its shape is
    app.wire.contract.BookingSnapshot), as of `version`. The same
    dict for the same trip, booking and version asked twice in a row: do not change it."""
    global _last_snapshot
    last = _last_snapshot
    if last is not None and last[0] is trip and last[1] is booking and last[2] == version:
        return last[3]
    body = _snapshot(trip, booking, version)
    _last_snapshot = (trip, booking, version, body)
    return body


def _snapshot(trip: Trip, booking: Booking, version: int | None) -> dict[str, Any]:
    view = booking.view(version)
    departs = trip.departure_ms(booking.first_leg)
    return {
        "id": booking.booking_id,
        "bookingReference": booking.reference,
        "riderId": booking.rider_id,
        "driverId": trip.driver_id,
        "routeId": trip.route_id,
        "originStopId": trip.stops[booking.first_leg].stop_id,
        "destinationStopId": trip.stops[booking.last_leg + 1].stop_id,
        "travelDate": trip.travel_date.isoformat(),
        "departureTime": local_clock(departs, trip.timezone),
        "departureAt": iso(departs),
        "seatsBooked": len(booking.seats),
        "seatNumbers": list(booking.seats),
        "pricePerSeat": format_minor(booking.price_per_seat),
        "fare": format_minor(booking.fare),
        "platformFee": format_minor(booking.fee),
        "totalPrice": format_minor(booking.total),
        "currency": trip.currency,
        "status": view.status.value,
        "paymentId": view.payment_id,
        "paymentStatus": view.payment_status,
        "cancellationReason": view.cancellation_reason,
        "cancelledAt": iso(view.cancelled_at),
        "refundAmount": format_minor(view.refund_amount),
        "refundStatus": view.refund_status,
        "bookingSource": booking.source,
        "createdAt": iso(view.created_at),
        "updatedAt": iso(view.updated_at),
        "expiresAt": iso(view.expires_at),
        "confirmedAt": iso(view.confirmed_at),
        "version": view.version,
    }


def entry_snapshot(trip: Trip, entry: Entry, version: int | None = None) -> dict[str, Any]:
    """A waiting-list entry as of `version`. `position` is its place in the trip's queue
    when it joined, shown while it waits (an entry waits only at its first version); the
    read side computes the current one."""
    view = entry.view(version)
    return {
        "id": entry.entry_id,
        "riderId": entry.rider_id,
        "routeId": trip.route_id,
        "travelDate": trip.travel_date.isoformat(),
        "originStopId": trip.stops[entry.first_leg].stop_id,
        "destinationStopId": trip.stops[entry.last_leg + 1].stop_id,
        "seatsBooked": entry.seats_wanted,
        "joinOrder": entry.join_order,
        "position": entry.position if view.status is EntryStatus.WAITING else None,
        "status": view.status.value,
        "seatNumbers": list(view.seats),
        "joinedAt": iso(view.joined_at),
        "updatedAt": iso(view.updated_at),
        "offeredAt": iso(view.offered_at),
        "offerExpiresAt": iso(view.offer_expires_at),
        "bookingId": view.booking_id,
        "version": view.version,
    }


def reply(state: TripState, outcome: Outcome, command: Command | None = None) -> bytes:
    body: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "commandId": outcome.command_id,
        "ok": outcome.accepted,
        "code": outcome.code.value if outcome.code else None,
        "message": MESSAGES[outcome.code] if outcome.code else None,
    }
    if outcome.accepted and outcome.booking_id and state.trip:
        body["booking"] = snapshot(state.trip, state.bookings[outcome.booking_id], outcome.version)
    elif outcome.booking_id:
        body["bookingId"] = outcome.booking_id
    if outcome.accepted and outcome.entry_id and state.trip:
        body["entry"] = entry_snapshot(state.trip, state.entries[outcome.entry_id], outcome.entry_version)
    elif outcome.entry_id:
        body["entryId"] = outcome.entry_id
    if outcome.trip_version is not None:
        body["tripVersion"] = outcome.trip_version
    if outcome.accepted and isinstance(command, QueryAvailability):
        body["availability"] = [
            {"fromStopId": leg.from_stop_id, "toStopId": leg.to_stop_id, "free": leg.free, "held": leg.held,
             "sold": leg.sold}
            for leg in availability(state)
        ]
    if outcome.accepted and isinstance(command, QuerySeatMap) and state.trip:
        first, last = state.trip.journey(command.origin_stop_id, command.destination_stop_id)  # type: ignore[misc]
        body["seats"] = [{"seatNumber": number, "free": free}
                         for number, free in enumerate(seat_map(state, first, last), start=1)]
    return orjson.dumps(body)


def transition_json(move: Transition) -> dict[str, Any]:
    return {"from": move.source.value, "to": move.target.value, "reason": move.reason, "actor": move.actor,
            "at": iso(move.at), "commandId": move.command_id}


def lifecycle_events(state: TripState, outcome: Outcome) -> list[tuple[str, str, bytes]]:
    """(topic, key, value) for each event of the outcome, in order; the topic by its
    contract name (app.wire.topics.CONTRACT), which is also the event's type."""
    trip_version = outcome.trip_version or state.trip_version  # a duplicate's is the original's
    return [rendered for event in outcome.events
            if (rendered := render_event(state, event, trip_version)) is not None]


def render_event(state: TripState, event: Event, trip_version: int) -> tuple[str, str, bytes] | None:
    trip = state.trip
    if isinstance(event, RefundRequired):  # a payment may name a booking of a trip never published
        return _refund_required(trip, state, event)
    assert trip is not None
    match event:
        case BookingCreated(booking=booking):
            return _booking_event(trip, CONTRACT.created, booking, 1, booking.transitions[:1])
        case BookingMoved(booking_id=booking_id, moves=moves):
            booking = state.bookings[booking_id]
            version = booking.transitions.index(moves[-1]) + 1
            last = moves[-1]
            topic = CONTRACT.payment_failed if last.source == last.target else CONTRACT.lifecycle_by_status[last.target]
            return _booking_event(trip, topic, booking, version, moves)
        case EntryJoined(entry=entry):
            return _entry_event(trip, CONTRACT.waitlist_joined, entry, 1, entry.transitions[:1])
        case EntryMoved(entry_id=entry_id, moves=moves):
            entry = state.entries[entry_id]
            version = entry.transitions.index(moves[-1]) + 1
            return _entry_event(trip, CONTRACT.waitlist_by_status[moves[-1].target], entry, version, moves)
        case TripPublished(trip=published):
            value = {"v": SCHEMA_VERSION, "eventId": f"{published.key}:{trip_version}",
                     "type": CONTRACT.trip_updated, "version": trip_version,
                     "trip": trip_to_json(published)}
            return CONTRACT.trip_updated, published.key, orjson.dumps(value)
    return None


def _booking_event(trip: Trip, topic: str, booking: Booking, version: int, moves) -> tuple[str, str, bytes]:
    return _moves_event(topic, "booking", booking.booking_id, version, moves, snapshot(trip, booking, version))


def _entry_event(trip: Trip, topic: str, entry: Entry, version: int, moves) -> tuple[str, str, bytes]:
    return _moves_event(topic, "entry", entry.entry_id, version, moves, entry_snapshot(trip, entry, version))


def _moves_event(topic: str, subject: str, subject_id: str, version: int, moves,
                 as_of_version: dict[str, Any]) -> tuple[str, str, bytes]:
    """An event of a booking's or an entry's moves (`subject` names which), keyed by its id,
    with its snapshot as of the version the moves left it at."""
    value = {
        "v": SCHEMA_VERSION,
        "eventId": f"{subject_id}:{version}",
        "type": topic,
        f"{subject}Id": subject_id,
        "version": version,
        "occurredAt": iso(moves[-1].at),
        "transitions": [transition_json(m) for m in moves],
        subject: as_of_version,
    }
    return topic, subject_id, orjson.dumps(value)


def _refund_required(trip: Trip | None, state: TripState, event: RefundRequired) -> tuple[str, str, bytes]:
    booking = state.bookings.get(event.booking_id) if trip else None
    value = {
        "v": SCHEMA_VERSION,
        "eventId": f"{event.booking_id}:refund_required:{event.payment_id}",
        "type": CONTRACT.refund_required,
        "bookingId": event.booking_id,
        "paymentId": event.payment_id,
        "amount": format_minor(event.amount),
        "currency": trip.currency if trip else None,
        "reason": str(event.reason),
        "occurredAt": iso(event.at),
        "version": booking.version if booking else None,
        "booking": snapshot(trip, booking) if trip and booking else None,
    }
    return CONTRACT.refund_required, event.booking_id, orjson.dumps(value)
