"""Requests as the gateway's callers send them, and the worker's replies as the stand-in
bus gives them back (accepted with the snapshot a worker would send, or refused)."""

import uuid
from collections.abc import Callable
from typing import Any


TRIP = {
    "timezone": "Africa/Lagos",
    "departureTime": "08:00:00",
    "capacity": 4,
    "currency": "NGN",
    "stops": [{"stopId": "A", "offsetMinutes": 0}, {"stopId": "B", "offsetMinutes": 30},
              {"stopId": "C", "offsetMinutes": 60}],
    "legFares": ["1500.00", 1000],
    "driverId": "driver-1",
}


BOOKING_REQUEST = {"routeId": "R1", "travelDate": "2030-01-15", "originStopId": "A",
                   "destinationStopId": "C", "seatsBooked": 2}


def booking_snapshot(command: dict[str, Any], booking_id: str = "R1.20300115.ABCDEFGHIJKLMNOP") -> dict[str, Any]:
    """The booking body a worker would reply with for this create_booking command."""
    return {
        "id": booking_id, "bookingReference": "BK20300115ABCDEF", "riderId": command["actor"]["userId"],
        "driverId": "driver-1", "routeId": command["routeId"], "originStopId": command["originStopId"],
        "destinationStopId": command["destinationStopId"], "travelDate": command["travelDate"],
        "departureTime": "08:00:00", "departureAt": "2030-01-15T07:00:00.000Z",
        "seatsBooked": command["seatsBooked"], "seatNumbers": list(range(1, command["seatsBooked"] + 1)),
        "pricePerSeat": "2500.00", "fare": "5000.00", "platformFee": "250.00", "totalPrice": "5250.00",
        "currency": "NGN", "status": "HELD", "paymentId": None, "paymentStatus": None,
        "cancellationReason": None, "cancelledAt": None, "refundAmount": "0.00", "refundStatus": None,
        "bookingSource": command["source"], "createdAt": "2030-01-01T10:00:00.000Z",
        "updatedAt": "2030-01-01T10:00:00.000Z", "expiresAt": "2030-01-01T10:10:00.000Z",
        "confirmedAt": None, "version": 1,
    }


# The status a booking has after each accepted booking command.
STATUS_AFTER = {"initiate_payment": "PAYMENT_INITIATED", "payment_succeeded": "CONFIRMED", "payment_failed": "HELD",
                "cancel_booking": "CANCELLED", "check_in": "CHECKED_IN", "complete": "COMPLETED",
                "refund_done": "REFUNDED"}


STORED_REQUEST = {"actor": {"userId": "rider-1"}, "routeId": "R1", "originStopId": "A", "destinationStopId": "C",
                  "travelDate": "2030-01-15", "seatsBooked": 1, "source": "API"}


ENTRY_ID = "R1.20300115.QRSTUVWXYZ234567"


# The status an entry has after each accepted command on it.
ENTRY_STATUS_AFTER = {"join_waitlist": "WAITING", "leave_waitlist": "LEFT", "accept_offer": "ACCEPTED"}


def entry_snapshot(command: dict[str, Any], entry_id: str = ENTRY_ID) -> dict[str, Any]:
    """The entry body a worker would reply with for this command on a waiting list."""
    status = ENTRY_STATUS_AFTER[command["type"]]
    return {
        "id": command.get("entryId", entry_id), "riderId": command["actor"]["userId"], "routeId": "R1",
        "travelDate": "2030-01-15", "originStopId": command.get("originStopId", "A"),
        "destinationStopId": command.get("destinationStopId", "C"), "seatsBooked": command.get("seatsBooked", 1),
        "joinOrder": 1, "position": 1 if status == "WAITING" else None, "status": status,
        "seatNumbers": [] if status == "WAITING" else [3], "joinedAt": "2030-01-01T10:00:00.000Z",
        "updatedAt": "2030-01-01T10:05:00.000Z", "offeredAt": None if status == "WAITING" else "2030-01-01T10:03:00.000Z",
        "offerExpiresAt": None if status == "WAITING" else "2030-01-01T10:18:00.000Z",
        "bookingId": "R1.20300115.ABCDEFGHIJKLMNOP" if status == "ACCEPTED" else None,
        "version": {"WAITING": 1, "LEFT": 2, "ACCEPTED": 3}[status],
    }


def accepted(key: str, command: dict[str, Any]) -> dict[str, Any]:
    """A worker-like successful reply for the command."""
    reply: dict[str, Any] = {"v": 1, "commandId": command["commandId"], "ok": True, "code": None, "message": None}
    if command["type"] in ENTRY_STATUS_AFTER:
        reply["entry"] = entry_snapshot(command)
    if command["type"] == "accept_offer":
        reply["booking"] = {**booking_snapshot(STORED_REQUEST), "seatNumbers": [3]}
    elif command["type"] == "query_seat_map":
        reply["seats"] = [{"seatNumber": n, "free": n != 2} for n in range(1, 5)]
    elif command["type"] == "create_booking":
        reply["booking"] = booking_snapshot(command)
    elif command["type"] in STATUS_AFTER:
        reply["booking"] = {**booking_snapshot(STORED_REQUEST, command["bookingId"]),
                            "status": STATUS_AFTER[command["type"]], "version": 2}
    elif command["type"] == "query_availability":
        reply["availability"] = [{"fromStopId": "A", "toStopId": "B", "free": 3, "held": 1, "sold": 0},
                                 {"fromStopId": "B", "toStopId": "C", "free": 4, "held": 0, "sold": 0}]
    if command["type"] in ("publish_trip", "cancel_trip"):
        reply["tripVersion"] = 1
    return reply


def rejected(code: str) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    def answer(_key: str, command: dict[str, Any]) -> dict[str, Any]:
        return {"v": 1, "commandId": command["commandId"], "ok": False, "code": code, "message": f"{code}!"}
    return answer


def new_key() -> str:
    """An Idempotency-Key no other test uses (the store lives as long as the session's database)."""
    return f"key-{uuid.uuid4()}"
