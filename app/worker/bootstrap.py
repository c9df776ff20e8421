"""The stream processor: a faust worker whose agent owns the command topic's partitions
and the trip states on them. Run: `python -m app.worker worker -l info`;
`build_worker` is the one place it is wired together, from the settings it is given.

The agent takes the commands a batch at a time (what has come, up to
WORKER_BATCH_RECORDS, the partitions in turn: app.worker.faust_app.FairIntake) and makes
each batch durable before anything of it is acknowledged or committed (app.worker.batch);
the tables are read and written in their RocksDB directly (app.worker.local), and the offsets are committed by the worker,
not by faust (app.worker.faust_app.WorkerConsumer). Each agent keeps concurrency 1:
the partitions' order is the order of the log.

Several workers share the partitions (same WORKER_ID, one WORKER_DATADIR each). The
group's leader also emits the clock ticks (app.worker.ticks): faust already elects one
leader per group (the owner of its leader topic's only partition), so no separate process
has to be deployed, kept single and watched; when the leader dies, the next rebalance
makes another worker leader. Ticks from two leaders during a rebalance are harmless (a
second tick expires nothing new); no leader means no worker consumes either.
"""

import asyncio
import logging
import os
import time
from collections.abc import Mapping

import faust
from faust.types import TP

from app.config import Settings
from app.tables.partition import Partition
from app.tables.store import TripStore
from app.tables.trips import HOLD_DUE, TRIP_STATE, hold_due_table, trip_state_table
from app.transport.admin import ensure_topics, internal_topic_specs
from app.wire.topics import TICK_KEY, Topics
from app.worker.batch import EXIT_BATCH_FAILED, Batches, Durable, Output, Positions, Processor
from app.worker.faust_app import FairIntake, WorkerApp, WorkerConsumer, WorkerTableManager
from app.worker.local import RocksTables
from app.worker.monitor import WorkerMonitor
from app.worker.ordering import BrokerLog, ContiguousCommands
from app.worker.processor import Record, forward_trip
from app.worker.produce import BATCH_BYTES, BatchProducer
from app.worker.ticks import tick_value

log = logging.getLogger(__name__)


def build_worker(settings: Settings) -> WorkerApp:
    """The worker's faust app, its agents, tasks and timers, wired from `settings`."""
    app = faust_app(settings)
    topics = Topics.of(settings)
    commands = app.topic(topics.commands, key_serializer="raw", value_serializer="raw",
                         partitions=settings.command_partitions)
    trips_catalog = app.topic(topics.trips, key_serializer="raw", value_serializer="raw",
                              partitions=settings.command_partitions)
    tables = {TRIP_STATE: trip_state_table(app, settings), HOLD_DUE: hold_due_table(app, settings)}
    local = RocksTables(tables)

    def open_partition(number: int) -> Partition:
        return Partition.over(number, local.stored(TRIP_STATE, number), local.stored(HOLD_DUE, number))

    positions = Positions()
    durable = Durable(BatchProducer(app), {name: table.changelog_topic_name for name, table in tables.items()},
                      local)
    guard = ContiguousCommands(BrokerLog(settings))
    monitor = WorkerMonitor(app, settings, guard.positions)
    app.sensors.add(monitor)
    processor = Processor(TripStore(settings.worker_trips_cached), settings.policy(), topics, open_partition,
                          monitor.handled)
    batches = Batches(processor, guard, durable, positions, monitor.dead_lettered, monitor.batched)
    rate = Rate(batches)
    intakes: list[FairIntake] = []  # the agent's (one: concurrency 1)

    @app.agent(commands, concurrency=1)
    async def process_commands(stream: faust.StreamT) -> None:
        intake = FairIntake(stream, app.consumer, per_partition=2 * settings.worker_batch_records)
        intakes[:] = [intake]
        async for events in intake.batches(settings.worker_batch_records):
            await run_or_die(batches, [record_of(event) for event in events])
            for event in events:
                event.ack()  # only so that a rebalance waits for the batch in hand: see WorkerConsumer

    @app.agent(trips_catalog, concurrency=1)
    async def forward_trips(stream: faust.StreamT) -> None:
        async for event in stream.events():
            record = record_of(event)
            outputs: list[Output] = []
            forward_trip(record, lambda *sent: outputs.append(Output(*sent)), topics)
            for output in outputs:
                if output.topic == topics.dead_letters:
                    monitor.dead_lettered(output.headers)
            try:
                await durable.produce_all(outputs)
            except Exception:
                die(f"forwarding trips record {record.topic}[{record.partition}]@{record.offset} failed")
            positions.advance({(record.topic, record.partition): record.offset + 1})

    @app.task
    async def commit_positions() -> None:
        """Commits what the batches report done, as soon as they do (app.worker.batch)."""
        while True:
            await positions.changed.wait()
            positions.changed.clear()
            await worker_consumer(app).commit_handled({TP(*place): offset for place, offset in positions.take().items()})

    @app.on_partitions_revoked.connect
    async def hand_over(sender: faust.App, revoked: set[TP], **_: object) -> None:
        """faust has waited for the batch in hand (its messages acknowledged); commit what
        the partitions' batches did before another worker starts on them, and forget them."""
        names = (commands.get_topic_name(), trips_catalog.get_topic_name())
        places = [(tp.topic, tp.partition) for tp in revoked if tp.topic in names]
        await worker_consumer(app).commit_handled({TP(*place): offset
                                                   for place, offset in positions.take(places).items()})
        positions.forget(places)
        guard.forget(places)
        for intake in intakes:
            intake.forget({TP(*place) for place in places})
        processor.forget([partition for topic, partition in places if topic == commands.get_topic_name()])

    @app.timer(interval=settings.tick_interval_seconds, on_leader=True)
    async def emit_ticks() -> None:
        value = tick_value(round(time.time() * 1000))
        for partition in range(settings.command_partitions):
            await commands.send(key=TICK_KEY, value=value, partition=partition)

    @app.timer(interval=settings.worker_rate_log_seconds)
    async def log_rate() -> None:
        rate.report()

    return app


