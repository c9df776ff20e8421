"""Log-driven expiry of holds and waiting-list offers: clock ticks in the command log and
each partition's index of trips with holds or offers due.

The leader worker writes a tick into every partition of the command topic every
TICK_INTERVAL_SECONDS (`tick_value`). The owner of a partition meets the tick in order
with the commands: at the tick's record time (broker-stamped), each trip of the partition
with a hold or offer due gets an `expire_holds` command through the ordinary
`process_command` path. So expiries are ordered with the other commands, and a replay of
the log expires the same holds and offers at the same records.

Which trips to visit comes from the partition's hold-due index (`app.tables.partition`):
trip key -> a time at or before the trip next needs a visit, for its earliest live hold
or offer (an offer holds seats just as a booking's hold does, and ends the same way), or
to delete the remembered outcomes that have outlived their retention window
(`TripStore.forget_outcomes`). It may err early (a hold extended by a payment
initiation, or resolved meanwhile, keeps its old time until the visit corrects it),
never late, so every due hold and offer is found. Being a table entry written in the
partition's stream, it has a changelog: it survives restarts and moves with the partition.

A redelivered tick (a crash before its offset was committed) revisits exactly the trips
it visited the first time, whose `expire_holds` are then duplicates that re-emit their
expiries: a crash can repeat an expiry event, never lose it.
"""

import uuid

import orjson
from pydantic import ValidationError

from app.worker.processor import Record, Send, dead_letter, describe, process_command, rejection_code
from app.domain.commands import Role
from app.domain.policy import Policy
from app.domain.trip import trip_key_parts
from app.wire.commands import SCHEMA_VERSION, TICK
from app.tables.partition import Partition
from app.tables.store import TripStore
from app.wire.topics import Topics

SYSTEM_ACTOR = {"userId": "system", "role": Role.SERVICE.value}


def process_tick(record: Record, partition: Partition, store: TripStore, send: Send, policy: Policy,
                 topics: Topics) -> None:
    try:
        tick = TICK.validate_json(record.value or b"")
    except ValidationError as error:
        dead_letter(record, send, rejection_code(error), describe(error), topics)
        return
    index = partition.index()
    trips = index.visits.get(tick.tick_id)
    if trips is None:
        trips = sorted(trip for trip, at in index.due.items() if at <= record.timestamp_ms)
        if not trips:
            return  # the common case: nothing due, nothing written
    for trip in trips:
        handled = process_command(expiry_record(record, trip, tick.tick_id), partition.trips, store, send, policy,
                                  topics)
        next_due = None
        if handled is not None:
            next_due = store.forget_outcomes(partition.trips, handled.key, record.timestamp_ms, record.offset, policy)
        if next_due is None:
            index.due.pop(trip, None)
        else:
            index.due[trip] = next_due
    index.remember_visit(tick.tick_id, trips)
    partition.index_changed()


def expiry_record(tick: Record, trip: str, tick_id: str) -> Record:
    """The `expire_holds` command a tick stands for on one trip, at the tick's time and
    position in the log; its command id comes from the tick, so a redelivery repeats it."""
    route_id, travel_date = trip_key_parts(trip)
    command = {"v": SCHEMA_VERSION, "type": "expire_holds", "commandId": f"tick:{tick_id}", "actor": SYSTEM_ACTOR,
               "routeId": route_id, "travelDate": travel_date}
    return Record(topic=tick.topic, partition=tick.partition, offset=tick.offset, timestamp_ms=tick.timestamp_ms,
                  key=trip.encode(), value=orjson.dumps(command))


def tick_value(now_ms: int) -> bytes:
    """One round of ticks: the same record for every partition (each partition's owner
    remembers the tick id on its own)."""
    return orjson.dumps({"v": SCHEMA_VERSION, "type": "tick", "tickId": uuid.uuid4().hex, "emittedAt": now_ms})
