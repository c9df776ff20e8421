"""Command records handled a batch at a time, and made durable in this order:

1. Each record of the batch, in log order per partition, through the pure core
   (`Processor`): its table writes are staged (each changed key once per batch, trip
   entries last: `app.tables.store`), its replies, events and dead letters held.
2. The staged writes go to the tables' changelog topics (one record per key, on the
   partition of the commands), and the batch waits until the broker has them all.
3. Only then are they written to the worker's local store: per table partition, one
   RocksDB write batch holding the keys and the changelog offset they reach, so the
   local store is always a prefix of the changelog, with the offset it covers.
4. Then the replies, events and dead letters are produced, and the batch waits for them.
5. Only then are the batch's positions handed to the committer (`Positions`), and its
   messages acknowledged to faust.

So the state a reply or an event announces is in the changelog first, and an offset is
committed only after all of its outputs are. A failure anywhere in 2-5 must end the
worker (`BatchFailed`): what was not committed is handled again after a restart, from
the local store, and handling is deterministic. `Processor` is free of Kafka and faust:
the tests and the replay drive it with dicts as the tables, one record per batch or
many, and get the same replies, events and tables (`tests/processor/test_batch.py`).
"""

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from app.worker.intake import process_record
from app.worker.processor import Handled, Record, Send, dead_letter
from app.domain.policy import Policy
from app.wire.topics import CONTRACT, Topics
from app.tables.partition import Partition
from app.tables.staged import apply
from app.tables.store import TripStore
from app.tables.trips import HOLD_DUE, TRIP_STATE

log = logging.getLogger(__name__)

# (table name, partition) -> the keys written in the batch, None for a deletion
Writes = dict[tuple[str, int], dict[bytes, bytes | None]]


# Told of each record handled: the record, its effect (None for a tick or a dead letter),
# the seconds it took (app.worker.monitor).
OnHandled = Callable[[Record, Handled | None, float], None]


class Processor:
    """Command records in, staged table writes per partition and outputs out."""

    def __init__(self, store: TripStore, policy: Policy, topics: Topics, open_partition: Callable[[int], Partition],
                 on_handled: OnHandled | None = None) -> None:
        self.store = store
        self.policy = policy
        self.topics = topics
        self._open = open_partition
        self.on_handled = on_handled
        self.partitions: dict[int, Partition] = {}

    def partition(self, number: int) -> Partition:
        if number not in self.partitions:
            self.partitions[number] = self._open(number)
        return self.partitions[number]

    def process(self, record: Record, send: Send) -> None:
        """A bug met by one record must not stop the partition: it goes to dead letters,
        and the state is as it was before it (`TripStore.handle`)."""
        started = time.perf_counter()
        handled = None
        try:
            handled = process_record(record, self.partition(record.partition), self.store, send, self.policy,
                                     self.topics)
        except Exception as error:  # noqa: BLE001 - the partition must keep going
            log.exception("command at %s[%d]@%d failed", record.topic, record.partition, record.offset)
            dead_letter(record, send, "internal_error", f"{type(error).__name__}: {error}", self.topics)
        if self.on_handled is not None:
            self.on_handled(record, handled, time.perf_counter() - started)

    def flush(self) -> Writes:
        """The writes staged since the last flush: the end of a batch."""
        self.store.write_trips()
        writes: Writes = {}
        for number, partition in self.partitions.items():
            trips, holds_due = partition.take()
            if trips:
                writes[TRIP_STATE, number] = trips
            if holds_due:
                writes[HOLD_DUE, number] = holds_due
        return writes

    def forget(self, numbers: Sequence[int]) -> None:
        """Partitions that went to another worker: what is read of them may change."""
        gone = [self.partitions.pop(n) for n in numbers if n in self.partitions]
        self.store.forget([table for partition in gone for table in (partition.trips, partition.holds_due)])


class InMemory:
    """The processor with dicts as its tables (tests, replays of the log, benchmarks);
    `flush` ends a batch: after every record, or after many."""

    def __init__(self, policy: Policy, trips_cached: int = 1_000, topics: Topics = CONTRACT) -> None:
        self.tables: dict[tuple[str, int], dict[bytes, bytes]] = defaultdict(dict)
        self.processor = Processor(TripStore(trips_cached), policy, topics, self._open)

    def _open(self, number: int) -> Partition:
        return Partition.over(number, self.tables[TRIP_STATE, number], self.tables[HOLD_DUE, number])

    def table(self, name: str, partition: int) -> dict[bytes, bytes]:
        return self.tables[name, partition]

    def process(self, record: Record, send: Send) -> None:
        self.processor.process(record, send)

    def flush(self) -> None:
        for place, writes in self.processor.flush().items():
            apply(writes, self.tables[place])


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    headers: Mapping[str, bytes]


# The worker's exit code when a batch may be only partly durable (app.worker.bootstrap).
EXIT_BATCH_FAILED = 70


class BatchFailed(Exception):
    """The batch's state or outputs may be only partly durable: the worker must stop
    before anything of it is acknowledged."""


