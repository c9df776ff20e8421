"""A trip: one route run on one travel date, as published by the route service."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000
# The most seats a trip may have (a coach, a train, a ferry): what the wire models accept.
# TRIP_CAPACITY_MAX may set a lower cap.
MAX_CAPACITY = 1000


class TripStatus(StrEnum):
    ACTIVE = "ACTIVE"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class Stop:
    stop_id: str
    offset_minutes: int  # planned minutes after departure from the first stop


@dataclass(frozen=True, slots=True)
class Trip:
    route_id: str
    travel_date: date
    timezone: str
    departure_time: time  # local time at the first stop
    capacity: int
    currency: str
    stops: tuple[Stop, ...]
    leg_fares: tuple[int, ...]  # minor units; leg i runs from stop i to stop i + 1
    driver_id: str | None = None
    status: TripStatus = TripStatus.ACTIVE

    @property
    def key(self) -> str:
        return trip_key(self.route_id, self.travel_date)

    def stop_index(self, stop_id: str) -> int | None:
        for index, stop in enumerate(self.stops):
            if stop.stop_id == stop_id:
                return index
        return None

    def journey(self, origin_stop_id: str, destination_stop_id: str) -> tuple[int, int] | None:
        """(first leg, last leg) from pickup to drop-off, or None if they are not stops of
        the trip in that order."""
        origin, destination = self.stop_index(origin_stop_id), self.stop_index(destination_stop_id)
        if origin is None or destination is None or origin >= destination:
            return None
        return origin, destination - 1

    def departure_ms(self, stop_index: int) -> int:
        """Epoch ms of departure from a stop: local departure in the route's zone, then
        the stop's offset as elapsed time (so a DST change en route is counted right)."""
        start_ms = local_to_epoch_ms(self.travel_date, self.departure_time, self.timezone)
        return start_ms + self.stops[stop_index].offset_minutes * MS_PER_MINUTE

    def fare_between(self, first_leg: int, last_leg: int) -> int:
        return sum(self.leg_fares[first_leg : last_leg + 1])


@lru_cache(maxsize=4096)
def local_to_epoch_ms(day: date, at: time, timezone: str) -> int:
    """Asked for every booking a command shows (zone rules are slow to apply): cached."""
    local = datetime.combine(day, at, ZoneInfo(timezone))
    return int(local.astimezone(UTC).timestamp() * 1000)


def trip_key(route_id: str, travel_date: date) -> str:
    """The Kafka key of every command for a trip; booking ids embed the same parts."""
    return f"{route_id}:{travel_date.isoformat()}"


def trip_key_parts(key: str) -> tuple[str, str]:
    """A trip key's route id and travel date (ISO), as `trip_key` joined them (a route id
    has no colon)."""
    route_id, _, travel_date = key.partition(":")
    return route_id, travel_date


def whole_hours_before(departure_ms: int, now_ms: int) -> int:
    return (departure_ms - now_ms) // MS_PER_HOUR
