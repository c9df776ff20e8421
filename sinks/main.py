"""`python -m sinks.main`: persist the lifecycle topics and trip.updated into Postgres.

Exactly-once in effect, with at-least-once delivery underneath:
- the offsets live in Postgres (`sink_offsets`), written in the same transaction as the
  rows, and each assigned partition is positioned from there, never from the consumer
  group's committed offsets (those are committed too, but only so lag tools see them);
- rows are merged idempotently and order-independently (see sinks.store), so a batch
  applied twice, or events of one booking arriving out of order across topics, change
  nothing.
A record that does not fit the contract goes to the dead-letter topic and its offset
advances with the batch. Postgres down: the same batch is retried with backoff, and
nothing advances until it is written.
Lag per partition and health are served over HTTP (sinks.monitor).
"""

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from app.config import Settings, get_settings
from app.wire import topics
from app.monitoring import serve
from sinks import store
from sinks.monitor import Monitor
from sinks.events import SUBSCRIBED, Batch, Invalid, parse_record

log = logging.getLogger("sinks.main")

PROGRESS_EVERY_SECONDS = 5.0
# An idle sink checks Postgres this often, so readiness and the gauge tell the truth
# even when no events arrive.
PING_EVERY_SECONDS = 5.0
BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 5.0
SESSION_TIMEOUT_MS = 10_000
# About a full batch of events (SINK_BATCH_SIZE records of a few hundred bytes).
FETCH_MIN_BYTES = 1 << 20
# Errors in the data of a row (a value Postgres refuses): retrying the same batch cannot
# succeed, so the batch is split to find the record and dead-letter it.
ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError)

T = TypeVar("T")


class Stopping(Exception):
    """Raised out of a wait when SIGTERM asked the sink to stop."""


@dataclass(slots=True)
class DeadLetter:
    message: Message
    reason: str
    code: str = "invalid_event"  # or refused_by_postgres: its dlq-code header
    too_large: bool = False  # the broker refused the copy: send it without the value


