"""Trip states in the table, split so that a command writes only what it changed.

Keys, all on the partition that carries the trip's commands:

    <trip key>                 the trip entry: the trip, its leg inventory, counters, the
                               tokens of its live bookings' ids, and the commit mark
    <trip key>/b/<booking id>  one booking: creation facts and transitions
    <trip key>/c/<command id>  the remembered outcome of one command

A command that changes the trip commits it in this order:
1. Write each booking it moved, and its remembered outcome, marked with the commit they
   belong to: (the trip entry's next seq, the command id). A booking entry also records
   its version before that commit.
2. Write the trip entry with that seq and command id. This write is the commit point.

A crash can cut that sequence anywhere. The changelog partition keeps a prefix of the
writes (after a crash the worker rebuilds its tables from it alone: app.agents.worker),
and faust commits the command's offset only after flushing them all, so the command is
handled again after a restart. Until then, an
entry marked ahead of the trip entry reads as it was before the cut: a booking as its
earlier version (or as absent, if the cut commit created it), an outcome as absent.
Handling the command again writes the same entries, since the handling is deterministic.

A rejection changes no booking: its outcome entry alone is written, marked with the
current commit, and is valid at once. A duplicate writes the entries its command wrote
again, byte for byte as the table has them: if the first attempt's changelog records
were lost while the local RocksDB kept them (a clean stop whose last flush failed), this
publishes them again.

Between commands the decoded state stays in memory (an LRU of trips), and is used for
as long as the trip entry in the table is the one it was decoded from or wrote.
Closed bookings and recalled outcomes are dropped from it before the next command.
"""

from collections import OrderedDict
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, replace

from app.domain.booking import Booking
from app.domain.commands import Command
from app.domain.events import BookingCreated, BookingMoved, Event
from app.domain.handle import Outcome, bookings_named, handle, touched_bookings
from app.domain.ids import booking_id_of, token_of
from app.domain.policy import Policy
from app.domain.state import TripState, is_live
from app.tables.codec import (
    Mark,
    decode_booking_entry,
    decode_outcome_entry,
    decode_trip_entry,
    encode_booking_entry,
    encode_outcome_entry,
    encode_trip_entry,
)


@dataclass(slots=True)
class Loaded:
    state: TripState
    seq: int  # the last commit's number
    last: str  # the last commit's command id
    entry: bytes | None  # the trip entry as read or written, to tell if the table moved on

    @property
    def mark(self) -> Mark:
        return self.seq, self.last

    def committed(self, mark: Mark) -> bool:
        seq, command_id = mark
        return seq < self.seq or (seq == self.seq and command_id == self.last)


def booking_key(trip_key: bytes, booking_id: str) -> bytes:
    return trip_key + b"/b/" + booking_id.encode()


def outcome_key(trip_key: bytes, command_id: str) -> bytes:
    return trip_key + b"/c/" + command_id.encode()


