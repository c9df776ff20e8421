"""The stream processor: a faust worker whose agent owns the command topic's partitions
and the trip states on them. Run: `python -m app.agents.worker worker -l info`.

Each agent keeps concurrency 1: it writes tables, and faust may commit past an in-flight
message otherwise (faust-streaming issue #606).

Several workers share the partitions (same WORKER_ID, one WORKER_DATADIR each). The
group's leader also emits the clock ticks (app.agents.expiry): faust already elects one
leader per group (the owner of its leader topic's only partition), so no separate process
has to be deployed, kept single and watched; when the leader dies, the next rebalance
makes another worker leader. Ticks from two leaders during a rebalance are harmless (a
second tick expires nothing new); no leader means no worker consumes either.
"""

import asyncio
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import faust
from faust.exceptions import PartitionsMismatch
from faust.types import TP

from app.agents.expiry import process_record, tick_value
from app.agents.faust_app import WorkerApp, WorkerTableManager
from app.agents.gaps import BrokerLog, ContiguousCommands
from app.agents.monitor import WorkerMonitor
from app.agents.processor import Handled, Record, dead_letter, forward_trip
from app.config import get_settings
from app.models import topics
from app.tables.store import TripStore
from app.tables.trips import hold_due_table, trip_state_table
from app.topics import ensure_topics, internal_topic_specs

log = logging.getLogger(__name__)
settings = get_settings()
policy = settings.policy()

app = WorkerApp(
    settings.worker_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    store="rocksdb://",
    datadir=str(settings.worker_datadir),
    topic_partitions=settings.command_partitions,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    broker_commit_interval=settings.worker_commit_interval_seconds,
    consumer_max_fetch_size=settings.worker_fetch_partition_bytes,
    table_standby_replicas=settings.worker_standby_replicas,
    topic_replication_factor=settings.topic_replication_factor,
    # Every topic exists before the agents start (app.topics, declare_internal_topics).
    topic_allow_declare=False,
    consumer_group_instance_id=settings.worker_instance_id or None,
    broker_session_timeout=settings.worker_session_timeout_seconds,
    broker_heartbeat_interval=settings.worker_heartbeat_seconds,
    stream_recovery_delay=0.5,
    web_enabled=False,
    TableManager=WorkerTableManager,
    fetch_max_wait_ms=settings.worker_fetch_max_wait_ms,
)

commands = app.topic(topics.COMMANDS, key_serializer="raw", value_serializer="raw",
                     partitions=settings.command_partitions)
trips_catalog = app.topic(topics.TRIPS, key_serializer="raw", value_serializer="raw",
                          partitions=settings.command_partitions)
trip_states = TripStore(trip_state_table(app, settings), settings.worker_trips_cached)
holds_due = hold_due_table(app, settings)
_topics_by_name: dict[str, faust.TopicT] = {}


class Rate:
    """Commands processed (ticks not counted), logged as commands/s now and then."""

    def __init__(self) -> None:
        self.commands = 0
        self.since = time.monotonic()

    def count(self, record: Record) -> None:
        if record.key != topics.TICK_KEY:
            self.commands += 1

    def report(self) -> None:
        now = time.monotonic()
        if self.commands:
            log.info("processed %d commands in %.1f s: %.0f commands/s",
                     self.commands, now - self.since, self.commands / (now - self.since))
        self.commands, self.since = 0, now


rate = Rate()


def send_soon(topic: str, key: bytes, value: bytes, partition: int | None, headers: Mapping[str, bytes]) -> None:
    """Into the same producer buffer as the table's changelog records, after them."""
    if topic == topics.DEAD_LETTERS:
        monitor.dead_lettered(headers)
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


contiguous = ContiguousCommands(BrokerLog(settings))
monitor = WorkerMonitor(app, settings, contiguous.positions)
app.sensors.add(monitor)


@app.agent(commands, concurrency=1)
async def process_commands(stream: faust.StreamT) -> None:
    async for event in stream.events():
        for record in await contiguous.through(record_of(event)):
            await process_when_tables_ready(record)


@app.on_partitions_revoked.connect
async def forget_revoked(sender: faust.App, revoked: set[TP], **_: object) -> None:
    contiguous.forget((tp.topic, tp.partition) for tp in revoked)


