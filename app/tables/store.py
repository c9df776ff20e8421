"""Trip states in the table, split so that a command writes only what it changed.

Keys, all on the partition that carries the trip's commands:

    <trip key>                 the trip entry: the trip, its leg inventory, counters, the
                               tokens of its live bookings' and waiting-list entries' ids,
                               and the commit mark
    <trip key>/b/<booking id>  one booking: creation facts and transitions
    <trip key>/w/<entry id>    one waiting-list entry: creation facts and transitions
    <trip key>/c/<command id>  the remembered outcome of one command

A command that changes the trip commits it in this order:
1. Write each booking and waiting-list entry it moved, and its remembered outcome, marked
   with the commit they belong to: (the trip entry's next seq, the command id). A booking
   or waiting-list entry also records its version before that commit.
2. Write the trip entry with that seq and command id. This write is the commit point.

A crash can cut that sequence anywhere. The changelog partition keeps a prefix of the
writes (after a crash the worker rebuilds its tables from it alone: app.agents.worker),
and faust commits the command's offset only after flushing them all, so the command is
handled again after a restart. Until then, an
entry marked ahead of the trip entry reads as it was before the cut: a booking or a
waiting-list entry as its earlier version (or as absent, if the cut commit created it),
an outcome as absent.
Handling the command again writes the same entries, since the handling is deterministic.

A rejection changes no booking: its outcome entry alone is written, marked with the
current commit, and is valid at once. A duplicate writes the entries its command wrote
again, byte for byte as the table has them: if the first attempt's changelog records
were lost while the local RocksDB kept them (a clean stop whose last flush failed), this
publishes them again.

Between commands the decoded state stays in memory (an LRU of trips), and is used for
as long as the trip entry in the table is the one it was decoded from or wrote.
Closed bookings and entries and recalled outcomes are dropped from it before the next
command.
"""

from collections import OrderedDict
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, replace

from collections.abc import Callable
from typing import TypeVar

from app.domain.booking import Booking
from app.domain.commands import Command
from app.domain.events import BookingCreated, BookingMoved, EntryJoined, EntryMoved, Event
from app.domain.handle import Outcome, bookings_named, entries_named, handle, touched_bookings, touched_entries
from app.domain.ids import booking_id_of, token_of
from app.domain.policy import Policy
from app.domain.state import TripState, is_listed, is_live
from app.domain.waitlist import Entry
from app.tables.codec import (
    Mark,
    decode_booking_entry,
    decode_outcome_entry,
    decode_trip_entry,
    decode_waitlist_entry,
    encode_booking_entry,
    encode_outcome_entry,
    encode_trip_entry,
    encode_waitlist_entry,
)

Item = TypeVar("Item", Booking, Entry)


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


