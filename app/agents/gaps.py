"""The command log, handled without holes: a record faust skipped is read back and handled.

The command topic's offsets are contiguous (no transactions write to it, nothing is
compacted or deleted behind a worker), so within one assignment the agent should see
offset n + 1 right after n. faust-streaming has lost that guarantee around rebalances and
recoveries more than once (its issues #216, #221, #236, #596), and a skipped command gets
no outcome at all from a sender that never resends. So the agent keeps, per partition,
the next offset it expects:

1. The first record of a partition after an assignment sets it (faust has just placed the
   partition at its committed offset; nothing before that is this worker's to handle).
2. A record past it means faust skipped the records in between: they are read from the
   broker, in order, and handled before it. Handling is deterministic and idempotent,
   so a record that was handled after all is only a duplicate.
3. A record before it (faust handing a record again) is handled again, as a duplicate,
   and the expectation follows it: skipping it would be wrong if faust had instead sent
   a later record ahead of its turn.
4. A revoked partition is forgotten, so its next owner's progress is never mistaken for a gap.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, TopicPartition

from app.agents.processor import Record
from app.config import Settings

log = logging.getLogger(__name__)

ReadRange = Callable[[str, int, int, int], list[Record]]


class ContiguousCommands:
    """Turns what faust hands the agent into the records to handle now, in log order."""

    def __init__(self, read_range: ReadRange) -> None:
        self._read_range = read_range
        self._next: dict[tuple[str, int], int] = {}

    async def through(self, record: Record) -> list[Record]:
        where = (record.topic, record.partition)
        expected = self._next.get(where, record.offset)
        self._next[where] = record.offset + 1
        if record.offset <= expected:
            return [record]
        log.warning("faust skipped %s[%d] offsets %d..%d: reading them back", record.topic, record.partition,
                    expected, record.offset - 1)
        skipped = await asyncio.to_thread(self._read_range, record.topic, record.partition, expected, record.offset)
        return [*skipped, record]

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        for where in partitions:
            self._next.pop(where, None)


def log_reader(settings: Settings, timeout_s: float = 30.0) -> ReadRange:
    """Reads offsets [start, end) of one partition, outside any consumer group."""

    def read_range(topic: str, partition: int, start: int, end: int) -> list[Record]:
        consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"gap-{uuid.uuid4()}",
                             "enable.auto.commit": False, "isolation.level": "read_uncommitted"})
        try:
            consumer.assign([TopicPartition(topic, partition, start)])
            found: list[Record] = []
            deadline = time.monotonic() + timeout_s
            while not read_to(consumer, TopicPartition(topic, partition), end):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not read {topic}[{partition}] offsets {start}..{end - 1}")
                for message in consumer.consume(end - start, 0.5):
                    if message.error() is None and message.offset() < end:
                        found.append(record_of_message(message))
            return found
        finally:
            consumer.close()

    return read_range


def read_to(consumer: Consumer, where: TopicPartition, end: int) -> bool:
    position = consumer.position([where])[0].offset
    return position >= end


def record_of_message(message) -> Record:  # noqa: ANN001 - confluent_kafka.Message has no public type
    return Record(topic=message.topic(), partition=message.partition(), offset=message.offset(),
                  timestamp_ms=message.timestamp()[1], key=message.key(), value=message.value(),
                  headers={name: value for name, value in message.headers() or []})