class Producer(Protocol):
    async def send(self, outputs: Sequence[Output]) -> Mapping[tuple[str, int], Awaitable[int]]:
        """Sends the records, each (topic, partition)'s in the given order; returns per
        (topic, partition) what resolves to the offset of its last record once the broker
        has them all (app.worker.produce)."""


class LocalTables(Protocol):
    """Where the worker keeps the tables between batches (the partitions' RocksDB)."""

    def write(self, table: str, partition: int, writes: dict[bytes, bytes | None], changelog_offset: int) -> None:
        """The keys and the changelog offset they reach, together or not at all."""


class Positions:
    """The next offset to handle per (topic, partition), for the batches whose outputs
    are all acknowledged: what may be committed."""

    def __init__(self) -> None:
        self.done: dict[tuple[str, int], int] = {}
        self.uncommitted: dict[tuple[str, int], int] = {}
        self.changed = asyncio.Event()

    def advance(self, positions: Mapping[tuple[str, int], int]) -> None:
        self.done.update(positions)
        self.uncommitted.update(positions)
        self.changed.set()

    def take(self, places: Sequence[tuple[str, int]] | None = None) -> dict[tuple[str, int], int]:
        """The positions advanced since they were last taken (of `places` only, if given)."""
        wanted = dict(self.uncommitted) if places is None else {p: self.uncommitted[p] for p in places
                                                                if p in self.uncommitted}
        for place in wanted:
            del self.uncommitted[place]
        return wanted

    def forget(self, places: Sequence[tuple[str, int]]) -> None:
        for place in places:
            self.done.pop(place, None)
            self.uncommitted.pop(place, None)


class Durable:
    """Steps 2-4 above for one batch of the processor's writes and outputs."""

    def __init__(self, producer: Producer, changelog_topics: Mapping[str, str], local: LocalTables) -> None:
        self.producer = producer
        self.changelog_topics = changelog_topics  # table name -> changelog topic
        self.local = local

    async def commit(self, writes: Writes, outputs: Sequence[Output]) -> None:
        try:
            offsets = await self._to_changelog(writes)
            for (table, partition), keys in writes.items():
                self.local.write(table, partition, keys, offsets[self.changelog_topics[table], partition])
            await self.produce_all(outputs)
        except Exception as error:
            raise BatchFailed(f"{type(error).__name__}: {error}") from error

    async def produce_all(self, outputs: Sequence[Output]) -> None:
        """Returns once the broker has them all."""
        if outputs:
            await asyncio.gather(*(await self.producer.send(outputs)).values())

    async def _to_changelog(self, writes: Writes) -> dict[tuple[str, int], int]:
        """The offset of the last record each changelog partition got."""
        records = [Output(self.changelog_topics[table], key, value, partition, {})
                   for (table, partition), keys in writes.items() for key, value in keys.items()]
        if not records:
            return {}
        sent = await self.producer.send(records)
        return dict(zip(sent, await asyncio.gather(*sent.values()), strict=True))


class Guard(Protocol):
    """app.worker.ordering.ContiguousCommands."""

    async def all_through(self, records: Sequence[Record]) -> list[Record]: ...

    def expected(self, topic: str, partition: int) -> int: ...


@dataclass
class BatchStats:
    """What the batches did so far (a metrics endpoint can read these)."""

    batches: int = 0
    records: int = 0
    last_records: int = 0
    last_seconds: float = 0.0  # from the batch's first record handled to its outputs acknowledged


class Batches:
    """One batch at a time: records in order (`Guard`), handled (`Processor`), made
    durable (`Durable`), then their positions handed on (`Positions`)."""

    def __init__(self, processor: Processor, guard: Guard, durable: Durable, positions: Positions,
                 on_dead_letter: Callable[[Mapping[str, bytes]], None] | None = None,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        self.processor = processor
        self.guard = guard
        self.durable = durable
        self.positions = positions
        self.on_dead_letter = on_dead_letter  # told of each dead letter's headers
        self.on_batch = on_batch  # told of each batch made durable: its records and seconds
        self.stats = BatchStats()

    async def run(self, records: Sequence[Record]) -> None:
        """Raises if the batch may be only partly durable: nothing of it may then be
        acknowledged, and the worker must stop."""
        started = time.monotonic()
        outputs: list[Output] = []

        def send(topic: str, key: bytes, value: bytes, partition: int | None, headers: Mapping[str, bytes]) -> None:
            outputs.append(Output(topic, key, value, partition, headers))
            if topic == self.processor.topics.dead_letters and self.on_dead_letter is not None:
                self.on_dead_letter(headers)

        places = {(record.topic, record.partition) for record in records}
        in_order = await self.guard.all_through(records)
        for record in in_order:
            self.processor.process(record, send)
        handled = len(in_order)
        await self.durable.commit(self.processor.flush(), outputs)
        self.positions.advance({place: self.guard.expected(*place) for place in places})
        self.stats.batches += 1
        self.stats.records += handled
        self.stats.last_records = handled
        self.stats.last_seconds = time.monotonic() - started
        if self.on_batch is not None:
            self.on_batch(handled, self.stats.last_seconds)
