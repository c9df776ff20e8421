"""The agent's guard against records faust skips (app.agents.gaps): the pure bookkeeping
over an in-memory log, and the read-back from a real broker."""

import asyncio
from pathlib import Path

import pytest

from app.agents.gaps import ContiguousCommands, log_reader
from app.agents.processor import Record
from app.config import get_settings
from app.models import topics
from tests.processor.support import Namespace, produce_raw

TOPIC = topics.COMMANDS


def record(offset: int, partition: int = 0) -> Record:
    return Record(TOPIC, partition, offset, 1_000 + offset, b"trip", f"command {offset}".encode())


class MemoryLog:
    def __init__(self) -> None:
        self.reads: list[tuple[int, int, int]] = []

    def read_range(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        assert topic == TOPIC
        self.reads.append((partition, start, end))
        return [record(offset, partition) for offset in range(start, end)]


def handled(guard: ContiguousCommands, *offsets: int, partition: int = 0) -> list[int]:
    async def hand_over() -> list[int]:
        return [each.offset for offset in offsets for each in await guard.through(record(offset, partition))]
    return asyncio.run(hand_over())


def test_records_in_order_are_handled_as_they_come_from_wherever_the_partition_starts() -> None:
    log = MemoryLog()
    guard = ContiguousCommands(log.read_range)
    assert handled(guard, 40, 41, 42) == [40, 41, 42]
    assert log.reads == []


def test_skipped_records_are_read_back_and_handled_before_the_one_after_them() -> None:
    log = MemoryLog()
    guard = ContiguousCommands(log.read_range)
    assert handled(guard, 10, 11, 14, 15) == [10, 11, 12, 13, 14, 15]
    assert log.reads == [(0, 12, 14)]


def test_a_record_handed_again_is_handled_again_and_the_expectation_follows_it() -> None:
    log = MemoryLog()
    guard = ContiguousCommands(log.read_range)
    assert handled(guard, 5, 6, 7, 6, 7, 8) == [5, 6, 7, 6, 7, 8]
    assert log.reads == []


def test_partitions_are_followed_apart_and_a_forgotten_one_starts_afresh() -> None:
    log = MemoryLog()
    guard = ContiguousCommands(log.read_range)
    assert handled(guard, 3, partition=0) + handled(guard, 90, partition=1) == [3, 90]
    guard.forget([(TOPIC, 0)])
    assert handled(guard, 50, partition=0) + handled(guard, 92, partition=1) == [50, 91, 92]
    assert log.reads == [(1, 91, 92)]


@pytest.mark.integration
def test_the_log_reader_returns_a_range_of_a_partition_as_the_agent_would_see_it(tmp_path: Path) -> None:
    ns = Namespace(tmp_path, {})
    topic = ns.topic(topics.COMMANDS)
    for n in range(10):
        produce_raw(topic, b"trip-key", f"command {n}".encode(), {"reply-to": f"r{n}".encode()}, partition=2)
    read = log_reader(get_settings())(topic, 2, 3, 7)
    assert [(r.offset, r.value, r.headers) for r in read] == [
        (n, f"command {n}".encode(), {"reply-to": f"r{n}".encode()}) for n in range(3, 7)]
    assert all(r.topic == topic and r.partition == 2 and r.key == b"trip-key" and r.timestamp_ms > 0 for r in read)
