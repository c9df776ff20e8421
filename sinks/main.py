"""`python -m sinks.main`: persist the lifecycle topics and trip.updated into Postgres.

Exactly-once in effect, with at-least-once delivery underneath:
- the offsets live in Postgres (`sink_offsets`), written in the same transaction as the
  rows, and each assigned partition is positioned from there (sinks.positions);
- rows are merged idempotently and order-independently (see sinks.store), so a batch
  applied twice, or events of one booking arriving out of order across topics, change
  nothing.
A record that does not fit the contract goes to the dead-letter topic (sinks.deadletters)
and its offset advances with the batch. Postgres down: the same batch is retried with
backoff, and nothing advances until it is written (sinks.retry).
Lag per partition and health are served over HTTP (sinks.monitor).
"""

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import psycopg
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from app.config import Settings, get_settings
from app.monitoring import serve
from app.transport.clients import sink_consumer_config, sink_dead_letter_producer_config
from app.wire.topics import Topics
from sinks import store
from sinks.deadletters import DeadLetter, DeadLetters
from sinks.events import SUBSCRIBED, Batch, Invalid, parse_record
from sinks.monitor import Monitor
from sinks.positions import Positions, watermarks
from sinks.progress import Progress
from sinks.retry import ROW_ERRORS, Database, Shutdown, Stopping, first_line

log = logging.getLogger("sinks.main")

# An idle sink checks Postgres this often, so readiness and the gauge tell the truth
# even when no events arrive.
PING_EVERY_SECONDS = 5.0


@dataclass
class Sink:
    """The loop; `bootstrap` makes its parts."""

    settings: Settings
    topics: Topics
    consumer: Consumer
    database: Database
    dead_letters: DeadLetters
    monitor: Monitor
    shutdown: Shutdown
    on_close: Callable[[], None]
    progress: Progress = field(default_factory=Progress)

    def run(self) -> None:
        try:
            # Postgres first: a sink that cannot write should not take partitions from one that can.
            self.database.run(store.ping)
            positions = Positions(self.database, self.monitor)
            self.consumer.subscribe([self.topics.named(name) for name in SUBSCRIBED], on_assign=positions.on_assign, on_revoke=positions.on_revoke)
            log.info("sink started: group %s, %d topics, database %s", self.settings.sink_group, len(SUBSCRIBED),
                     redact(self.database.url))
            while not self.shutdown.requested:
                self.run_once()
        except Stopping:
            log.warning("stopped while waiting for Postgres or Kafka; what was not written is read again on restart")
        finally:
            self.close()

    def run_once(self) -> None:
        self.monitor.beat()
        started = time.monotonic()
        # 1. Consume a batch: up to SINK_BATCH_SIZE records, or what came within SINK_BATCH_WAIT_MS.
        messages = self.consumer.consume(num_messages=self.settings.sink_batch_size,
                                         timeout=self.settings.sink_batch_wait_ms / 1000)
        records = [m for m in messages if not is_error(m)]
        if records:
            self.settle(records, started)
        elif time.monotonic() - self.database.ok_at > PING_EVERY_SECONDS:
            self.database.run(store.ping)
        self.progress.maybe_report()

    def settle(self, records: list[Message], started: float) -> None:
        """Steps 2 to 5 for one batch; `started`: when the consume() that returned it began."""
        # 2. Parse it: the rows to write, and the records that do not fit the contract.
        batch, dead = build_batch(records, self.topics)
        # 3. Dead letters first, acknowledged by the broker: the offsets written next pass them.
        if dead:
            self.dead_letters.send(dead)
        # 4. Rows and offsets into Postgres in one transaction.
        self.write(batch, records)
        # 5. Commit to the consumer group, for lag tools only.
        self.commit_to_group(batch)
        self.account(batch, len(records), len(dead), started)

    def write(self, batch: Batch, records: list[Message]) -> None:
        try:
            self.database.run(lambda conn: store.write_batch(conn, batch))
        except ROW_ERRORS as error:
            log.error("batch refused by Postgres (%s); writing its records one by one", first_line(error))
            self.write_one_by_one(records)

    def write_one_by_one(self, records: list[Message]) -> None:
        """The slow path after a refused batch: a transaction per record, each with its own
        offset, so that only the record Postgres refuses is dead-lettered."""
        for message in records:
            single, _ = build_batch([message], self.topics)  # a record that does not parse was dead-lettered already
            try:
                self.database.run(lambda conn, batch=single: store.write_batch(conn, batch))
            except ROW_ERRORS as error:
                self.dead_letters.send([DeadLetter(message, f"refused by Postgres: {first_line(error)}",
                                                   "refused_by_postgres")])
                offset_only = Batch()
                offset_only.advance(message.topic(), message.partition(), message.offset())
                self.database.run(lambda conn, batch=offset_only: store.write_batch(conn, batch))

    def commit_to_group(self, batch: Batch) -> None:
        """Positions come from Postgres on every assignment, never from here."""
        offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in batch.next_offsets.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as error:
            log.debug("group commit failed (harmless): %s", error)

    def account(self, batch: Batch, records: int, dead: int, started: float) -> None:
        self.monitor.written(batch.next_offsets)
        self.monitor.events.inc(records)
        self.monitor.batch_seconds.observe(time.monotonic() - started)
        self.progress.add(records, dead, time.monotonic() - started)
        log.debug("batch: %d records, %d bookings, %d history, %d trips, %d dead-lettered in %.1f ms",
                  records, len(batch.bookings), len(batch.history), len(batch.trips), dead,
                  (time.monotonic() - started) * 1000)

    def close(self) -> None:
        self.on_close()
        # Leaves the group at once so partitions move without waiting, unless the membership
        # is static (sink_instance_id): then they wait for this instance to come back.
        self.consumer.close()
        self.dead_letters.close()
        self.database.close()
        log.info("sink stopped: %s", self.progress.summary())


