"""Where each partition the sink is given starts: at the next offset Postgres holds for
it (`sink_offsets`, written in the same transaction as the rows), never at the consumer
group's committed offset (the sink commits those too, but only so that lag tools see them).
"""

import logging

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from sinks import store
from sinks.monitor import Monitor, Partition
from sinks.retry import Database

log = logging.getLogger(__name__)


class Positions:
    """The consumer's rebalance callbacks."""

    def __init__(self, database: Database, monitor: Monitor) -> None:
        self.database = database
        self.monitor = monitor

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start each partition where Postgres says; a partition never written starts at
        its beginning, so a new database is rebuilt from the whole log."""
        wanted = [(p.topic, p.partition) for p in partitions]
        stored = self.database.run(lambda conn: store.stored_offsets(conn, wanted))
        for p in partitions:
            p.offset = stored.get((p.topic, p.partition), OFFSET_BEGINNING)
        # Setting the offsets is not enough: the client's own fallback assigns the list it
        # was given, with the offsets it had. Assigning here makes ours the positions.
        consumer.assign(partitions)
        self.monitor.assigned({(p.topic, p.partition): stored.get((p.topic, p.partition)) for p in partitions})
        log.info("assigned %d partitions (%d with stored offsets)", len(partitions), len(stored))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Nothing to flush: every batch is committed before the next consume().
        self.monitor.revoked([(p.topic, p.partition) for p in partitions])
        log.info("revoked %d partitions", len(partitions))


def watermarks(consumer: Consumer, partition: Partition) -> tuple[int, int]:
    """As of the consumer's last fetch response (no broker call)."""
    try:
        return consumer.get_watermark_offsets(TopicPartition(*partition), cached=True)
    except (KafkaException, RuntimeError):  # RuntimeError: the consumer is closed
        return -1, -1