class Sink:
    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.database_url = database_url
        self.stopping = False
        self.conn: psycopg.Connection | None = None
        self.consumer = Consumer(consumer_config(settings))
        self.producer = Producer(producer_config(settings))
        self.progress = Progress()
        self.monitor = Monitor(self.watermarks)
        self.database_ok_at = 0.0  # time.monotonic() of the last Postgres operation that succeeded

    # -- lifecycle --------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> None:
        server = serve(self.monitor.registry, self.monitor.health, self.settings.sink_http_host,
                       self.settings.sink_http_port, "sink")
        try:
            # Postgres first: a sink that cannot write should not take partitions from one that can.
            self.with_database(store.ping)
            self.consumer.subscribe(list(SUBSCRIBED), on_assign=self.on_assign, on_revoke=self.on_revoke)
            log.info("sink started: group %s, %d topics, database %s", self.settings.sink_group, len(SUBSCRIBED),
                     redact(self.database_url))
            while not self.stopping:
                self.run_once()
        except Stopping:
            log.warning("stopped while waiting for Postgres or Kafka; what was not written is read again on restart")
        finally:
            server.shutdown()
            self.close()

    def run_once(self) -> None:
        self.monitor.beat()
        started = time.monotonic()
        messages = self.consumer.consume(num_messages=self.settings.sink_batch_size,
                                         timeout=self.settings.sink_batch_wait_ms / 1000)
        records = [m for m in messages if not is_error(m)]
        if records:
            self.process(records, started)
        elif time.monotonic() - self.database_ok_at > PING_EVERY_SECONDS:
            self.with_database(store.ping)
        self.progress.maybe_report()

    def close(self) -> None:
        # Leaves the group at once so partitions move without waiting, unless the membership
        # is static (sink_instance_id): then they wait for this instance to come back.
        self.consumer.close()
        self.producer.flush(5)
        if self.conn is not None:
            self.conn.close()
        log.info("sink stopped: %s", self.progress.summary())

    # -- one batch --------------------------------------------------------------------

    def process(self, records: list[Message], started: float) -> None:
        """`started`: when the consume() that returned these records began."""
        batch, dead = build_batch(records)
        if dead:
            self.dead_letter(dead)
        try:
            self.with_database(lambda conn: store.write_batch(conn, batch))
        except ROW_ERRORS as error:
            log.error("batch refused by Postgres (%s); writing its records one by one", first_line(error))
            self.write_one_by_one(records)
        self.commit_to_group(batch)
        self.monitor.written(batch.next_offsets)
        self.monitor.events.inc(len(records))
        self.monitor.batch_seconds.observe(time.monotonic() - started)
        self.progress.add(len(records), len(dead), time.monotonic() - started)
        log.debug("batch: %d records, %d bookings, %d history, %d trips, %d dead-lettered in %.1f ms",
                  len(records), len(batch.bookings), len(batch.history), len(batch.trips), len(dead),
                  (time.monotonic() - started) * 1000)

    def write_one_by_one(self, records: list[Message]) -> None:
        """The slow path after a refused batch: a transaction per record, each with its own
        offset, so that only the record Postgres refuses is dead-lettered."""
        for message in records:
            single, _ = build_batch([message])  # a record that does not parse was dead-lettered already
            try:
                self.with_database(lambda conn, batch=single: store.write_batch(conn, batch))
            except ROW_ERRORS as error:
                self.dead_letter([DeadLetter(message, f"refused by Postgres: {first_line(error)}",
                                             "refused_by_postgres")])
                offset_only = Batch()
                offset_only.advance(message.topic(), message.partition(), message.offset())
                self.with_database(lambda conn, batch=offset_only: store.write_batch(conn, batch))

    def commit_to_group(self, batch: Batch) -> None:
        """For lag monitoring only: positions come from Postgres on every assignment."""
        offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in batch.next_offsets.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as error:
            log.debug("group commit failed (harmless): %s", error)

    # -- dead letters -----------------------------------------------------------------

    def dead_letter(self, dead: list[DeadLetter]) -> None:
        """Produce and wait until the broker has acknowledged them all: the batch that
        advances past these records must not commit before they are safe."""
        pending = dead
        delay = BACKOFF_FIRST_SECONDS
        while pending:
            failed: list[DeadLetter] = []
            for letter in pending:
                self.produce_dead_letter(letter, failed)
            while self.producer.flush(1.0) > 0:  # undelivered ones fail by delivery.timeout.ms
                self.monitor.beat()
                if self.stopping:
                    raise Stopping
            if failed:
                log.warning("%d dead letters not delivered; retrying", len(failed))
                self.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)
            pending = failed
        self.monitor.dead_letters.inc(len(dead))
        for letter in dead:
            m = letter.message
            log.warning("dead-lettered %s[%d]@%d: %s", m.topic(), m.partition(), m.offset(), letter.reason)

    def produce_dead_letter(self, letter: DeadLetter, failed: list[DeadLetter]) -> None:
        def on_delivery(error: KafkaError | None, _: Message) -> None:
            if error is not None:
                letter.too_large = letter.too_large or error.code() == KafkaError.MSG_SIZE_TOO_LARGE
                failed.append(letter)

        m = letter.message
        headers = list(m.headers() or []) + [
            ("dlq-code", letter.code.encode()),
            ("dlq-reason", letter.reason.encode()),
            ("dlq-topic", m.topic().encode()),
            ("dlq-partition", str(m.partition()).encode()),
            ("dlq-offset", str(m.offset()).encode()),
        ]
        if letter.too_large:
            headers.append(("dlq-value-dropped", b"too large to copy; read it at dlq-topic/partition/offset"))
        value = None if letter.too_large else m.value()
        while True:
            try:
                self.producer.produce(topics.DEAD_LETTERS, key=m.key(), value=value, headers=headers,
                                      on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(0.1)
            except KafkaException as error:
                if error.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE or letter.too_large:
                    raise
                letter.too_large = True
                value = None
                headers.append(("dlq-value-dropped", b"too large to copy; read it at dlq-topic/partition/offset"))

    # -- Postgres ---------------------------------------------------------------------

    def with_database(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run `work` on the connection, reconnecting and retrying while Postgres is
        unreachable (exponential backoff up to 5 s). Row errors are the caller's."""
        delay = BACKOFF_FIRST_SECONDS
        while True:
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = store.connect(self.database_url)
                result = work(self.conn)
                self.database_ok_at = time.monotonic()
                self.monitor.postgres(True)
                return result
            except ROW_ERRORS:
                raise
            except psycopg.Error as error:
                self.monitor.postgres(False)
                log.warning("Postgres unavailable or failing (%s: %s); retrying in %.1f s", type(error).__name__,
                            first_line(error), delay)
                self.drop_connection()
                self.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    def drop_connection(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
        self.conn = None

    def sleep(self, seconds: float) -> None:
        """A wait that SIGTERM cuts short."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.monitor.beat()
            if self.stopping:
                raise Stopping
            time.sleep(min(0.05, deadline - time.monotonic()))

    # -- rebalancing ------------------------------------------------------------------

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start each partition where Postgres says; a partition never written starts at
        its beginning, so a new database is rebuilt from the whole log."""
        wanted = [(p.topic, p.partition) for p in partitions]
        stored = self.with_database(lambda conn: store.stored_offsets(conn, wanted))
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

    def watermarks(self, partition: tuple[str, int]) -> tuple[int, int]:
        """As of the consumer's last fetch response (no broker call)."""
        try:
            return self.consumer.get_watermark_offsets(TopicPartition(*partition), cached=True)
        except (KafkaException, RuntimeError):  # RuntimeError: the consumer is closed
            return -1, -1


# -- pure helpers -----------------------------------------------------------------------


def build_batch(records: list[Message]) -> tuple[Batch, list[DeadLetter]]:
    batch = Batch()
    dead: list[DeadLetter] = []
    for message in records:
        try:
            batch.add(parse_record(message.topic(), message.value()))
        except Invalid as error:
            dead.append(DeadLetter(message, str(error)))
        batch.advance(message.topic(), message.partition(), message.offset())
    return batch, dead


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def is_error(message: Message) -> bool:
    error = message.error()
    if error is None:
        return False
    if error.fatal():
        raise KafkaException(error)
    log.warning("consumer: %s", error)
    return True


def consumer_config(settings: Settings) -> dict[str, object]:
    config: dict[str, object] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": settings.sink_group,
        "client.id": "openride-sink",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # A killed sink's partitions move after 10 s rather than the default 45 s; a batch
        # takes milliseconds, so heartbeats are never late for the sink's own sake.
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        # Only what producers committed: a transactional producer's aborted events are not facts.
        "isolation.level": "read_committed",
        # The broker answers a fetch once it holds a batch's worth of events or the batch
        # wait is over, instead of as soon as one event arrives: at 600 commands/s that cut
        # the broker's CPU per command by a quarter (docs/benchmarks/NOTES.md).
        "fetch.min.bytes": FETCH_MIN_BYTES,
        "fetch.wait.max.ms": settings.sink_batch_wait_ms,
    }
    if settings.sink_instance_id:
        config["group.instance.id"] = settings.sink_instance_id
    return config


def producer_config(settings: Settings) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": "openride-sink-dlq",
        "enable.idempotence": True,
        "linger.ms": 5,
    }


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable url>"
    return f"{info.get('host', '')}:{info.get('port', '')}/{info.get('dbname', '')}"


class Progress:
    """Counts events; reports a rate every few seconds at INFO, and one for the whole run."""

    def __init__(self) -> None:
        self.total = 0
        self.dead = 0
        self.busy_seconds = 0.0  # consuming and writing non-empty batches, idle polls excluded
        self.window_events = 0
        self.window_start = time.monotonic()

    def add(self, events: int, dead: int, busy_seconds: float) -> None:
        self.total += events
        self.dead += dead
        self.busy_seconds += busy_seconds
        self.window_events += events

    def maybe_report(self) -> None:
        elapsed = time.monotonic() - self.window_start
        if elapsed < PROGRESS_EVERY_SECONDS:
            return
        if self.window_events:
            log.info("applied %d events in %.1f s (%.0f events/s); %d total, %d dead-lettered",
                     self.window_events, elapsed, self.window_events / elapsed, self.total, self.dead)
        self.window_events = 0
        self.window_start = time.monotonic()

    def summary(self) -> str:
        """The rate while there was work: what the sink can do when draining a backlog."""
        rate = f"{self.total / self.busy_seconds:.0f} events/s" if self.busy_seconds else "n/a events/s"
        return f"{self.total} events ({self.dead} dead-lettered) in {self.busy_seconds:.2f} s busy, {rate}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sinks.main", description="Postgres sink of OpenRide Booking")
    parser.add_argument("--database-url", default=None, help="default: settings.database_url (DATABASE_URL)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    sink = Sink(settings, args.database_url or settings.database_url)
    signal.signal(signal.SIGTERM, sink.request_stop)
    signal.signal(signal.SIGINT, sink.request_stop)
    sink.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
