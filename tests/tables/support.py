"""Reading a whole trip back from a table, the way a fresh worker would, plus every
booking, waiting-list and outcome entry (the worker itself loads closed ones only when
asked)."""

from collections.abc import Mapping

from app.domain.ids import booking_id_of
from app.domain.state import TripState
from app.tables.codec import decode_outcome_entry, decode_trip_entry
from app.tables.store import TripStore, committed_booking, committed_entry


def stored_state(table: Mapping[bytes, bytes], key: bytes) -> TripState:
    loaded = TripStore(dict(table), trips_cached=0).decode(key, table.get(key))
    state = loaded.state
    for entry_key, raw in sorted(table.items()):
        if entry_key.startswith(key + b"/b/") and (booking := committed_booking(loaded, raw)) is not None:
            state.bookings[booking.booking_id] = booking
        elif entry_key.startswith(key + b"/w/") and (entry := committed_entry(loaded, raw)) is not None:
            state.entries[entry.entry_id] = entry
        elif entry_key.startswith(key + b"/c/"):
            mark, remembered = decode_outcome_entry(raw)
            if loaded.committed(mark):
                state.remembered[entry_key[len(key) + 3:].decode()] = remembered
    return state


def live_ids(table: Mapping[bytes, bytes], key: bytes) -> list[str]:
    trip = decode_trip_entry(table[key])
    assert trip.state.trip is not None
    return [booking_id_of(trip.state.trip.route_id, trip.state.trip.travel_date, t) for t in trip.live]
