"""Events written to Postgres through the sink's own write path (parse, batch, COPY and
merge), without Kafka: records are handed over in an order the test chooses."""

import itertools

from app.wire.topics import CONTRACT
from sinks import store
from sinks.main import build_batch
from tests.support.messages import FakeMessage

_offsets = itertools.count()


def messages(records) -> list[FakeMessage]:
    return [FakeMessage(key.encode(), value, topic=topic, offset=next(_offsets)) for topic, key, value in records]


def apply(url: str, records, batch_size: int = 1000) -> None:
    """Write records in the given order, batch by batch, as the sink would."""
    with store.connect(url) as conn:
        for start in range(0, len(records), batch_size):
            batch, dead = build_batch(messages(records[start:start + batch_size]), CONTRACT)
            assert not dead, [d.reason for d in dead]
            store.write_batch(conn, batch)
