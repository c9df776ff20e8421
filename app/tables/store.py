"""Trip states in the table, split so that a command writes only what it changed.

Keys, all on the partition that carries the trip's commands:

    <trip key>                 the trip entry: the trip, its leg inventory, counters, its
                               working set (the live bookings' id tokens and versions),
                               its outcome queue, and the commit mark
    <trip key>/b/<booking id>  one booking: creation facts and transitions
    <trip key>/c/<command id>  the remembered outcome of one command
    <trip key>/q/<n>           the n-th remembered outcome of the trip: (when, command id)

A mark is the log offset of the command that wrote an entry. A command that changes the
trip (moves a booking, publishes the trip, or is remembered) is a commit: it writes each
booking it moved, its outcome and queue entry, all marked with its offset, and the trip
entry, marked with it too. Writes are staged for a batch of commands
(`app.tables.staged`): each key is written once per batch, with its last value, and the
trip entries after every other entry, so the trip entry of the batch's last commit is
its commit point.

A crash can cut the batch's writes anywhere: the changelog keeps a prefix of them, and
the worker's local store is a prefix of the changelog (`app.agents.batch`). The
commands of the cut batch are handled again after a restart (their offsets were not
committed); until then, an entry marked after the trip entry reads as it was before the
cut: a booking of the working set as its version in the trip entry, any other booking,
and an outcome, as absent. Handling the commands again writes the same entries, since
handling is deterministic. So the table's entries are a function of the log alone,
whatever the batches were (`tests/agents/test_batch.py` replays one log both ways).

Remembered outcomes are recalled for `Policy.outcome_retention_hours`
(`app.domain.handle`); the ticks that visit a trip (`app.agents.expiry`) delete them
FORGET_GRACE_MS after that, in the order they were written (the queue). The grace keeps
an entry that a command handled again after a crash may still recall: a batch that a
crash cuts holds a few seconds of the log.

Between commands the decoded state stays in memory (an LRU of trips), and is used for
as long as the trip entry in the table is the one it was decoded from or wrote.
Closed bookings and recalled outcomes leave it before the next command.
"""

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import orjson

from app.domain.booking import Booking
from app.domain.commands import Command
from app.domain.handle import Outcome, bookings_named, handle, touched_bookings
from app.domain.ids import booking_id_of, token_of
from app.domain.policy import Policy
from app.domain.state import Remembered, TripState, is_live
from app.domain.trip import Trip
from app.tables.codec import (
    OutcomeQueue,
    decode_booking_entry,
    decode_outcome_entry,
    decode_queue_entry,
    decode_trip_entry,
    encode_booking_entry,
    encode_outcome_entry,
    encode_queue_entry,
    encode_trip,
    encode_trip_entry,
)
from app.tables.staged import Staged

FORGET_GRACE_MS = 3_600_000
NO_COMMIT = -1


@dataclass(slots=True)
class Loaded:
    table: Staged
    state: TripState
    mark: int  # the offset of the last commit, NO_COMMIT before the first
    entry: bytes | None  # the trip entry as read or written, to tell if the table moved on
    queue: OutcomeQueue = field(default_factory=OutcomeQueue)
    unwritten: bool = False  # committed since the trip entry was last written
    # Bookings the last command loaded or moved: one of them may have closed.
    visited: set[str] = field(default_factory=set)
    trip_json: tuple[Trip, orjson.Fragment] | None = None

    def committed(self, mark: int) -> bool:
        return mark <= self.mark


def booking_key(trip_key: bytes, booking_id: str) -> bytes:
    return trip_key + b"/b/" + booking_id.encode()


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
        entry at the next `write_trips`). The returned state holds every booking the
        outcome mentions; with it, when the trip next needs a tick's visit (`next_visit`)."""
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
            loaded.entry = encode_trip_entry(state, loaded.mark, live, loaded.queue, loaded.trip_json[1])
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
            for token, version in decoded.live.items():
                booking_id = booking_id_of(trip.route_id, trip.travel_date, token)
                raw = table.get(booking_key(key, booking_id))
                assert raw is not None, f"{key!r}: booking {booking_id} of the working set has no entry"
                mark, booking = decode_booking_entry(raw)
                if not loaded.committed(mark):
                    booking = replace(booking, transitions=booking.transitions[:version])
                loaded.state.put(booking)
        return loaded

    def load_named(self, loaded: Loaded, key: bytes, command: Command) -> Remembered | None:
        """What recall and decide may read beyond the live bookings: the remembered outcome
        of the command id, the bookings it touched, the booking the command names.
        Returns the remembered outcome, to tell later whether the command replaced it."""
        state = loaded.state
        raw = loaded.table.get(outcome_key(key, command.command_id))
        touched: tuple[str, ...] = ()
        remembered = None
        if raw is not None:
            mark, remembered = decode_outcome_entry(raw)
            if loaded.committed(mark):
                state.remembered[command.command_id] = remembered
                touched = remembered.touched
            else:
                remembered = None
        for booking_id in (*touched, *bookings_named(state.trip, command)):
            if booking_id in state.bookings:
                continue
            raw = loaded.table.get(booking_key(key, booking_id))
            if raw is None:
                continue
            mark, booking = decode_booking_entry(raw)
            if loaded.committed(mark):  # otherwise made by a commit a crash cut: absent
                state.put(booking)
                loaded.visited.add(booking_id)
        return remembered

    # -- writing ------------------------------------------------------------------------

    def save(self, loaded: Loaded, key: bytes, command: Command, outcome: Outcome, prior: Remembered | None,
             offset: int) -> None:
        state = loaded.state
        if state.trip is None or outcome.duplicate:
            return  # nothing was ever published here, or nothing changed
        touched = sorted(touched_bookings(outcome.events))
        remembered = state.remembered.get(command.command_id)
        if remembered is prior:
            remembered = None  # not decided by this command
        if not touched and remembered is None and outcome.trip_version is None:
            return
        writes = [(booking_key(key, b), encode_booking_entry(offset, state.bookings[b])) for b in touched]
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
    """When the trip next needs a tick's visit: its earliest hold's expiry, or the moment
    its oldest remembered outcome may be deleted."""
    times = [loaded.state.holds.earliest()]
    if loaded.queue.first_at is not None:
        times.append(loaded.queue.first_at + policy.outcome_retention_ms + FORGET_GRACE_MS)
    return min((at for at in times if at is not None), default=None)


def keep_working_set(loaded: Loaded) -> None:
    """Drop what the last command loaded or closed: it is in the table if needed again."""
    state = loaded.state
    for booking_id in loaded.visited:
        booking = state.bookings.get(booking_id)
        if booking is not None and not is_live(booking):
            state.drop(booking_id)
    loaded.visited.clear()
    state.remembered.clear()


def checkpoint(state: TripState) -> tuple:
    """Enough of the state to undo a command that failed halfway (the core changes it in
    place); shallow, as bookings and trips are immutable."""
    return (state.trip, state.trip_version, list(state.legs), dict(state.bookings), state.booked,
            dict(state.holds.expires))


def restore(state: TripState, undo: tuple) -> None:
    state.trip, state.trip_version, state.legs, bookings, state.booked, expires = undo
    state.bookings = bookings
    state.holds.expires = expires
    state.holds.recompute()
    state.remembered.clear()


def committed_booking(loaded: Loaded, raw: bytes) -> Booking | None:
    """A booking entry as a reader sees it (tests and tools reading a whole trip)."""
    mark, booking = decode_booking_entry(raw)
    return booking if loaded.committed(mark) else None
