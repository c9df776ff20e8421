"""Trip states in the table, split so that a command writes only what it changed.

Keys, all on the partition that carries the trip's commands:

    <trip key>                 the trip entry: the trip, its leg inventory, counters, its
                               working set (the live bookings' and waiting-list entries'
                               id tokens and versions), its outcome queue, and the commit
                               mark
    <trip key>/b/<booking id>  one booking: creation facts and transitions
    <trip key>/w/<entry id>    one waiting-list entry: creation facts and transitions
    <trip key>/c/<command id>  the remembered outcome of one command
    <trip key>/q/<n>           the n-th remembered outcome of the trip: (when, command id)

A mark is the log offset of the command that wrote an entry. A command that changes the
trip (moves a booking or a waiting-list entry, publishes the trip, or is remembered) is a
commit: it writes each booking and entry it moved, its outcome and queue entry, all
marked with its offset, and the trip entry, marked with it too. Writes are staged for a
batch of commands (`app.tables.staged`): each key is written once per batch, with its
last value, and the trip entries after every other entry, so the trip entry of the
batch's last commit is its commit point.

A crash can cut the batch's writes anywhere: the changelog keeps a prefix of them, and
the worker's local store is a prefix of the changelog (`app.worker.batch`). The
commands of the cut batch are handled again after a restart (their offsets were not
committed); until then, an entry marked after the trip entry reads as it was before the
cut: a booking or waiting-list entry of the working set as its version in the trip
entry, any other booking or entry, and an outcome, as absent. Handling the commands
again writes the same entries, since handling is deterministic. So the table's entries
are a function of the log alone, whatever the batches were
(`tests/processor/test_batch.py` replays one log both ways).

Remembered outcomes are recalled for `Policy.outcome_retention_hours`
(`app.domain.handle`); the ticks that visit a trip (`app.worker.ticks`) delete them
FORGET_GRACE_MS after that, in the order they were written (the queue). The grace keeps
an entry that a command handled again after a crash may still recall: a batch that a
crash cuts holds a few seconds of the log.

Between commands the decoded state stays in memory (an LRU of trips), and is used for
as long as the trip entry in the table is the one it was decoded from or wrote.
Closed bookings and entries and recalled outcomes leave it before the next command.
"""

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeVar

import orjson

from app.domain.booking import Booking
from app.domain.commands import Command
from app.domain.handle import Outcome, bookings_named, entries_named, handle, touched_bookings, touched_entries
from app.domain.ids import booking_id_of, token_of
from app.domain.policy import Policy
from app.domain.state import Remembered, TripState, is_listed, is_live
from app.domain.trip import Trip
from app.domain.waitlist import Entry, EntryStatus
from app.tables.codec import (
    OutcomeQueue,
    decode_booking_entry,
    decode_outcome_entry,
    decode_queue_entry,
    decode_trip_entry,
    decode_waitlist_entry,
    encode_booking_entry,
    encode_outcome_entry,
    encode_queue_entry,
    encode_trip,
    encode_trip_entry,
    encode_waitlist_entry,
)
from app.tables.staged import Staged

FORGET_GRACE_MS = 3_600_000
NO_COMMIT = -1

Item = TypeVar("Item", Booking, Entry)


@dataclass(slots=True)
class Loaded:
    table: Staged
    state: TripState
    mark: int  # the offset of the last commit, NO_COMMIT before the first
    entry: bytes | None  # the trip entry as read or written, to tell if the table moved on
    queue: OutcomeQueue = field(default_factory=OutcomeQueue)
    unwritten: bool = False  # committed since the trip entry was last written
    # Bookings and waiting-list entries the last command loaded or moved: one may have closed.
    visited: set[str] = field(default_factory=set)
    trip_json: tuple[Trip, orjson.Fragment] | None = None

    def committed(self, mark: int) -> bool:
        return mark <= self.mark


def booking_key(trip_key: bytes, booking_id: str) -> bytes:
    return trip_key + b"/b/" + booking_id.encode()


def waitlist_key(trip_key: bytes, entry_id: str) -> bytes:
    return trip_key + b"/w/" + entry_id.encode()


