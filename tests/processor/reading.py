"""What a namespace's workers wrote: replies, lifecycle events, table changelogs and the
offsets their group committed."""

from collections import defaultdict
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from app.worker.processor import Record
from tests.processor.namespace import PARTITIONS, Namespace
from tests.support.kafka import bootstrap, read_topic


def as_json(record: Record) -> Any:
    return orjson.loads(record.value or b"")


def lifecycle(ns: Namespace) -> dict[str, list[Record]]:
    """Every lifecycle event so far, bookings', trips' and waiting-list entries', by event
    id (a re-emitted event appears twice)."""
    events: dict[str, list[Record]] = defaultdict(list)
    topics = ns.topics
    for name in (*topics.lifecycle, topics.trip_updated, *topics.waitlist):
        for message in read_topic(name):
            events[as_json(message)["eventId"]].append(message)
    return events


def replies_by_command(ns: Namespace) -> dict[str, list[bytes]]:
    replies: dict[str, list[bytes]] = defaultdict(list)
    for message in read_topic(ns.topics.replies):
        replies[message.key.decode()].append(message.value)
    return replies


def committed_offsets(ns: Namespace) -> dict[int, int]:
    """How far the worker group acknowledged each command partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap(), "group.id": ns.worker_id,
                         "enable.auto.commit": False})
    try:
        wanted = [TopicPartition(ns.topics.commands, p) for p in range(PARTITIONS)]
        return {tp.partition: max(tp.offset, 0) for tp in consumer.committed(wanted, timeout=10)}
    finally:
        consumer.close()


def changelog(ns: Namespace, table: str, partition: int) -> dict[bytes, bytes]:
    latest: dict[bytes, bytes] = {}
    for m in read_topic(f"{ns.worker_id}-{table}-changelog", [partition]):
        if m.value is None:
            latest.pop(m.key, None)
        else:
            latest[m.key] = m.value
    return latest
