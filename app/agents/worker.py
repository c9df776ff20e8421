"""The stream processor: a faust worker whose agent owns the command topic's partitions
and the trip states on them. Run: `python -m app.agents.worker worker -l info`.

The agent takes the commands a batch at a time (what has come, up to
WORKER_BATCH_RECORDS, the partitions in turn: app.agents.faust_app.FairIntake) and makes
each batch durable before anything of it is acknowledged or committed (app.agents.batch); the tables are read and written in
their RocksDB directly (app.agents.local), and the offsets are committed by the worker,
not by faust (app.agents.faust_app.WorkerConsumer). Each agent keeps concurrency 1:
the partitions' order is the order of the log.

Several workers share the partitions (same WORKER_ID, one WORKER_DATADIR each). The
group's leader also emits the clock ticks (app.agents.expiry): faust already elects one
leader per group (the owner of its leader topic's only partition), so no separate process
has to be deployed, kept single and watched; when the leader dies, the next rebalance
makes another worker leader. Ticks from two leaders during a rebalance are harmless (a
second tick expires nothing new); no leader means no worker consumes either.
"""

import asyncio
import logging
import os
import sys
import time
from collections.abc import Mapping

import faust
from faust.types import TP

from app.agents.batch import EXIT_BATCH_FAILED, Batches, Durable, Output, Positions, Processor
from app.agents.expiry import tick_value
from app.agents.faust_app import FairIntake, WorkerApp, WorkerConsumer, WorkerTableManager
from app.agents.gaps import BrokerLog, ContiguousCommands
from app.agents.local import RocksTables
from app.agents.monitor import WorkerMonitor
from app.agents.processor import Record, forward_trip
from app.agents.produce import BATCH_BYTES, BatchProducer
from app.config import get_settings
from app.models import topics
from app.tables.partition import Partition
from app.tables.store import TripStore
from app.tables.trips import HOLD_DUE, TRIP_STATE, hold_due_table, trip_state_table
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
    producer_max_batch_size=BATCH_BYTES,  # app.agents.produce
    producer_max_request_size=4 * BATCH_BYTES,
    consumer_max_fetch_size=settings.worker_fetch_partition_bytes,
    table_standby_replicas=settings.worker_standby_replicas,
    topic_replication_factor=settings.topic_replication_factor,
    # Every topic exists before the agents start (app.topics, declare_internal_topics).
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

commands = app.topic(topics.COMMANDS, key_serializer="raw", value_serializer="raw",
                     partitions=settings.command_partitions)
trips_catalog = app.topic(topics.TRIPS, key_serializer="raw", value_serializer="raw",
                          partitions=settings.command_partitions)
tables = {TRIP_STATE: trip_state_table(app, settings), HOLD_DUE: hold_due_table(app, settings)}
local = RocksTables(tables)


def open_partition(number: int) -> Partition:
    return Partition.over(number, local.stored(TRIP_STATE, number), local.stored(HOLD_DUE, number))


positions = Positions()
durable = Durable(BatchProducer(app), {name: table.changelog_topic_name for name, table in tables.items()}, local)
guard = ContiguousCommands(BrokerLog(settings))
monitor = WorkerMonitor(app, settings, guard.positions)
app.sensors.add(monitor)
batches = Batches(Processor(TripStore(settings.worker_trips_cached), policy, open_partition, monitor.handled), guard,
                  durable, positions, monitor.dead_lettered, monitor.batched)


class Rate:
    """Commands processed (ticks included), logged as commands/s now and then."""

    def __init__(self) -> None:
        self.records, self.batches, self.since = 0, 0, time.monotonic()

    def report(self) -> None:
        now = time.monotonic()
        records, count = batches.stats.records - self.records, batches.stats.batches - self.batches
        if records:
            log.info("processed %d commands in %.1f s: %.0f commands/s, %.0f per batch", records, now - self.since,
                     records / (now - self.since), records / count)
        self.records, self.batches, self.since = batches.stats.records, batches.stats.batches, now


rate = Rate()


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


intakes: list[FairIntake] = []  # the agent's (one: concurrency 1)


@app.agent(commands, concurrency=1)
async def process_commands(stream: faust.StreamT) -> None:
    intake = FairIntake(stream, app.consumer, per_partition=2 * settings.worker_batch_records)
    intakes[:] = [intake]
    async for events in intake.batches(settings.worker_batch_records):
        await run_or_die([record_of(event) for event in events])
        for event in events:
            event.ack()  # only so that a rebalance waits for the batch in hand: see WorkerConsumer


async def run_or_die(records: list[Record]) -> None:
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


@app.agent(trips_catalog, concurrency=1)
async def forward_trips(stream: faust.StreamT) -> None:
    async for event in stream.events():
        record = record_of(event)
        outputs: list[Output] = []
        forward_trip(record, lambda *sent: outputs.append(Output(*sent)))
        for output in outputs:
            if output.topic == topics.DEAD_LETTERS:
                monitor.dead_lettered(output.headers)
        try:
            await durable.produce_all(outputs)
        except Exception:
            die(f"forwarding trips record {record.topic}[{record.partition}]@{record.offset} failed")
        positions.advance({(record.topic, record.partition): record.offset + 1})


@app.task
async def commit_positions() -> None:
    """Commits what the batches report done, as soon as they do (app.agents.batch)."""
    consumer = app.consumer
    assert isinstance(consumer, WorkerConsumer)
    while True:
        await positions.changed.wait()
        positions.changed.clear()
        await consumer.commit_handled({TP(*place): offset for place, offset in positions.take().items()})


@app.on_partitions_revoked.connect
async def hand_over(sender: faust.App, revoked: set[TP], **_: object) -> None:
    """faust has waited for the batch in hand (its messages acknowledged); commit what
    the partitions' batches did before another worker starts on them, and forget them."""
    places = [(tp.topic, tp.partition) for tp in revoked if tp.topic in (commands.get_topic_name(),
                                                                        trips_catalog.get_topic_name())]
    consumer = app.consumer
    assert isinstance(consumer, WorkerConsumer)
    await consumer.commit_handled({TP(*place): offset for place, offset in positions.take(places).items()})
    positions.forget(places)
    guard.forget(places)
    for intake in intakes:
        intake.forget({TP(*place) for place in places})
    batches.processor.forget([partition for topic, partition in places if topic == commands.get_topic_name()])


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
    until a metadata refresh minutes later: a worker whose first join missed its leader
    topic had no ticks, and one that missed a changelog could not write its table; faust
    sends its CreateTopics to the broker its client takes for the controller, under KRaft
    any broker, and a worker started while that one was down failed to start (a chaos
    run); and it sets no min.insync.replicas. The admin client here asks any broker that
    answers, creates only what is missing, and waits until every broker lists it."""
    names = [table.changelog_topic_name for table in app.tables.values()]
    ensure_topics(settings, internal_topic_specs(settings, names, app._leader_assignor._leader_topic_name))


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
    app.main()


if __name__ == "__main__":
    main()