def outcome_key(trip_key: bytes, command_id: str) -> bytes:
    return trip_key + b"/c/" + command_id.encode()


def queue_key(trip_key: bytes, number: int) -> bytes:
    return trip_key + b"/q/" + str(number).encode()


class TripStore:
    def __init__(self, trips_cached: int) -> None:
        self.trips_cached = trips_cached
        self.cache: OrderedDict[bytes, Loaded] = OrderedDict()
        self.unwritten: dict[bytes, Loaded] = {}

    def handle(self, table: Staged, key: bytes, command: Command, now: int, offset: int, policy: Policy,
               fingerprint: str | None = None) -> tuple[TripState, Outcome, int | None]:
        """The command against the trip's state, its effect staged in the table (the trip
        entry at the next `write_trips`). The returned state holds every booking and
        waiting-list entry the outcome mentions; with it, when the trip next needs a
        tick's visit (`next_visit`)."""
        loaded = self.load(table, key)
        undo = checkpoint(loaded.state)
        try:
            prior = self.load_named(loaded, key, command)
            outcome = handle(loaded.state, command, now, policy, fingerprint)
            self.save(loaded, key, command, outcome, prior, offset)
        except BaseException:
            restore(loaded.state, undo)  # what this command half did; the earlier ones stay
            raise
        return loaded.state, outcome, next_visit(loaded, policy)

    def write_trips(self) -> None:
        """Stage the trip entry of every trip committed since the last call: once per
        batch, after the other entries the batch wrote."""
        for key, loaded in self.unwritten.items():
            state = loaded.state
            assert state.trip is not None
            if loaded.trip_json is None or loaded.trip_json[0] is not state.trip:
                loaded.trip_json = (state.trip, encode_trip(state.trip))
            live = {token_of(b.booking_id): b.version for b in state.bookings.values() if is_live(b)}
            listed = {token_of(e.entry_id): e.version for e in state.entries.values() if is_listed(e)}
            loaded.entry = encode_trip_entry(state, loaded.mark, live, loaded.queue, loaded.trip_json[1], listed)
            loaded.table.put(key, loaded.entry)
            loaded.unwritten = False
        self.unwritten.clear()

    def forget(self, tables: Iterable[Staged]) -> None:
        """Drop the trips read from these tables (their partitions went to another worker)."""
        gone = set(map(id, tables))
        for key in [key for key, loaded in self.cache.items() if id(loaded.table) in gone]:
            del self.cache[key]
            self.unwritten.pop(key, None)

    # -- reading ------------------------------------------------------------------------

    def load(self, table: Staged, key: bytes) -> Loaded:
        # A trip committed in this batch is used whatever the cache holds: its trip entry
        # is not in the table yet.
        cached = self.unwritten.get(key) or self.cache.get(key)
        if cached is not None and cached.table is table and (cached.unwritten or cached.entry == table.get(key)):
            self.cache[key] = cached
            self.cache.move_to_end(key)
            keep_working_set(cached)
        else:
            cached = self.decode(table, key, table.get(key))
            self.cache[key] = cached
        while len(self.cache) > self.trips_cached:
            self.cache.popitem(last=False)
        return cached

    def decode(self, table: Staged, key: bytes, entry: bytes | None) -> Loaded:
        if entry is None:
            return Loaded(table, TripState(), NO_COMMIT, None)
        decoded = decode_trip_entry(entry)
        loaded = Loaded(table, decoded.state, decoded.mark, entry, decoded.queue)
        trip = decoded.state.trip
        if trip is not None:
            for booking in working_set(loaded, key, trip, decoded.live, booking_key, decode_booking_entry):
                loaded.state.put(booking)
            for entry in working_set(loaded, key, trip, decoded.listed, waitlist_key, decode_waitlist_entry):
                loaded.state.entries[entry.entry_id] = entry
        return loaded

    def load_named(self, loaded: Loaded, key: bytes, command: Command) -> Remembered | None:
        """What recall and decide may read beyond the live bookings and entries: the
        remembered outcome of the command id, the bookings and entries it touched, the
        booking or entry the command names.
        Returns the remembered outcome, to tell later whether the command replaced it."""
        state = loaded.state
        raw = loaded.table.get(outcome_key(key, command.command_id))
        touched: tuple[str, ...] = ()
        touched_listed: tuple[str, ...] = ()
        remembered = None
        if raw is not None:
            mark, remembered = decode_outcome_entry(raw)
            if loaded.committed(mark):
                state.remembered[command.command_id] = remembered
                touched, touched_listed = remembered.touched, remembered.touched_entries
            else:
                remembered = None
        booking_ids = (*touched, *bookings_named(state.trip, command))
        for booking in read_committed(loaded, key, booking_ids, state.bookings, booking_key, decode_booking_entry):
            state.put(booking)
        if state.joined:  # a trip that never had a waiting list has no entries to read
            entry_ids = (*touched_listed, *entries_named(state.trip, command))
            for entry in read_committed(loaded, key, entry_ids, state.entries, waitlist_key, decode_waitlist_entry):
                state.entries[entry.entry_id] = entry
        return remembered

    # -- writing ------------------------------------------------------------------------

    def save(self, loaded: Loaded, key: bytes, command: Command, outcome: Outcome, prior: Remembered | None,
             offset: int) -> None:
        state = loaded.state
        if state.trip is None or outcome.duplicate:
            return  # nothing was ever published here, or nothing changed
        touched = sorted(touched_bookings(outcome.events))
        listed = sorted(touched_entries(outcome.events))
        remembered = state.remembered.get(command.command_id)
        if remembered is prior:
            remembered = None  # not decided by this command
        if not touched and not listed and remembered is None and outcome.trip_version is None:
            return
        writes = [(booking_key(key, b), encode_booking_entry(offset, state.bookings[b])) for b in touched]
        writes += [(waitlist_key(key, e), encode_waitlist_entry(offset, state.entries[e])) for e in listed]
        if remembered is not None:
            writes.append((outcome_key(key, command.command_id), encode_outcome_entry(offset, remembered)))
            writes.append((queue_key(key, loaded.queue.next), encode_queue_entry(remembered.at, command.command_id)))
        for entry_key, value in writes:
            loaded.table.put(entry_key, value)
        if remembered is not None:
            if loaded.queue.first == loaded.queue.next:
                loaded.queue.first_at = remembered.at
            loaded.queue.next += 1
        loaded.visited.update(touched)
        loaded.visited.update(listed)
        self.committed(loaded, key, offset)

    def committed(self, loaded: Loaded, key: bytes, offset: int) -> None:
        loaded.mark = offset
        loaded.unwritten = True
        self.unwritten[key] = loaded

    # -- forgetting outcomes ------------------------------------------------------------

    def forget_outcomes(self, table: Staged, key: bytes, now: int, offset: int, policy: Policy) -> int | None:
        """Delete the remembered outcomes no command can recall any more (older than the
        retention window and the grace, at `now`), oldest first. Returns the trip's
        `next_visit` after."""
        loaded = self.load(table, key)
        queue = loaded.queue
        horizon = now - policy.outcome_retention_ms - FORGET_GRACE_MS
        if queue.first_at is None or queue.first_at > horizon:
            return next_visit(loaded, policy)
        while queue.first < queue.next:
            raw = table.get(queue_key(key, queue.first))
            if raw is not None:  # deleted already by an attempt a crash cut
                at, command_id = decode_queue_entry(raw)
                if at > horizon:
                    queue.first_at = at
                    break
                self.forget_outcome(table, key, command_id, at)
                table.delete(queue_key(key, queue.first))
            queue.first += 1
        else:
            queue.first_at = None
        self.committed(loaded, key, offset)
        return next_visit(loaded, policy)

    @staticmethod
    def forget_outcome(table: Staged, key: bytes, command_id: str, at: int) -> None:
        raw = table.get(outcome_key(key, command_id))
        if raw is not None and decode_outcome_entry(raw)[1].at == at:  # not decided again since
            table.delete(outcome_key(key, command_id))


