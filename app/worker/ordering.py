"""The command log, handled in order and without holes, whatever order faust hands it in.

The command topic's offsets are contiguous (no transactions write to it, nothing is
compacted or deleted behind a worker), so one assignment of a partition must handle
exactly the offsets from the group's committed offset on, each once, in order.
faust-streaming can break that around rebalances and recoveries (its issues #216, #221,
#236, #596): after a crash and a rebuild it may hand the agent a partition's records out
of order or skip some (the incident is in docs/benchmarks/NOTES.md). Handled as they
came, a booking would get other seats than the log gives it, and the worker's state would
leave the log's for good. So the agent keeps, per partition, the next offset it must
handle:

1. At the first record of a partition after an assignment, that is the group's committed
   offset for the partition, read from the broker: everything before it was handled, and
   its effects flushed, by whoever committed it.
2. A record at that offset is handled, and the expectation moves past it.
3. A record past it means faust skipped what is in between: those records are read from
   the broker and handled, in order, before it.
4. A record before it was handled already in this assignment (or committed before it):
   it is skipped, never handled a second time out of its turn.
5. A revoked partition is forgotten; its next assignment starts again at 1.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Protocol

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, TopicPartition

from app.worker.processor import Record
from app.config import Settings
from app.transport.clients import consumer_config

log = logging.getLogger(__name__)


class CommandLog(Protocol):
    def committed(self, topic: str, partition: int) -> int:
        """Where the worker group must start on the partition."""

    def read_range(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        """The records at offsets [start, end) of the partition."""


class ContiguousCommands:
    """Turns what faust hands the agent into the records to handle now, in log order."""

    def __init__(self, command_log: CommandLog) -> None:
        self._log = command_log
        self._next: dict[tuple[str, int], int] = {}

    async def through(self, record: Record) -> list[Record]:
        where = (record.topic, record.partition)
        if where not in self._next:
            self._next[where] = await asyncio.to_thread(self._log.committed, record.topic, record.partition)
        expected = self._next[where]
        if record.offset < expected:
            log.info("%s[%d]@%d handed again: already handled", record.topic, record.partition, record.offset)
            return []
        self._next[where] = record.offset + 1
        if record.offset == expected:
            return [record]
        log.warning("faust skipped %s[%d] offsets %d..%d: reading them back", record.topic, record.partition,
                    expected, record.offset - 1)
        skipped = await asyncio.to_thread(self._log.read_range, record.topic, record.partition, expected,
                                          record.offset)
        return [*skipped, record]

    async def all_through(self, records: Iterable[Record]) -> list[Record]:
        """`through` for each record, in order; a record that is the next one expected
        (nearly all of them) without a trip through the event loop."""
        handled: list[Record] = []
        for record in records:
            where = (record.topic, record.partition)
            if self._next.get(where) == record.offset:
                self._next[where] = record.offset + 1
                handled.append(record)
            else:
                handled.extend(await self.through(record))
        return handled

    def expected(self, topic: str, partition: int) -> int:
        """The next offset to handle on the partition."""
        return self._next[topic, partition]

    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset to handle, per partition seen since its assignment."""
        return dict(self._next)

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        for where in partitions:
            self._next.pop(where, None)


class BrokerLog:
    """The command log as the broker has it, outside faust: the worker group's committed
    offsets, and ranges of records read without joining any group."""

    def __init__(self, settings: Settings, timeout_s: float = 30.0) -> None:
        self._bootstrap = settings.kafka_bootstrap
        self._group = settings.worker_id
        self._timeout_s = timeout_s
        self._offsets: Consumer | None = None

    def committed(self, topic: str, partition: int) -> int:
        """Asks until the broker answers: without it, nothing of the partition may be handled."""
        while True:
            try:
                return self._committed(topic, partition)
            except KafkaException as error:
                log.warning("committed offset of %s[%d] unknown (%s); asking again", topic, partition, error)
                time.sleep(1.0)

    def _committed(self, topic: str, partition: int) -> int:
        if self._offsets is None:
            # Never subscribes: asking a group's committed offsets does not join it.
            self._offsets = Consumer(consumer_config(self._bootstrap, self._group))
        where = TopicPartition(topic, partition)
        offset = self._offsets.committed([where], timeout=self._timeout_s)[0].offset
        if offset == OFFSET_INVALID:  # never committed: the group starts at the beginning
            return self._offsets.get_watermark_offsets(where, timeout=self._timeout_s)[0]
        return offset

    def read_range(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        consumer = Consumer(consumer_config(self._bootstrap, f"gap-{uuid.uuid4()}",
                                            {"isolation.level": "read_uncommitted"}))
        try:
            consumer.assign([TopicPartition(topic, partition, start)])
            found: list[Record] = []
            deadline = time.monotonic() + self._timeout_s
            while not read_to(consumer, TopicPartition(topic, partition), end):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not read {topic}[{partition}] offsets {start}..{end - 1}")
                for message in consumer.consume(end - start, 0.5):
                    if message.error() is None and message.offset() < end:
                        found.append(record_of_message(message))
            return found
        finally:
            consumer.close()


def read_to(consumer: Consumer, where: TopicPartition, end: int) -> bool:
    position = consumer.position([where])[0].offset
    return position >= end


def record_of_message(message) -> Record:  # noqa: ANN001 - confluent_kafka.Message has no public type
    return Record(topic=message.topic(), partition=message.partition(), offset=message.offset(),
                  timestamp_ms=message.timestamp()[1], key=message.key(), value=message.value(),
                  headers={name: value for name, value in message.headers() or []})
