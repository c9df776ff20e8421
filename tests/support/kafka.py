"""The broker `make test` runs (the settings' KAFKA_BOOTSTRAP), read and written with plain
confluent-kafka clients, independently of the code under test."""

import time
import uuid
from collections import defaultdict

from confluent_kafka import Consumer, Producer, TopicPartition

from app.config import get_settings
from app.worker.processor import Record


def bootstrap() -> str:
    return get_settings().kafka_bootstrap


def read_topic(name: str, partitions: list[int] | None = None) -> list[Record]:
    """Every record of the topic up to its current end, in partition then offset order."""
    consumer = Consumer({"bootstrap.servers": bootstrap(), "group.id": f"reader-{uuid.uuid4()}",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        metadata = consumer.list_topics(name, timeout=10).topics[name]
        found = sorted(metadata.partitions) if partitions is None else partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10) for p in found}
        wanted = {p: (low, high) for p, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(name, p, low) for p, (low, _) in wanted.items()])
        got: dict[int, list[Record]] = defaultdict(list)
        deadline = time.monotonic() + 30
        while any(not got[p] or got[p][-1].offset < high - 1 for p, (_, high) in wanted.items()):
            assert time.monotonic() < deadline, f"could not read {name} to its end"
            for m in consumer.consume(500, 0.5):
                if m.error() is None:
                    got[m.partition()].append(Record(m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(),
                                                      m.value(), dict(m.headers() or [])))
        return [m for p in sorted(got) for m in got[p]]
    finally:
        consumer.close()


def last_records(name: str) -> list[Record]:
    consumer = Consumer({"bootstrap.servers": bootstrap(), "group.id": f"reader-{uuid.uuid4()}"})
    try:
        found = []
        for p in consumer.list_topics(name, timeout=10).topics[name].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            if high > low:
                found.append(Record(name, p, high - 1, 0, None, None, {}))
        return found
    finally:
        consumer.close()


def produce_raw(topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes], partition: int = -1) -> None:
    """The recipe for a plain confluent-kafka producer (docs/processor.md)."""
    producer = Producer({"bootstrap.servers": bootstrap(), "partitioner": "murmur2_random",
                         "enable.idempotence": True, "acks": "all"})
    producer.produce(topic, key=key, value=value, headers=list(headers.items()), partition=partition)
    assert producer.flush(10) == 0
