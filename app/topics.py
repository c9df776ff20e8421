"""Creates the project's topics with their partition counts and configs, idempotently.

`python -m app.topics` runs before the worker starts: faust would otherwise declare the
command topic itself, without the broker-stamped timestamps that make replays exact.
"""

import logging
import time

from confluent_kafka.admin import AdminClient, NewTopic

from app.config import Settings, get_settings
from app.models import topics

log = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> list[NewTopic]:
    events = [topics.TRIP_UPDATED, topics.DEAD_LETTERS, topics.AUDIT, *topics.LIFECYCLE]
    return [
        # The broker stamps each command, so record time never runs backwards on a
        # partition, and a replay sees the very same clock.
        NewTopic(topics.COMMANDS, settings.command_partitions, 1,
                 config={"message.timestamp.type": "LogAppendTime", "retention.ms": str(7 * 86_400_000)}),
        NewTopic(topics.REPLIES, settings.reply_partitions, 1, config={"retention.ms": str(3_600_000)}),
        NewTopic(topics.TRIPS, settings.command_partitions, 1, config={"cleanup.policy": "compact"}),
        *(NewTopic(name, settings.event_partitions, 1) for name in events),
    ]


# The broker never compacts a log's active segment, and by default rolls it only after 7
# days or 1 GiB: a week of a table's writes (the trip entry is rewritten by every command)
# would stay in the changelog, and a worker rebuilding from it would replay them all. With
# an hour's segments the cleaner keeps it near one record per key (up to about two: it
# waits until half the log is dirty) plus the last hour's writes.
CHANGELOG_SEGMENT_MS = 3_600_000


def changelog_specs(settings: Settings, names: list[str], replication: int) -> list[NewTopic]:
    """faust's changelog topics for the worker's tables: partitioned like the commands,
    replicated as faust would (its TOPIC_REPLICATION_FACTOR)."""
    config = {"cleanup.policy": "compact", "segment.ms": str(CHANGELOG_SEGMENT_MS)}
    return [NewTopic(name, settings.command_partitions, replication, config=config) for name in names]


def leader_spec(name: str, replication: int) -> NewTopic:
    """faust's leader topic (one partition, no data: its owner is the group's leader)."""
    return NewTopic(name, 1, replication)


def wait_until_listed(settings: Settings, names: list[str], timeout_s: float = 60.0) -> None:
    """Returns once the broker's metadata lists every topic with a leader for each partition."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    deadline = time.monotonic() + timeout_s
    while True:
        listed = admin.list_topics(timeout=15).topics
        missing = [name for name in names if name not in listed or listed[name].error is not None
                   or not listed[name].partitions or any(p.leader < 0 for p in listed[name].partitions.values())]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not listed by the broker after {timeout_s} s: {missing}")
        time.sleep(0.2)


def ensure_topics(settings: Settings, specs: list[NewTopic]) -> list[str]:
    """Creates the missing topics; returns the names it created."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    existing = set(admin.list_topics(timeout=15).topics)
    missing = [spec for spec in specs if spec.topic not in existing]
    if not missing:
        return []
    for name, future in admin.create_topics(missing, operation_timeout=30).items():
        try:
            future.result()
        except Exception as error:  # a concurrent creator won the race: fine
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise
    return [spec.topic for spec in missing]


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = get_settings()
    created = ensure_topics(settings, topic_specs(settings))
    log.info("topics created: %s", ", ".join(created) if created else "none (all exist)")