def waitlist_key(trip_key: bytes, entry_id: str) -> bytes:
    return trip_key + b"/w/" + entry_id.encode()


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
            self.load_entries(key, loaded, [booking_id_of(trip.route_id, trip.travel_date, t) for t in decoded.listed])
        return loaded

    def load_named(self, key: bytes, loaded: Loaded, command: Command) -> None:
        """What recall and decide may read beyond the live bookings: the remembered outcome
        of the command id, the bookings it touched, the booking the command names."""
        state = loaded.state
        raw = self.table.get(outcome_key(key, command.command_id))
        touched: tuple[str, ...] = ()
        touched_listed: tuple[str, ...] = ()
        if raw is not None:
            mark, remembered = decode_outcome_entry(raw)
            if loaded.committed(mark):
                state.remembered[command.command_id] = remembered
                touched, touched_listed = remembered.touched, remembered.touched_entries
        self.load_bookings(key, loaded, (*touched, *bookings_named(state.trip, command)))
        self.load_entries(key, loaded, (*touched_listed, *entries_named(state.trip, command)))

    def load_bookings(self, key: bytes, loaded: Loaded, booking_ids: Iterable[str]) -> None:
        self.load_items(loaded.state.bookings, booking_ids, lambda i: booking_key(key, i),
                        lambda raw: committed_booking(loaded, raw))

    def load_entries(self, key: bytes, loaded: Loaded, entry_ids: Iterable[str]) -> None:
        self.load_items(loaded.state.entries, entry_ids, lambda i: waitlist_key(key, i),
                        lambda raw: committed_entry(loaded, raw))

    def load_items(self, into: dict[str, Item], ids: Iterable[str], key_of: Callable[[str], bytes],
                   committed: Callable[[bytes], Item | None]) -> None:
        for item_id in ids:
            if item_id in into:
                continue
            raw = self.table.get(key_of(item_id))
            item = committed(raw) if raw is not None else None
            if item is not None:
                into[item_id] = item

    # -- writing ------------------------------------------------------------------------

    def save(self, key: bytes, loaded: Loaded, command: Command, outcome: Outcome) -> None:
        state = loaded.state
        if state.trip is None:
            return  # nothing was ever published here: nothing to keep
        touched = touched_bookings(outcome.events)
        listed = touched_entries(outcome.events)
        remembered = state.remembered.get(command.command_id)
        if outcome.duplicate:
            outcome_keys = [outcome_key(key, command.command_id)] if remembered else []
            return self.republish([*(booking_key(key, b) for b in sorted(touched)),
                                   *(waitlist_key(key, e) for e in sorted(listed)), *outcome_keys, key])
        commits = bool(touched or listed) or outcome.trip_version is not None
        mark: Mark = (loaded.seq + 1, command.command_id) if commits else loaded.mark
        for booking_id in sorted(touched):
            booking = state.bookings[booking_id]
            prev = booking.version - moves_of(booking_id, outcome.events)
            self.table[booking_key(key, booking_id)] = encode_booking_entry(mark, prev, booking)
        for entry_id in sorted(listed):
            entry = state.entries[entry_id]
            prev = entry.version - moves_of(entry_id, outcome.events)
            self.table[waitlist_key(key, entry_id)] = encode_waitlist_entry(mark, prev, entry)
        if remembered is not None:
            self.table[outcome_key(key, command.command_id)] = encode_outcome_entry(mark, remembered)
        if commits:
            loaded.seq, loaded.last = mark
            live = [token_of(b.booking_id) for b in state.bookings.values() if is_live(b)]
            waiting = [token_of(e.entry_id) for e in state.entries.values() if is_listed(e)]
            loaded.entry = encode_trip_entry(state, loaded.seq, loaded.last, live, waiting)
            self.table[key] = loaded.entry

    def republish(self, keys: list[bytes]) -> None:
        """Write the entries again exactly as they are: the first attempt's changelog
        records may have been lost in a crash while the local RocksDB kept them."""
        for entry_key in keys:
            raw = self.table.get(entry_key)
            if raw is not None:
                self.table[entry_key] = raw


def committed_booking(loaded: Loaded, raw: bytes) -> Booking | None:
    return as_committed(loaded, *decode_booking_entry(raw))


def committed_entry(loaded: Loaded, raw: bytes) -> Entry | None:
    return as_committed(loaded, *decode_waitlist_entry(raw))


def as_committed(loaded: Loaded, mark: Mark, prev: int, item: Item) -> Item | None:
    """The item as the last commit left it: as written, or as it was before a commit the
    trip entry does not have yet (absent if that commit created it)."""
    if loaded.committed(mark):
        return item
    if prev == 0:
        return None
    return replace(item, transitions=item.transitions[:prev])


def moves_of(item_id: str, events: tuple[Event, ...]) -> int:
    """The transitions the events gave the booking or waiting-list entry `item_id`."""
    count = 0
    for event in events:
        match event:
            case BookingCreated(booking=booking) if booking.booking_id == item_id:
                count += len(booking.transitions)
            case EntryJoined(entry=entry) if entry.entry_id == item_id:
                count += len(entry.transitions)
            case BookingMoved(booking_id=moved, moves=moves) | EntryMoved(entry_id=moved, moves=moves) \
                    if moved == item_id:
                count += len(moves)
    return count


def keep_working_set(state: TripState) -> None:
    """Drop what the last command loaded or closed: it is in the table if needed again."""
    for booking_id in [b.booking_id for b in state.bookings.values() if not is_live(b)]:
        del state.bookings[booking_id]
    for entry_id in [e.entry_id for e in state.entries.values() if not is_listed(e)]:
        del state.entries[entry_id]
    state.remembered.clear()
