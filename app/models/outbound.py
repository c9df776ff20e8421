"""What the processor writes: replies, lifecycle events and the booking snapshot they carry.

Rendering is a pure function of the outcome and the state, so a duplicate command (whose
outcome is rebuilt from the state) yields byte-identical replies and events.
"""

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from app.domain.booking import Booking, Transition
from app.domain.events import BookingCreated, BookingMoved, Event, RefundRequired, TripPublished
from app.domain.handle import Outcome
from app.domain.money import format_minor
from app.domain.rejections import MESSAGES
from app.domain.state import TripState, availability
from app.domain.trip import Trip
from app.models import topics
from app.models.commands import SCHEMA_VERSION
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
    """The booking body of the HTTP contract (DESIGN.md §8), as of `version`. The same
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


def reply(state: TripState, outcome: Outcome, query: bool = False) -> bytes:
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
    if outcome.trip_version is not None:
        body["tripVersion"] = outcome.trip_version
    if query and outcome.accepted:
        body["availability"] = [
            {"fromStopId": leg.from_stop_id, "toStopId": leg.to_stop_id, "free": leg.free, "held": leg.held,
             "sold": leg.sold}
            for leg in availability(state)
        ]
    return orjson.dumps(body)


def transition_json(move: Transition) -> dict[str, Any]:
    return {"from": move.source.value, "to": move.target.value, "reason": move.reason, "actor": move.actor,
            "at": iso(move.at), "commandId": move.command_id}


def lifecycle_events(state: TripState, outcome: Outcome) -> list[tuple[str, str, bytes]]:
    """(topic, key, value) for each event of the outcome, in order."""
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
            return _booking_event(trip, topics.CREATED, booking, 1, booking.transitions[:1])
        case BookingMoved(booking_id=booking_id, moves=moves):
            booking = state.bookings[booking_id]
            version = booking.transitions.index(moves[-1]) + 1
            last = moves[-1]
            topic = topics.PAYMENT_FAILED if last.source == last.target else topics.LIFECYCLE_BY_STATUS[last.target]
            return _booking_event(trip, topic, booking, version, moves)
        case TripPublished(trip=published):
            value = {"v": SCHEMA_VERSION, "eventId": f"{published.key}:{trip_version}",
                     "type": topics.event_type(topics.TRIP_UPDATED), "version": trip_version,
                     "trip": trip_to_json(published)}
            return topics.TRIP_UPDATED, published.key, orjson.dumps(value)
    return None


def _booking_event(trip: Trip, topic: str, booking: Booking, version: int, moves) -> tuple[str, str, bytes]:
    value = {
        "v": SCHEMA_VERSION,
        "eventId": f"{booking.booking_id}:{version}",
        "type": topics.event_type(topic),
        "bookingId": booking.booking_id,
        "version": version,
        "occurredAt": iso(moves[-1].at),
        "transitions": [transition_json(m) for m in moves],
        "booking": snapshot(trip, booking, version),
    }
    return topic, booking.booking_id, orjson.dumps(value)


def _refund_required(trip: Trip | None, state: TripState, event: RefundRequired) -> tuple[str, str, bytes]:
    booking = state.bookings.get(event.booking_id) if trip else None
    value = {
        "v": SCHEMA_VERSION,
        "eventId": f"{event.booking_id}:refund_required:{event.payment_id}",
        "type": topics.event_type(topics.REFUND_REQUIRED),
        "bookingId": event.booking_id,
        "paymentId": event.payment_id,
        "amount": format_minor(event.amount),
        "currency": trip.currency if trip else None,
        "reason": str(event.reason),
        "occurredAt": iso(event.at),
        "version": booking.version if booking else None,
        "booking": snapshot(trip, booking) if trip and booking else None,
    }
    return topics.REFUND_REQUIRED, event.booking_id, orjson.dumps(value)
