"""The worker's local store of its tables: faust's RocksDB, one database per table
partition (`<datadir>/v1/tables/<table>-<partition>.db`), read and written here directly.

faust declares the tables, opens and closes the partitions' databases as partitions
move, keeps standby replicas and recovers the tables from their changelogs; but its own
writes (`table[key] = value`) send each changelog record on its own, need faust's
current event (there is none inside a batch), and write the key to RocksDB before the
broker has its changelog record. So the batches (app.worker.batch) bypass them: they
read a partition's database through `RocksTables.stored` and write it through
`RocksTables.write`, after the changelog has the batch, in one RocksDB write batch with
the changelog offset faust keeps next to the data (its "persisted offset", which its
recovery reads from on the next start). The local store is then always a prefix of the
changelog, with the offset it covers: a worker killed at any point starts again from
it, reading only the changelog's tail.

A worker with no local data (a new volume) loads a partition's changelog with
`load_changelogs`, the same way, in large write batches, instead of faust's replay of
one record at a time (`app.worker.faust_app.BulkRecovery`).

faust internals used, pinned with faust-streaming 0.15.3 (tests/processor/test_local.py
checks them): `Table.data` is its RocksDB store; `Store._db_for_partition(n)` opens (or
returns) the `rocksdict.Rdict` of partition n, in raw mode; `Store.offset_key` is the
key of the persisted offset, its value the offset in decimal ASCII;
`Store.persisted_offset(tp)` reads it.
"""

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import rocksdict
from confluent_kafka import Consumer, KafkaError, TopicPartition

from app.transport.clients import consumer_config

log = logging.getLogger(__name__)

# Records per RocksDB write batch when loading a changelog: each batch ends with its
# offset, so a load that is cut short is still a prefix.
LOAD_BATCH = 20_000


class PartitionDB:
    """One table partition's database, looked up at each read: faust closes a revoked
    partition's database by dropping its handle, and opens it again when it comes back."""

    def __init__(self, store, partition: int) -> None:  # noqa: ANN001 - faust.stores.rocksdb.Store
        self._store = store
        self._partition = partition

    def get(self, key: bytes) -> bytes | None:
        return self._store._db_for_partition(self._partition).get(key)


class RocksTables:
    """`app.worker.batch.LocalTables` over faust's tables, by table name."""

    def __init__(self, tables: Mapping[str, object]) -> None:
        self.tables = tables  # name -> faust.Table

    def stored(self, table: str, partition: int) -> PartitionDB:
        return PartitionDB(self.tables[table].data, partition)

    def write(self, table: str, partition: int, writes: dict[bytes, bytes | None], changelog_offset: int) -> None:
        store = self.tables[table].data
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in writes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(store.offset_key, str(changelog_offset).encode())
        store._db_for_partition(partition).write(batch)


@dataclass
class LoadProgress:
    """How far a bulk load of changelogs has come (read from other threads)."""

    records_total: int = 0
    records_loaded: int = 0
    seconds: float = 0.0


def load_changelogs(bootstrap: str, ranges: Mapping[tuple[str, int], tuple[int, int]],
                    database: Callable[[str, int], rocksdict.Rdict], offset_key: bytes,
                    progress: LoadProgress, timeout_s: float = 120.0) -> None:
    """Reads each changelog partition's records from `first` to `last` (offsets, both
    included) and writes them to its database in large write batches, each with the
    offset it reaches. Blocking: run it in a thread."""
    started = time.monotonic()
    consumer = Consumer(consumer_config(bootstrap, f"load-{uuid.uuid4()}", {
        "enable.partition.eof": True, "fetch.wait.max.ms": 10,
        "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 8 * 1024 * 1024}))
    remaining = {place: last for place, (first, last) in ranges.items() if last >= first}
    progress.records_total += sum(last - first + 1 for place, (first, last) in ranges.items() if last >= first)
    batches: dict[tuple[str, int], tuple[rocksdict.WriteBatch, list[int]]] = {}

    def write(place: tuple[str, int]) -> None:
        batch, counted = batches.pop(place)
        batch.put(offset_key, str(counted[1]).encode())
        database(*place).write(batch)

    def add(place: tuple[str, int], message) -> None:  # noqa: ANN001 - confluent_kafka.Message
        batch, counted = batches.setdefault(place, (rocksdict.WriteBatch(raw_mode=True), [0, 0]))
        value = message.value()
        if value is None:
            batch.delete(message.key())
        else:
            batch.put(message.key(), value)
        counted[0] += 1
        counted[1] = message.offset()
        progress.records_loaded += 1
        if counted[0] >= LOAD_BATCH:
            write(place)

    try:
        consumer.assign([TopicPartition(topic, partition, ranges[topic, partition][0])
                         for topic, partition in remaining])
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"changelogs not read to their end in {timeout_s} s: {sorted(remaining)}")
            for message in consumer.consume(10_000, 0.5):
                place = (message.topic(), message.partition())
                if place not in remaining:
                    continue
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"reading changelog {place}: {error}")
                if error is None and message.offset() <= remaining[place]:
                    add(place, message)
                # The last record to load, or the partition's end (what is read comes after
                # `first`, so that is past `last` too).
                if error is not None or message.offset() >= remaining[place]:
                    if place in batches:
                        write(place)
                    del remaining[place]
    finally:
        consumer.close()
        progress.seconds += time.monotonic() - started