def next_visit(loaded: Loaded, policy: Policy) -> int | None:
    """When the trip next needs a tick's visit: its earliest hold's or waiting-list offer's
    expiry, or the moment its oldest remembered outcome may be deleted."""
    times = [loaded.state.holds.earliest(), earliest_offer(loaded.state) if loaded.state.entries else None]
    if loaded.queue.first_at is not None:
        times.append(loaded.queue.first_at + policy.outcome_retention_ms + FORGET_GRACE_MS)
    return min((at for at in times if at is not None), default=None)


def earliest_offer(state: TripState) -> int | None:
    """When the first of the trip's waiting-list offers runs out: an offer holds seats as
    a hold does (the trip's list is bounded: `Policy.waitlist_entries_max`)."""
    offers = [entry.view().offer_expires_at for entry in state.entries.values() if entry.status is EntryStatus.OFFERED]
    return min((at for at in offers if at is not None), default=None)


def keep_working_set(loaded: Loaded) -> None:
    """Drop what the last command loaded or closed: it is in the table if needed again."""
    state = loaded.state
    for item_id in loaded.visited:  # booking and entry ids never coincide
        booking = state.bookings.get(item_id)
        if booking is not None and not is_live(booking):
            state.drop(item_id)
        entry = state.entries.get(item_id)
        if entry is not None and not is_listed(entry):
            del state.entries[item_id]
    loaded.visited.clear()
    state.remembered.clear()


