"""Where a record of the command topic enters the worker: a clock tick goes to the
expiry of due holds and offers (app.worker.ticks), anything else is a command for the
pure core (app.worker.processor). The worker's batches and the deterministic replay call
the same `process_record`, so both see a record exactly alike.
"""

from app.domain.policy import Policy
from app.tables.partition import Partition
from app.tables.store import TripStore
from app.wire.topics import TICK_KEY, Topics
from app.worker.processor import Handled, Record, Send, process_command
from app.worker.ticks import process_tick


def process_record(record: Record, partition: Partition, store: TripStore, send: Send, policy: Policy,
                   topics: Topics) -> Handled | None:
    """The one entry point for a record of the command topic (worker and replay alike).
    Returns the command's effect; None for a tick or a record that was dead-lettered."""
    if record.key == TICK_KEY:
        process_tick(record, partition, store, send, policy, topics)
        return None
    handled = process_command(record, partition.trips, store, send, policy, topics)
    if handled is not None:
        note_next_visit(handled, partition)
    return handled


def note_next_visit(handled: Handled, partition: Partition) -> None:
    """Make sure the index visits the trip by the time it needs it (a new hold, the
    first remembered outcome); a visit later than needed is corrected by the visit."""
    if handled.next_visit is None:
        return
    index = partition.index()
    trip = handled.key.decode()
    if index.due.get(trip, handled.next_visit + 1) <= handled.next_visit:
        return
    index.due[trip] = handled.next_visit
    partition.index_changed()