def faust_app(settings: Settings) -> WorkerApp:
    return WorkerApp(
        settings.worker_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="rocksdb://",
        datadir=str(settings.worker_datadir),
        topic_partitions=settings.command_partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_batch_size=BATCH_BYTES,  # app.worker.produce
        producer_max_request_size=4 * BATCH_BYTES,
        consumer_max_fetch_size=settings.worker_fetch_partition_bytes,
        table_standby_replicas=settings.worker_standby_replicas,
        topic_replication_factor=settings.topic_replication_factor,
        # Every topic exists before the agents start (tools.create_topics, declare_internal_topics).
        topic_allow_declare=False,
        consumer_group_instance_id=settings.worker_instance_id or None,
        broker_session_timeout=settings.worker_session_timeout_seconds,
        broker_heartbeat_interval=settings.worker_heartbeat_seconds,
        # How long faust waits after a rebalance before it recovers (its own default is 3 s):
        # a rebalance that follows at once restarts the recovery anyway.
        stream_recovery_delay=0.1,
        web_enabled=False,
        TableManager=WorkerTableManager,
        fetch_max_wait_ms=settings.worker_fetch_max_wait_ms,
    )


def worker_consumer(app: faust.App) -> WorkerConsumer:
    consumer = app.consumer
    assert isinstance(consumer, WorkerConsumer)
    return consumer


class Rate:
    """Commands processed (ticks included), logged as commands/s now and then."""

    def __init__(self, batches: Batches) -> None:
        self.batches = batches
        self.records, self.count, self.since = 0, 0, time.monotonic()

    def report(self) -> None:
        now = time.monotonic()
        stats = self.batches.stats
        records, count = stats.records - self.records, stats.batches - self.count
        if records:
            log.info("processed %d commands in %.1f s: %.0f commands/s, %.0f per batch", records, now - self.since,
                     records / (now - self.since), records / count)
        self.records, self.count, self.since = stats.records, stats.batches, now


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


async def run_or_die(batches: Batches, records: list[Record]) -> None:
    try:
        await batches.run(records)
    except asyncio.CancelledError:
        raise  # stopping: nothing of the batch is acknowledged
    except BaseException:
        die(f"a batch of {len(records)} records of {sorted({(r.topic, r.partition) for r in records})} failed")


def die(what: str) -> None:
    """Ends the process at once: no faust shutdown step may acknowledge or commit anything
    more, and faust's supervisor would restart the agent past the batch instead."""
    log.critical("%s: stopping; nothing of it is committed, it is handled again on restart", what, exc_info=True)
    logging.shutdown()
    os._exit(EXIT_BATCH_FAILED)


def declare_internal_topics(app: faust.App, settings: Settings) -> None:
    """The topics faust would create at start, created here instead (faust is told not to:
    topic_allow_declare). faust's consumer may not see a topic faust has just created
    until a metadata refresh minutes later: a worker whose first join missed its leader
    topic had no ticks, and one that missed a changelog could not write its table; faust
    sends its CreateTopics to the broker its client takes for the controller, under KRaft
    any broker, so a worker started while that one is down fails to start; and it sets no
    min.insync.replicas. The admin client here asks any broker that
    answers, creates only what is missing, and waits until every broker lists it."""
    names = [table.changelog_topic_name for table in app.tables.values()]
    ensure_topics(settings, internal_topic_specs(settings, names, app._leader_assignor._leader_topic_name))
