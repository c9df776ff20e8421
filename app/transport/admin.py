"""The project's topics with their partition counts and configs, created idempotently.

`python -m tools.create_topics` runs it before the worker starts: faust would otherwise declare the
command topic itself, without the broker-stamped timestamps that make replays exact.
Every topic gets TOPIC_REPLICATION_FACTOR replicas and its min.insync.replicas, the
worker's own (changelogs, faust's leader topic) included (`internal_topic_specs`).
"""

import logging
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from app.config import Settings
from app.wire.topics import Topics

log = logging.getLogger(__name__)


def new_topic(settings: Settings, name: str, partitions: int, **config: str) -> NewTopic:
    """A topic replicated as configured: a write acknowledged to an acks=all producer is on
    min.insync.replicas brokers, and a partition with fewer in sync refuses writes rather
    than keep them on one disk."""
    config = {"min.insync.replicas": str(settings.min_insync_replicas()), **config}
    return NewTopic(name, partitions, settings.topic_replication_factor, config=config)


def topic_specs(settings: Settings) -> list[NewTopic]:
    topics = Topics.of(settings)
    events = [topics.trip_updated, topics.dead_letters, topics.audit, *topics.lifecycle, *topics.waitlist]
    return [
        # The broker stamps each command, so record time never runs backwards on a
        # partition, and a replay sees the very same clock.
        new_topic(settings, topics.commands, settings.command_partitions,
                  **{"message.timestamp.type": "LogAppendTime", "retention.ms": str(7 * 86_400_000)}),
        new_topic(settings, topics.replies, settings.reply_partitions, **{"retention.ms": str(3_600_000)}),
        new_topic(settings, topics.trips, settings.command_partitions, **{"cleanup.policy": "compact"}),
        *(new_topic(settings, name, settings.event_partitions) for name in events),
        # Which dead letters were replayed (tools.deadletters), keyed by the dead letter's position.
        new_topic(settings, topics.dead_letter_replays, 1, **{"cleanup.policy": "compact"}),
    ]


# The broker never compacts a log's active segment, and by default rolls it only after 7
# days or 1 GiB: a week of a table's writes (the trip entry is rewritten by every command)
# would stay in the changelog, and a worker rebuilding from it would replay them all. With
# an hour's segments the cleaner keeps it near one record per key (up to about two: it
# waits until half the log is dirty) plus the last hour's writes.
CHANGELOG_SEGMENT_MS = 3_600_000


def internal_topic_specs(settings: Settings, changelogs: list[str], leader: str) -> list[NewTopic]:
    """The topics faust would create for the worker: the tables' changelogs, partitioned
    like the commands, and the group's leader topic (one partition). faust creates them
    with its replication factor but without min.insync.replicas."""
    changelog = {"cleanup.policy": "compact", "segment.ms": str(CHANGELOG_SEGMENT_MS)}
    return [*(new_topic(settings, name, settings.command_partitions, **changelog) for name in changelogs),
            new_topic(settings, leader, 1)]


def ensure_topics(settings: Settings, specs: list[NewTopic]) -> list[str]:
    """Creates the missing topics; returns the names it created. Existing ones are left as
    they are, with a warning for any with fewer replicas than configured."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    existing = admin.list_topics(timeout=15).topics
    for spec in specs:
        found = existing.get(spec.topic)
        replicas = min((len(p.replicas) for p in found.partitions.values()), default=0) if found else 0
        if found and replicas < spec.replication_factor:
            log.warning("topic %s has %d replicas, %d are configured: raise it with kafka-reassign-partitions",
                        spec.topic, replicas, spec.replication_factor)
    missing = [spec for spec in specs if spec.topic not in existing]
    if not missing:
        return []
    for name, future in admin.create_topics(missing, operation_timeout=30).items():
        try:
            future.result()
        except Exception as error:  # a concurrent creator won the race: fine
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise
    wait_until_every_broker_knows(admin, missing)
    return [spec.topic for spec in missing]


def wait_until_every_broker_knows(admin: AdminClient, specs: list[NewTopic], timeout_s: float = 30) -> None:
    """The controller has the new topics once they are created; each broker learns of them
    a moment later. A client starting meanwhile may ask one that has not yet, and faust's
    consumer then goes on without the topic ("Ignoring missing topic"): a three-broker
    run saw a new worker unable to write its tables. So each broker that answers is asked
    (a fresh client knows only the broker it was given) until it lists every partition."""
    for broker in admin.list_topics(timeout=15).brokers.values():
        one = AdminClient({"bootstrap.servers": f"{broker.host}:{broker.port}"})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                known = one.list_topics(timeout=5).topics
            except KafkaException:  # a broker down: it learns the topics before it serves again
                break
            if all(spec.topic in known and known[spec.topic].error is None
                   and len(known[spec.topic].partitions) == spec.num_partitions for spec in specs):
                break
            time.sleep(0.2)
        else:
            log.warning("broker %s:%d still does not list every new topic after %.0f s", broker.host, broker.port,
                        timeout_s)