def working_set(loaded: Loaded, key: bytes, trip: Trip, versions: dict[str, int],
                key_of: Callable[[bytes, str], bytes], decode: Callable[[bytes], tuple[int, Item]]) -> Iterator[Item]:
    """The live bookings or waiting-list entries a trip entry lists (id token -> version):
    one written by a commit the trip entry does not have yet, as the version it gives."""
    for token, version in versions.items():
        item_id = booking_id_of(trip.route_id, trip.travel_date, token)
        raw = loaded.table.get(key_of(key, item_id))
        assert raw is not None, f"{key!r}: {item_id} of the working set has no entry"
        mark, item = decode(raw)
        if not loaded.committed(mark):
            item = replace(item, transitions=item.transitions[:version])
        yield item


def read_committed(loaded: Loaded, key: bytes, item_ids: Iterable[str], present: dict[str, Item],
                   key_of: Callable[[bytes, str], bytes],
                   decode: Callable[[bytes], tuple[int, Item]]) -> Iterator[Item]:
    """The bookings or entries named that the state does not hold yet, as stored; one made
    by a commit a crash cut is absent. Each is visited: it may close."""
    for item_id in item_ids:
        if item_id in present:
            continue
        raw = loaded.table.get(key_of(key, item_id))
        if raw is None:
            continue
        mark, item = decode(raw)
        if loaded.committed(mark):
            loaded.visited.add(item_id)
            yield item


def checkpoint(state: TripState) -> tuple:
    """Enough of the state to undo a command that failed halfway (the core changes it in
    place); shallow, as bookings, entries and trips are immutable."""
    return (state.trip, state.trip_version, list(state.legs), dict(state.bookings), state.booked,
            dict(state.holds.expires), dict(state.entries), state.joined)


def restore(state: TripState, undo: tuple) -> None:
    state.trip, state.trip_version, state.legs, bookings, state.booked, expires, entries, state.joined = undo
    state.bookings = bookings
    state.entries = entries
    state.holds.expires = expires
    state.holds.recompute()
    state.counted = None  # derived: counted again from the restored bookings and entries
    state.remembered.clear()


def committed_booking(loaded: Loaded, raw: bytes) -> Booking | None:
    """A booking entry as a reader sees it (tests and tools reading a whole trip)."""
    mark, booking = decode_booking_entry(raw)
    return booking if loaded.committed(mark) else None


def committed_entry(loaded: Loaded, raw: bytes) -> Entry | None:
    """A waiting-list entry as a reader sees it."""
    mark, entry = decode_waitlist_entry(raw)
    return entry if loaded.committed(mark) else None