async def process_when_tables_ready(record: Record, attempts: int = 60) -> None:
    """faust checks a table's changelog partitions on the table's first write; just after
    a (re)start its metadata may not list the changelog topic yet (PartitionsMismatch with
    0 partitions). That is not the record's fault: wait and handle it again (a duplicate
    by then if it got halfway, so nothing is applied twice) instead of dead-lettering it."""
    for _ in range(attempts - 1):
        try:
            return process_safely(record)
        except PartitionsMismatch as error:
            log.warning("tables not ready for %s[%d]@%d (%s); retrying", record.topic, record.partition,
                        record.offset, str(error).splitlines()[0])
            await asyncio.sleep(0.5)
    return process_safely(record)


@app.agent(trips_catalog, concurrency=1)
async def forward_trips(stream: faust.StreamT) -> None:
    async for event in stream.events():
        forward_trip(record_of(event), send_soon)


def process_safely(record: Record) -> None:
    """A bug met by one record must not stop the partition: it goes to dead letters."""
    started = time.perf_counter()
    handled: Handled | None = None
    try:
        handled = process_record(record, trip_states, holds_due, send_soon, policy)
    except PartitionsMismatch:
        raise
    except Exception as error:  # noqa: BLE001 - the worker must keep going
        log.exception("command at %s[%d]@%d failed", record.topic, record.partition, record.offset)
        dead_letter(record, send_soon, "internal_error", f"{type(error).__name__}: {error}")
    monitor.handled(record, handled, time.perf_counter() - started)
    rate.count(record)


@app.timer(interval=settings.tick_interval_seconds, on_leader=True)
async def emit_ticks() -> None:
    value = tick_value(round(time.time() * 1000))
    for partition in range(settings.command_partitions):
        await commands.send(key=topics.TICK_KEY, value=value, partition=partition)


@app.timer(interval=settings.worker_rate_log_seconds)
async def log_rate() -> None:
    rate.report()


def declare_internal_topics() -> None:
    """The topics faust would create at start, created here instead (faust is told not to:
    topic_allow_declare). faust's consumer may not see a topic faust has just created
    until a metadata refresh minutes later, and the first write to that table then fails
    (PartitionsMismatch, 0 partitions); it sends its CreateTopics to the broker its client
    takes for the controller, under KRaft any broker, and a worker started while that one
    was down failed to start (a chaos run); and it sets no min.insync.replicas. The admin
    client here asks any broker that answers, and creates only what is missing."""
    names = [table.changelog_topic_name for table in app.tables.values()]
    ensure_topics(settings, internal_topic_specs(settings, names, app._leader_assignor._leader_topic_name))


@contextmanager
def local_tables_kept_only_after_a_clean_stop(tabledir: Path, on_rebuild: Callable[[Path], None]) -> Iterator[None]:
    """RocksDB keeps each table write at once, but faust records how far the changelog
    holds them (the persisted offset) only as the broker acknowledges them. After a crash,
    recovery replays the changelog from that offset over local tables that may already
    hold later writes of the same keys; a trip's entries would then come from different
    points in time, which app/tables/store.py cannot repair. The changelog alone is a
    prefix of the writes, which it can. So:
    1. A mark is left next to the tables while a worker runs.
    2. It is removed only when faust stopped cleanly (exit code 0): its stop flushes the
       producer, so the local tables equal the changelog.
    3. A worker that finds the mark (the last one was killed or failed) deletes the local
       tables and rebuilds them from the changelog, as on an empty data dir."""
    mark = tabledir.with_name(tabledir.name + ".in-use")
    if mark.exists():
        log.warning("the last worker on %s did not stop cleanly: rebuilding its tables from the changelog", tabledir)
        shutil.rmtree(tabledir, ignore_errors=True)
        on_rebuild(tabledir)
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.touch()
    try:
        yield
    except SystemExit as stop:
        if stop.code in (0, None):
            mark.unlink()
        raise


def main() -> None:
    if sys.argv[1:2] != ["worker"]:
        return app.main()
    # faust's `worker` command turns its web server on unless told otherwise (whatever
    # web_enabled says). The worker serves only its own /metrics and health
    # (app.agents.monitor), and faust's fixed port would keep a second worker from
    # starting on the same host.
    if not any(arg.startswith("--with") for arg in sys.argv):
        sys.argv.append("--without-web")
    declare_internal_topics()
    with local_tables_kept_only_after_a_clean_stop(Path(app.conf.tabledir), monitor.started_by_rebuild):
        app.main()


if __name__ == "__main__":
    main()
