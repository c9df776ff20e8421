"""Events written to Postgres through the sink's own write path (parse, batch, COPY and
merge), without Kafka: records are handed over in an order the test chooses."""

import itertools
from dataclasses import dataclass

from app.wire.topics import CONTRACT
from sinks import store
from sinks.main import build_batch

_offsets = itertools.count()


@dataclass
class FakeMessage:
    """The part of confluent_kafka.Message the sink reads."""

    _topic: str
    _key: str
    _value: bytes
    _offset: int
    _partition: int = 0

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key.encode()

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None


def messages(records) -> list[FakeMessage]:
    return [FakeMessage(topic, key, value, next(_offsets)) for topic, key, value in records]


def apply(url: str, records, batch_size: int = 1000) -> None:
    """Write records in the given order, batch by batch, as the sink would."""
    with store.connect(url) as conn:
        for start in range(0, len(records), batch_size):
            batch, dead = build_batch(messages(records[start:start + batch_size]), CONTRACT)
            assert not dead, [d.reason for d in dead]
            store.write_batch(conn, batch)
