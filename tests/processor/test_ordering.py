"""The agent's guard against records faust skips or hands out of order (app.worker.ordering):
the pure bookkeeping over an in-memory log, and the broker side (committed offsets, ranges)."""

import asyncio
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from app.worker.ordering import BrokerLog, ContiguousCommands
from app.worker.processor import Record
from app.config import get_settings
from app.wire.topics import CONTRACT
from tests.processor.namespace import Namespace
from tests.support.kafka import produce_raw

TOPIC = CONTRACT.commands


def record(offset: int, partition: int = 0) -> Record:
    return Record(TOPIC, partition, offset, 1_000 + offset, b"trip", f"command {offset}".encode())


class MemoryLog:
    """A command log whose group has committed `committed[partition]`."""

    def __init__(self, **committed: int) -> None:
        self.committed_at = {int(name.removeprefix("p")): offset for name, offset in committed.items()}
        self.reads: list[tuple[int, int, int]] = []

    def committed(self, topic: str, partition: int) -> int:
        assert topic == TOPIC
        return self.committed_at[partition]

    def read_range(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        assert topic == TOPIC
        self.reads.append((partition, start, end))
        return [record(offset, partition) for offset in range(start, end)]


def handled(guard: ContiguousCommands, *offsets: int, partition: int = 0) -> list[int]:
    """The offsets handled, the records handed over one at a time (and, the same, in one
    batch: `all_through`)."""
    async def hand_over() -> list[int]:
        return [each.offset for offset in offsets for each in await guard.through(record(offset, partition))]
    return asyncio.run(hand_over())


def handled_in_one_batch(guard: ContiguousCommands, *offsets: int, partition: int = 0) -> list[int]:
    async def hand_over() -> list[int]:
        return [each.offset for each in await guard.all_through([record(offset, partition) for offset in offsets])]
    return asyncio.run(hand_over())


def test_records_in_order_from_the_committed_offset_are_handled_as_they_come() -> None:
    log = MemoryLog(p0=40)
    guard = ContiguousCommands(log)
    assert handled(guard, 40, 41, 42) == [40, 41, 42]
    assert log.reads == []


def test_skipped_records_are_read_back_and_handled_before_the_one_after_them() -> None:
    log = MemoryLog(p0=10)
    guard = ContiguousCommands(log)
    assert handled(guard, 10, 11, 14, 15) == [10, 11, 12, 13, 14, 15]
    assert log.reads == [(0, 12, 14)]


def test_records_skipped_at_the_start_of_an_assignment_are_read_back_too() -> None:
    log = MemoryLog(p0=2990)
    guard = ContiguousCommands(log)
    assert handled(guard, 3027) == [*range(2990, 3028)]
    assert log.reads == [(0, 2990, 3027)]


def test_records_handed_late_after_later_ones_are_not_handled_again() -> None:
    """What faust did after a SIGKILL and a rebuild in a chaos run: 3027 on, then 3020-3026,
    then 3012-3016. Each offset is handled once, in log order, whether the records come
    one at a time or in one batch."""
    handed = (3027, 3028, 3029, *range(3020, 3027), *range(3012, 3017), 3030)
    for hand_over in (handled, handled_in_one_batch):
        order = hand_over(ContiguousCommands(MemoryLog(p0=2990)), *handed)
        assert order == [*range(2990, 3031)]


def test_records_before_the_committed_offset_are_not_handled() -> None:
    log = MemoryLog(p0=100)
    guard = ContiguousCommands(log)
    assert handled(guard, 97, 98, 99, 100, 101) == [100, 101]


def test_partitions_are_followed_apart_and_a_forgotten_one_starts_at_its_committed_offset_again() -> None:
    log = MemoryLog(p0=3, p1=90)
    guard = ContiguousCommands(log)
    assert handled(guard, 3, partition=0) + handled(guard, 90, partition=1) == [3, 90]
    guard.forget([(TOPIC, 0)])
    log.committed_at[0] = 50
    assert handled(guard, 50, partition=0) + handled(guard, 92, partition=1) == [50, 91, 92]
    assert log.reads == [(1, 91, 92)]


@pytest.mark.integration
def test_the_broker_log_returns_a_range_of_a_partition_as_the_agent_would_see_it(tmp_path: Path) -> None:
    ns = Namespace(tmp_path, {})
    topic = ns.topics.commands
    for n in range(10):
        produce_raw(topic, b"trip-key", f"command {n}".encode(), {"reply-to": f"r{n}".encode()}, partition=2)
    read = BrokerLog(get_settings()).read_range(topic, 2, 3, 7)
    assert [(r.offset, r.value, r.headers) for r in read] == [
        (n, f"command {n}".encode(), {"reply-to": f"r{n}".encode()}) for n in range(3, 7)]
    assert all(r.topic == topic and r.partition == 2 and r.key == b"trip-key" and r.timestamp_ms > 0 for r in read)


@pytest.mark.integration
def test_the_broker_log_starts_a_partition_where_the_worker_group_committed_or_at_its_beginning(tmp_path) -> None:
    ns = Namespace(tmp_path, {})
    topic = ns.topics.commands
    for n in range(6):
        produce_raw(topic, b"trip-key", f"command {n}".encode(), {}, partition=1)
    settings = get_settings().model_copy(update={"worker_id": f"gaps-{tmp_path.name}"})
    broker_log = BrokerLog(settings)
    assert broker_log.committed(topic, 1) == 0  # nothing committed yet
    group = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.worker_id,
                      "enable.auto.commit": False})
    try:
        group.commit(offsets=[TopicPartition(topic, 1, 4)], asynchronous=False)
    finally:
        group.close()
    assert broker_log.committed(topic, 1) == 4