class TripStore:
    def __init__(self, table: MutableMapping[bytes, bytes], trips_cached: int) -> None:
        self.table = table
        self.trips_cached = trips_cached
        self.cache: OrderedDict[bytes, Loaded] = OrderedDict()

    def handle(self, key: bytes, command: Command, now: int, policy: Policy,
               fingerprint: str | None = None) -> tuple[TripState, Outcome]:
        """The command against the trip's state, its effect written to the table. The
        returned state holds every booking the outcome mentions."""
        loaded = self.load(key)
        try:
            self.load_named(key, loaded, command)
            outcome = handle(loaded.state, command, now, policy, fingerprint)
            self.save(key, loaded, command, outcome)
        except BaseException:
            self.cache.pop(key, None)  # its state may be half-changed
            raise
        return loaded.state, outcome

    # -- reading ------------------------------------------------------------------------

    def load(self, key: bytes) -> Loaded:
        entry = self.table.get(key)
        cached = self.cache.get(key)
        if cached is not None and cached.entry == entry:
            self.cache.move_to_end(key)
            keep_working_set(cached.state)
            return cached
        loaded = self.decode(key, entry)
        self.cache[key] = loaded
        while len(self.cache) > self.trips_cached:
            self.cache.popitem(last=False)
        return loaded

    def decode(self, key: bytes, entry: bytes | None) -> Loaded:
        if entry is None:
            return Loaded(TripState(), 0, "", None)
        decoded = decode_trip_entry(entry)
        loaded = Loaded(decoded.state, decoded.seq, decoded.last, entry)
        trip = decoded.state.trip
        if trip is not None:
            self.load_bookings(key, loaded, [booking_id_of(trip.route_id, trip.travel_date, t) for t in decoded.live])
        return loaded

    def load_named(self, key: bytes, loaded: Loaded, command: Command) -> None:
        """What recall and decide may read beyond the live bookings: the remembered outcome
        of the command id, the bookings it touched, the booking the command names."""
        state = loaded.state
        raw = self.table.get(outcome_key(key, command.command_id))
        touched: tuple[str, ...] = ()
        if raw is not None:
            mark, remembered = decode_outcome_entry(raw)
            if loaded.committed(mark):
                state.remembered[command.command_id] = remembered
                touched = remembered.touched
        self.load_bookings(key, loaded, (*touched, *bookings_named(state.trip, command)))

    def load_bookings(self, key: bytes, loaded: Loaded, booking_ids: Iterable[str]) -> None:
        for booking_id in booking_ids:
            if booking_id in loaded.state.bookings:
                continue
            raw = self.table.get(booking_key(key, booking_id))
            booking = committed_booking(loaded, raw) if raw is not None else None
            if booking is not None:
                loaded.state.bookings[booking_id] = booking

    # -- writing ------------------------------------------------------------------------

    def save(self, key: bytes, loaded: Loaded, command: Command, outcome: Outcome) -> None:
        state = loaded.state
        if state.trip is None:
            return  # nothing was ever published here: nothing to keep
        touched = touched_bookings(outcome.events)
        remembered = state.remembered.get(command.command_id)
        if outcome.duplicate:
            outcome_keys = [outcome_key(key, command.command_id)] if remembered else []
            return self.republish([*(booking_key(key, b) for b in sorted(touched)), *outcome_keys, key])
        commits = bool(touched) or outcome.trip_version is not None
        mark: Mark = (loaded.seq + 1, command.command_id) if commits else loaded.mark
        for booking_id in sorted(touched):
            booking = state.bookings[booking_id]
            prev = booking.version - moves_of(booking_id, outcome.events)
            self.table[booking_key(key, booking_id)] = encode_booking_entry(mark, prev, booking)
        if remembered is not None:
            self.table[outcome_key(key, command.command_id)] = encode_outcome_entry(mark, remembered)
        if commits:
            loaded.seq, loaded.last = mark
            live = [token_of(b.booking_id) for b in state.bookings.values() if is_live(b)]
            loaded.entry = encode_trip_entry(state, loaded.seq, loaded.last, live)
            self.table[key] = loaded.entry

    def republish(self, keys: list[bytes]) -> None:
        """Write the entries again exactly as they are: the first attempt's changelog
        records may have been lost in a crash while the local RocksDB kept them."""
        for entry_key in keys:
            raw = self.table.get(entry_key)
            if raw is not None:
                self.table[entry_key] = raw


def committed_booking(loaded: Loaded, raw: bytes) -> Booking | None:
    mark, prev, booking = decode_booking_entry(raw)
    if loaded.committed(mark):
        return booking
    if prev == 0:
        return None
    return replace(booking, transitions=booking.transitions[:prev])


def moves_of(booking_id: str, events: tuple[Event, ...]) -> int:
    count = 0
    for event in events:
        if isinstance(event, BookingCreated) and event.booking.booking_id == booking_id:
            count += len(event.booking.transitions)
        elif isinstance(event, BookingMoved) and event.booking_id == booking_id:
            count += len(event.moves)
    return count


def keep_working_set(state: TripState) -> None:
    """Drop what the last command loaded or closed: it is in the table if needed again."""
    for booking_id in [b.booking_id for b in state.bookings.values() if not is_live(b)]:
        del state.bookings[booking_id]
    state.remembered.clear()
