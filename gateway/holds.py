"""Seats a rider holds unpaid across all trips, as one gateway process sees them.

The trip's owner limits the seats one rider holds on that trip, exactly
(HOLD_LIMIT_SEATS_PER_TRIP). Across trips no single writer sees every hold, so each
gateway process counts the holds it saw created, and forgets one when a reply through
it shows the booking no longer held (paid, cancelled, expired) or when its hold is due.
A create over HOLD_LIMIT_SEATS_PER_RIDER is refused before it is sent. Like the rate
limit this is per process: with N gateway processes a rider may hold up to N times it.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.domain.booking import HOLDING

# Riders who never come back are swept out now and then, so the ledger stays as small as
# the holds that are live.
SWEEP_EVERY_NOTES = 1000


@dataclass(frozen=True, slots=True)
class Hold:
    seats: int
    until: float  # epoch seconds: the hold is due then, paid or not


class HoldLedger:
    def __init__(self, limit_seats: int, clock: Callable[[], float] = time.time) -> None:
        self.limit_seats = limit_seats
        self.clock = clock
        self._holds: dict[str, dict[str, Hold]] = {}  # rider id -> booking id -> hold
        self._notes = 0

    def allows(self, rider_id: str, seats: int, booking_id: str) -> bool:
        """Whether the rider may hold `seats` more with the booking `booking_id`. A booking
        already counted is a retry of the same request: it is let through to its reply."""
        holds = self._live_holds(rider_id)
        if booking_id in holds:
            return True
        return sum(hold.seats for hold in holds.values()) + seats <= self.limit_seats

    def note(self, booking: dict[str, Any]) -> None:
        """A booking as a reply shows it (the events' snapshot)."""
        self._notes += 1
        if self._notes % SWEEP_EVERY_NOTES == 0:
            for rider in list(self._holds):
                self._live_holds(rider)
        rider_id, booking_id = booking["riderId"], booking["id"]
        if booking["status"] in HOLDING and booking.get("expiresAt"):
            until = datetime.fromisoformat(booking["expiresAt"]).timestamp()
            self._holds.setdefault(rider_id, {})[booking_id] = Hold(booking["seatsBooked"], until)
            return
        holds = self._holds.get(rider_id)
        if holds is not None:
            holds.pop(booking_id, None)
            if not holds:
                del self._holds[rider_id]

    def _live_holds(self, rider_id: str) -> dict[str, Hold]:
        holds = self._holds.get(rider_id)
        if holds is None:
            return {}
        now = self.clock()
        for booking_id in [b for b, hold in holds.items() if hold.until <= now]:
            del holds[booking_id]
        if not holds:
            del self._holds[rider_id]
        return holds
