"""Log-driven expiry of holds and waiting-list offers: clock ticks in the command log and
each partition's index of trips with holds or offers due.

The leader worker writes a tick into every partition of the command topic every
TICK_INTERVAL_SECONDS (`tick_value`). The owner of a partition meets the tick in order
with the commands: at the tick's record time (broker-stamped), each trip of the partition
with a hold due gets an `expire_holds` command through the ordinary `process_command`
path. So expiries are ordered with the other commands, and a replay of the log expires
the same holds at the same records.

Which trips to visit comes from the partition's hold-due index: one table entry per
partition mapping trip key -> a time at or before the trip's earliest live hold or offer
expires (an offer holds seats just as a booking's hold does, and ends the same way).
It may err early (a hold extended by a payment initiation, or resolved meanwhile, keeps
its old time until the visit corrects it), never late, so every due hold is found. Being
a table entry written in the partition's stream, it has a changelog: it survives restarts
and moves with the partition.

A redelivered tick (a crash before its offset was committed) revisits exactly the trips
it visited the first time, whose `expire_holds` are then duplicates that re-emit their
expiries: a crash can repeat an expiry event, never lose it.
"""

import uuid
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field

import orjson
from pydantic import ValidationError

from app.agents.processor import (
    Handled,
    Record,
    Send,
    dead_letter,
    describe,
    process_command,
    rejection_code,
)
from app.domain.booking import HOLDING
from app.domain.commands import Role
from app.domain.events import BookingCreated, EntryMoved, Event
from app.domain.policy import Policy
from app.domain.state import TripState
from app.domain.waitlist import EntryStatus
from app.models import topics
from app.models.commands import SCHEMA_VERSION, TICK
from app.tables.store import TripStore

# Ticks that visited trips, remembered per partition so a redelivered one can revisit the
# same trips. Redelivery reaches back at most one commit interval, a few visiting ticks.
RECENT_TICKS = 16
SYSTEM_ACTOR = {"userId": "system", "role": Role.SERVICE.value}


@dataclass(slots=True)
class DueIndex:
    due: dict[str, int] = field(default_factory=dict)  # trip key -> ms
    visits: dict[str, list[str]] = field(default_factory=dict)  # tick id -> trip keys, oldest first

    def remember_visit(self, tick_id: str, trips: list[str]) -> None:
        self.visits[tick_id] = trips
        while len(self.visits) > RECENT_TICKS:
            del self.visits[next(iter(self.visits))]


def index_key(partition: int) -> bytes:
    return f"holds-due:{partition}".encode()


def load_index(table: MutableMapping[bytes, bytes], partition: int) -> DueIndex:
    raw = table.get(index_key(partition))
    if not raw:
        return DueIndex()
    data = orjson.loads(raw)
    return DueIndex(due=data["due"], visits=data["visits"])


def save_index(table: MutableMapping[bytes, bytes], partition: int, index: DueIndex) -> None:
    table[index_key(partition)] = orjson.dumps({"due": index.due, "visits": index.visits})


def process_record(record: Record, states: TripStore, due: MutableMapping[bytes, bytes],
                   send: Send, policy: Policy) -> Handled | None:
    """The one entry point for a record of the command topic (worker and replay alike).
    Returns the command's effect; None for a tick or a record that was dead-lettered."""
    if record.key == topics.TICK_KEY:
        process_tick(record, states, due, send, policy)
        return None
    handled = process_command(record, states, send, policy)
    if handled is not None:
        note_new_holds(handled, due, record.partition)
    return handled


def note_new_holds(handled: Handled, due: MutableMapping[bytes, bytes], partition: int) -> None:
    """A booking created or a waiting-list offer made (or re-announced by a duplicate)
    holds seats until its expiry: make sure the index visits its trip by then. Only these
    can make a trip's earliest due time earlier, so other commands leave the index alone."""
    expiries = list(holds_started(handled.outcome.events))
    if not expiries:
        return
    trip = handled.key.decode()
    index = load_index(due, partition)
    if trip in index.due and index.due[trip] <= min(expiries):
        return
    index.due[trip] = min(expiries)
    save_index(due, partition, index)


def process_tick(record: Record, states: TripStore, due: MutableMapping[bytes, bytes],
                 send: Send, policy: Policy) -> None:
    try:
        tick = TICK.validate_json(record.value or b"")
    except ValidationError as error:
        dead_letter(record, send, rejection_code(error), describe(error))
        return
    index = load_index(due, record.partition)
    trips = index.visits.get(tick.tick_id)
    if trips is None:
        trips = sorted(trip for trip, at in index.due.items() if at <= record.timestamp_ms)
        if not trips:
            return  # the common case: nothing due, nothing written
    for trip in trips:
        handled = process_command(expiry_record(record, trip, tick.tick_id), states, send, policy)
        next_due = earliest_expiry(handled.state) if handled is not None else None
        if next_due is None:
            index.due.pop(trip, None)
        else:
            index.due[trip] = next_due
    index.remember_visit(tick.tick_id, trips)
    save_index(due, record.partition, index)


def expiry_record(tick: Record, trip: str, tick_id: str) -> Record:
    """The `expire_holds` command a tick stands for on one trip, at the tick's time and
    position in the log; its command id comes from the tick, so a redelivery repeats it."""
    route_id, _, travel_date = trip.partition(":")
    command = {"v": SCHEMA_VERSION, "type": "expire_holds", "commandId": f"tick:{tick_id}", "actor": SYSTEM_ACTOR,
               "routeId": route_id, "travelDate": travel_date}
    return Record(topic=tick.topic, partition=tick.partition, offset=tick.offset, timestamp_ms=tick.timestamp_ms,
                  key=trip.encode(), value=orjson.dumps(command))


def holds_started(events: tuple[Event, ...]) -> Iterator[int]:
    """When the holds and offers these events started end."""
    for event in events:
        if isinstance(event, BookingCreated) and (at := event.booking.view().expires_at) is not None:
            yield at
        elif isinstance(event, EntryMoved) and event.moves[-1].target is EntryStatus.OFFERED:
            yield event.moves[-1].data["expires_at"]


def earliest_expiry(state: TripState) -> int | None:
    holds = [at for booking in state.bookings.values()
             if booking.status in HOLDING and (at := booking.view().expires_at) is not None]
    offers = [at for entry in state.entries.values()
              if entry.status is EntryStatus.OFFERED and (at := entry.view().offer_expires_at) is not None]
    return min(holds + offers, default=None)


def tick_value(now_ms: int) -> bytes:
    """One round of ticks: the same record for every partition (each partition's owner
    remembers the tick id on its own)."""
    return orjson.dumps({"v": SCHEMA_VERSION, "type": "tick", "tickId": uuid.uuid4().hex, "emittedAt": now_ms})
