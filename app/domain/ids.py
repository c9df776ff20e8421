"""Identities derived from the command, so a replay of the log yields the same ones.

A booking id embeds its trip (`<routeId>.<YYYYMMDD>.<token>`): any gateway can route a
later command on the booking to the partition that owns it without a database lookup.
A waiting-list entry id has the same shape (its token from another digest), for the
same reason.
"""

import base64
import hashlib
from datetime import date
from functools import lru_cache

from app.domain.trip import trip_key

_SEPARATOR = "."
_TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")  # base32, as `_digest` writes it


@lru_cache(maxsize=4096)
def _digest(route_id: str, travel_date: date, command_id: str) -> str:
    """The 22 characters ids and references use; a command asks for them several times."""
    raw = hashlib.sha256(f"{trip_key(route_id, travel_date)}|{command_id}".encode()).digest()
    return base64.b32encode(raw[:15]).decode()[:22]  # 15 bytes make 24 characters, as the whole digest begins


def booking_id_for(route_id: str, travel_date: date, command_id: str) -> str:
    return booking_id_of(route_id, travel_date, _digest(route_id, travel_date, command_id)[:16])


def entry_id_for(route_id: str, travel_date: date, command_id: str) -> str:
    return booking_id_of(route_id, travel_date, _digest(route_id, travel_date, "waitlist|" + command_id)[:16])


def booking_id_of(route_id: str, travel_date: date, token: str) -> str:
    return _SEPARATOR.join((route_id, _compact(travel_date), token))


@lru_cache(maxsize=1024)
def _compact(day: date) -> str:
    return day.strftime("%Y%m%d")


def token_of(booking_id: str) -> str:
    """The part that tells a trip's bookings apart (the rest is the trip)."""
    return booking_id.rsplit(_SEPARATOR, 1)[1]


def reference_for(route_id: str, travel_date: date, command_id: str) -> str:
    return "BK" + _compact(travel_date) + _digest(route_id, travel_date, command_id)[16:22]


def trip_of_booking(booking_id: str) -> tuple[str, date] | None:
    """The (route id, travel date) a booking id (or a waiting-list entry id) names, or
    None if it is not one of ours."""
    parts = booking_id.rsplit(_SEPARATOR, 2)
    if len(parts) != 3 or not parts[0] or len(parts[2]) != 16 or not _TOKEN_ALPHABET.issuperset(parts[2]):
        return None
    if not (len(parts[1]) == 8 and parts[1].isascii() and parts[1].isdigit()):
        return None
    try:
        travel = date(int(parts[1][:4]), int(parts[1][4:6]), int(parts[1][6:8]))
    except ValueError:
        return None
    return parts[0], travel
