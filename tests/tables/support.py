"""The trip store over a dict as the worker drives it (a batch of commands, then the
batch's writes), and a whole trip read back the way a fresh worker would, plus every
booking, waiting-list and outcome entry (the worker itself loads closed ones only when
asked)."""

from collections.abc import Mapping

from app.domain.ids import booking_id_of
from app.domain.policy import Policy
from app.domain.state import TripState
from app.tables.codec import decode_outcome_entry, decode_trip_entry
from app.tables.staged import Staged, apply
from app.tables.store import TripStore, committed_booking, committed_entry


class StoreOverDict:
    """A trip store whose table is `table`. Every write of every flush is recorded in
    order, as the changelog would hold them."""

    def __init__(self, table: dict[bytes, bytes] | None = None, trips_cached: int = 10) -> None:
        self.table: dict[bytes, bytes] = {} if table is None else table
        self.staged = Staged(self.table)
        self.store = TripStore(trips_cached)
        self.writes: list[tuple[bytes, bytes | None]] = []

    def handle(self, key: bytes, command, now: int, offset: int, policy: Policy, fingerprint: str | None = None):
        state, outcome, _ = self.store.handle(self.staged, key, command, now, offset, policy, fingerprint)
        return state, outcome

    def flush(self) -> list[bytes]:
        """Ends a batch; the keys it wrote, in order."""
        self.store.write_trips()
        writes = self.staged.take()
        self.writes += writes.items()
        apply(writes, self.table)
        return list(writes)


def stored_state(table: Mapping[bytes, bytes], key: bytes) -> TripState:
    loaded = TripStore(0).decode(Staged(dict(table)), key, table.get(key))
    state = loaded.state
    for entry_key, raw in sorted(table.items()):
        if entry_key.startswith(key + b"/b/") and (booking := committed_booking(loaded, raw)) is not None:
            if booking.booking_id not in state.bookings:
                state.put(booking)
        elif entry_key.startswith(key + b"/w/") and (entry := committed_entry(loaded, raw)) is not None:
            if entry.entry_id not in state.entries:
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
