"""The stream processor: a faust worker whose agent owns the command topic's partitions
and the trip states on them. Run: `python -m app.agents.worker worker -l info`.

Each agent keeps concurrency 1: it writes tables, and faust may commit past an in-flight
message otherwise (faust-streaming issue #606).
"""

import logging
from collections.abc import Mapping

import faust

from app.agents.processor import Record, dead_letter, forward_trip, process_command
from app.config import get_settings
from app.models import topics
from app.tables.store import TripStore
from app.tables.trips import trip_state_table

log = logging.getLogger(__name__)
settings = get_settings()
policy = settings.policy()

app = faust.App(
    settings.worker_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    store="rocksdb://",
    datadir=str(settings.worker_datadir),
    topic_partitions=settings.command_partitions,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    broker_commit_interval=settings.worker_commit_interval_seconds,
    table_standby_replicas=settings.worker_standby_replicas,
    stream_recovery_delay=0.5,
    web_enabled=False,
)

commands = app.topic(topics.COMMANDS, key_serializer="raw", value_serializer="raw",
                     partitions=settings.command_partitions)
trips_catalog = app.topic(topics.TRIPS, key_serializer="raw", value_serializer="raw",
                          partitions=settings.command_partitions)
trip_states = TripStore(trip_state_table(app, settings), settings.worker_trips_cached)
_topics_by_name: dict[str, faust.TopicT] = {}


def send_soon(topic: str, key: bytes, value: bytes, partition: int | None, headers: Mapping[str, bytes]) -> None:
    """Into the same producer buffer as the table's changelog records, after them."""
    if topic not in _topics_by_name:
        _topics_by_name[topic] = app.topic(topic, key_serializer="raw", value_serializer="raw")
    _topics_by_name[topic].send_soon(key=key, value=value, partition=partition, headers=list(headers.items()))


def record_of(event: faust.EventT) -> Record:
    message = event.message
    headers = message.headers or {}
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_ms=round(message.timestamp * 1000),
        key=message.key,
        value=message.value,
        headers=dict(headers.items() if isinstance(headers, Mapping) else headers),
    )


@app.agent(commands, concurrency=1)
async def process_commands(stream: faust.StreamT) -> None:
    async for event in stream.events():
        process_safely(record_of(event))


@app.agent(trips_catalog, concurrency=1)
async def forward_trips(stream: faust.StreamT) -> None:
    async for event in stream.events():
        forward_trip(record_of(event), send_soon)


def process_safely(record: Record) -> None:
    """A bug met by one record must not stop the partition: it goes to dead letters."""
    try:
        process_command(record, trip_states, send_soon, policy)
    except Exception as error:  # noqa: BLE001 - the worker must keep going
        log.exception("command at %s[%d]@%d failed", record.topic, record.partition, record.offset)
        dead_letter(record, send_soon, "internal_error", f"{type(error).__name__}: {error}")


def main() -> None:
    app.main()


if __name__ == "__main__":
    main()