def build_batch(records: list[Message], topics: Topics) -> tuple[Batch, list[DeadLetter]]:
    batch = Batch()
    dead: list[DeadLetter] = []
    for message in records:
        try:
            batch.add(parse_record(topics.event_type(message.topic()), message.value()))
        except Invalid as error:
            dead.append(DeadLetter(message, str(error)))
        batch.advance(message.topic(), message.partition(), message.offset())
    return batch, dead


def is_error(message: Message) -> bool:
    error = message.error()
    if error is None:
        return False
    if error.fatal():
        raise KafkaException(error)
    log.warning("consumer: %s", error)
    return True


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable url>"
    return f"{info.get('host', '')}:{info.get('port', '')}/{info.get('dbname', '')}"


def bootstrap(settings: Settings, database_url: str) -> Sink:
    """Settings in, a sink out: its Kafka clients and Postgres connection, SIGTERM and
    SIGINT wired to stop it, and its monitor served over HTTP until it closes."""
    consumer = Consumer(sink_consumer_config(settings))
    monitor = Monitor(partial(watermarks, consumer))
    shutdown = Shutdown(monitor.beat)
    database = Database(database_url, monitor, shutdown)
    topics = Topics.of(settings)
    dead_letters = DeadLetters(Producer(sink_dead_letter_producer_config(settings)), topics.dead_letters, monitor,
                               shutdown)
    signal.signal(signal.SIGTERM, shutdown.request)
    signal.signal(signal.SIGINT, shutdown.request)
    server = serve(monitor.registry, monitor.health, settings.sink_http_host, settings.sink_http_port, "sink")
    return Sink(settings, topics, consumer, database, dead_letters, monitor, shutdown, on_close=server.shutdown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sinks.main", description="Postgres sink of OpenRide Booking")
    parser.add_argument("--database-url", default=None, help="default: settings.database_url (DATABASE_URL)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    bootstrap(settings, args.database_url or settings.database_url).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
