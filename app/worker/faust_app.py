"""The worker's faust.App, with some of faust's behaviours changed.

1. faust (0.15.3) asks `App.maybe_start_producer()` for the producer before each record it
   sends: the changelog records of the tables, and the events and replies the agent sends.
   That method is wrapped in mode's `stampede`, which yields to the event loop three times
   per call (`asyncio.sleep(0)`) even when the producer has long been running: about a
   dozen extra event-loop turns per command. Once the producer is started there is
   nothing to protect, so it is returned at once; before that, faust's own method runs.
2. After a rebalance, faust's recovery lets the command partitions be read before it has
   placed them at their committed offsets; `SeekFirstRecovery` places them first.
3. faust builds its consumer with `fetch_max_wait_ms=1500`, hard-coded; `ShortFetchConsumer`
   takes the worker's own (WORKER_FETCH_MAX_WAIT_MS), see `ShortFetchConsumerThread`.
4. faust fetches as much of every partition at a time (`consumer_max_fetch_size`), the
   changelogs it recovers from and the commands alike; `SeekFirstRecovery` raises it to
   faust's 1 MiB while recovering, and puts the worker's own back after.
5. faust replays a changelog one record at a time; `BulkRecovery` loads what the local
   store lacks in large RocksDB write batches first (app.worker.local).
6. faust commits the offsets its streams acknowledged, and can commit past a record no
   one handled (below); `WorkerConsumer` commits only what the worker's batches say is
   done (`commit_handled`, app.worker.batch), and nothing else.
"""

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping
from typing import cast

import aiokafka
import faust
from faust.app.base import App as _App
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ConsumerT, ProducerT, TransportT
from faust.types.transports import TPorTopicSet
from mode.utils.futures import stampede

from app.worker.local import LoadProgress, load_changelogs


class WorkerApp(faust.App):
    def __init__(self, *args: object, fetch_max_wait_ms: int, **kwargs: object) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> TransportT:
        return ShortFetchTransport(self.conf.broker_consumer, self)

    async def maybe_start_producer(self) -> ProducerT:
        producer = self.producer
        if producer.started and not self.in_transaction:
            return producer
        return await self._start_producer()

    @stampede
    async def _start_producer(self) -> ProducerT:
        return await faust.App.maybe_start_producer.__wrapped__(self)


CHANGELOG_FETCH_BYTES = 1024 * 1024  # faust's default consumer_max_fetch_size


class SeekFirstRecovery(Recovery):
    """faust's end of recovery, with the command partitions sought before they are resumed.

    faust resumes the stream partitions and only then seeks them to their committed
    offsets, while the flow it turned on to read the changelogs is still on. Commands
    fetched in between reach the agent's queue; the seek rewinds the fetch position and
    faust's read offset, and resuming the flow clears the streams' queues. A command was
    then handled twice (fetched again after the seek) or never (cleared from the queue
    after a later fetch had moved the read offset past it, below which faust drops what it
    reads again): both seen after rebuilds under load. faust-streaming #216/#217 fixed the
    same race only for apps without tables. Here, once the tables are recovered:

    1. the tables' own callbacks run, as in faust;
    2. a rebalance that started meanwhile wins: it will recover again;
    3. the stream partitions, still paused, are sought to the committed offsets (and
       faust's read offsets with them): nothing of theirs has been fetched yet;
    4. the flow resumes, clearing the streams' queues, which hold nothing of those partitions;
    5. only now are the stream partitions resumed: their first fetch starts at the
       committed offsets.

    This narrows faust's window; it does not close every one: faust may still hand a
    partition's records from past the committed offset after a rebuild. What
    makes each command handled once and in order is the agent's guard (app.worker.ordering).

    Recovery also sets how much of a partition each fetch brings. The worker's own
    (WORKER_FETCH_PARTITION_BYTES) is smaller than faust's, so that a partition with
    nothing waiting is not served after the whole backlog of the others
    (docs/processor.md, "Catching up"); but a busy trip's changelog entries add up to many
    KiB, and read a few KiB at a time a restart takes twice as long (docs/benchmarks/NOTES.md).
    So while the changelogs are read, faust's 1 MiB; once they are, the worker's own again.
    """

    def _set_recovery_started(self) -> None:
        super()._set_recovery_started()
        self._fetch_per_partition(CHANGELOG_FETCH_BYTES)

    def _set_recovery_ended(self) -> None:
        super()._set_recovery_ended()
        self._fetch_per_partition(self.app.conf.consumer_max_fetch_size)

    def _fetch_per_partition(self, max_bytes: int) -> None:
        thread = cast(faust_aiokafka.Consumer, self.app.consumer)._thread
        cast(ShortFetchConsumerThread, thread).fetch_per_partition(max_bytes)

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        consumer = self.app.consumer
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        await self._tables_recovery_completed()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again: generation %r, recovered %r",
                             self.app.consumer_generation_id, generation_id)
            return
        assignment = consumer.assignment()
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        self.completed.set()
        self.app.flow_control.resume()
        consumer.resume_flow()
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        await cast(_App, self.app)._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")

    async def _tables_recovery_completed(self) -> None:
        callbacks = [asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table],
                                                                       self.standbys_for_table[table]))
                     for table in self.tables.values()]
        if callbacks:
            await asyncio.wait(callbacks)


class BulkRecovery(SeekFirstRecovery):
    """Recovery that loads what each active table partition's local store lacks (all of
    it on an empty disk, the tail after a crash) with `app.worker.local.load_changelogs`
    before faust's own replay, which then finds nothing left to read. faust replays a
    record at a time on the event loop (about 7.5k records/s here, 17 s for a worker of
    10,000 trips); standby partitions still go through faust's loop, which keeps them
    close behind their changelogs all along.

    The hook is faust's `_build_offsets` (faust/tables/recovery.py): for the active
    partitions it runs after the highwaters are known and before faust seeks and reads;
    `destination` holds each partition's last applied offset, -1 if none."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.progress = LoadProgress()  # a metrics endpoint can read it

    async def _build_offsets(self, consumer: ConsumerT, tps: set[TP], destination: Counter[TP], title: str) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title != "active" or not tps:
            return
        ranges = {(tp.topic, tp.partition): (destination[tp] + 1, self.active_highwaters[tp])
                  for tp in tps if self.active_highwaters.get(tp, -1) > destination[tp]}
        # The test of a standby's takeover reads this line.
        self.log.info("changelogs of %d active partitions: %d records to load, the local store has the rest",
                      len(tps), sum(last - first + 1 for first, last in ranges.values()))
        if not ranges:
            return
        databases = {(tp.topic, tp.partition): self.tp_to_table[tp].data._db_for_partition(tp.partition)
                     for tp in tps if (tp.topic, tp.partition) in ranges}
        offset_key = next(iter(self.tables.values())).data.offset_key
        bootstrap = ",".join(f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker)
        loaded, seconds = self.progress.records_loaded, self.progress.seconds
        await asyncio.to_thread(load_changelogs, bootstrap, ranges, lambda *place: databases[place], offset_key,
                                self.progress)
        for tp in tps:
            if (tp.topic, tp.partition) in ranges:
                destination[tp] = self.active_highwaters[tp]
        self.log.info("loaded %d changelog records in bulk in %.2f s", self.progress.records_loaded - loaded,
                      self.progress.seconds - seconds)


class FairIntake:
    """What faust hands an agent, kept per partition until a batch takes it, and the
    batches taken from the partitions in turn.

    faust hands an agent the records in the order they were fetched, across partitions,
    through one queue: a command on a partition with nothing else waiting would wait
    behind everything fetched before it, the other partitions' whole backlog when a worker
    catches up. So the records are taken off the stream as they come (in the background,
    as faust's own `take` does) and kept per partition, and a batch, once that queue is
    empty, takes an equal share of each partition that has any: such a command is in
    the next batch. A partition with
    `per_partition` records waiting is no longer fetched until half of them are taken
    (faust's own flow control: `Consumer.on_buffer_full` / `on_buffer_drop`). Records stay
    in their partition's order. Acknowledging them is the caller's (the stream's acks are
    off)."""

    def __init__(self, stream: faust.StreamT, consumer: ConsumerT, per_partition: int) -> None:
        self.stream = stream
        self.consumer = consumer
        self.per_partition = per_partition
        self.waiting: dict[TP, deque[faust.EventT]] = {}
        self.not_fetched: set[TP] = set()
        self.arrived = asyncio.Event()
        stream.enable_acks = False
        stream.add_processor(self._keep)
        stream._enable_passive(aiter(stream.channel))  # faust's, as its `take` drains a stream

    def _keep(self, value: object) -> object:
        """A plain function: faust awaits a processor only when it returns an awaitable."""
        event = self.stream.current_event
        assert event is not None
        tp = TP(event.message.topic, event.message.partition)  # faust's own type, which its consumer asserts
        waiting = self.waiting.setdefault(tp, deque())
        waiting.append(event)
        if len(waiting) >= self.per_partition and tp not in self.not_fetched:
            self.not_fetched.add(tp)
            self.consumer.on_buffer_full(tp)
        self.arrived.set()
        return value

    async def batches(self, max_records: int) -> AsyncIterator[list[faust.EventT]]:
        queue = self.stream.channel.queue
        while True:
            await self.arrived.wait()
            while not queue.empty():  # what faust has queued, sorted out first
                await asyncio.sleep(0)
            batch = self.take(max_records)
            if not self.waiting:
                self.arrived.clear()
            yield batch

    def forget(self, tps: set[TP]) -> None:
        """Partitions revoked: faust fetches them again if they come back (it resets what it
        fetches at every assignment)."""
        self.not_fetched -= tps

    def take(self, max_records: int) -> list[faust.EventT]:
        batch: list[faust.EventT] = []
        while self.waiting and len(batch) < max_records:
            share = max(1, (max_records - len(batch)) // len(self.waiting))
            for tp in list(self.waiting):
                waiting = self.waiting[tp]
                batch.extend(waiting.popleft() for _ in range(min(share, len(waiting), max_records - len(batch))))
                if tp in self.not_fetched and len(waiting) <= self.per_partition // 2:
                    self.not_fetched.discard(tp)
                    self.consumer.on_buffer_drop(tp)
                if not waiting:
                    del self.waiting[tp]
        return batch


class WorkerTableManager(TableManager):
    """faust's table manager, recovering with `BulkRecovery`, and starting without
    faust's one-second sleep (there for tables an app declares after it starts: the
    worker declares its own when its module is imported)."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = BulkRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class ShortFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, its fetches parked on the broker for at most the worker's
    fetch wait instead of 1.5 s.

    aiokafka keeps one fetch in flight per broker, and leaves out of it every partition
    whose records the worker has not consumed yet. When a busy partition is a little
    behind, the next fetch therefore names only idle partitions and waits on the broker
    for data that does not come; the busy partition cannot be fetched again until it
    returns. With 1.5 s that stalls a hot trip's commands for up to 1.5 s at a time, with
    every process mostly idle, and each start-up request queues behind such a fetch. A short wait bounds the stall; what
    it costs is an empty fetch per wait while the partitions are idle.
    """

    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start(), when it builds its Fetcher: not started yet here.
        consumer._fetch_max_wait_ms = cast(WorkerApp, self.app).fetch_max_wait_ms
        return consumer

    def fetch_per_partition(self, max_bytes: int) -> None:
        """How much of one partition each fetch from now on brings. aiokafka's fetcher
        reads this attribute for every request it builds; it has no public setter."""
        self._ensure_consumer()._fetcher._max_partition_fetch_bytes = max_bytes
        self.log.info("fetching up to %d bytes of a partition at a time", max_bytes)


class WorkerConsumer(faust_aiokafka.Consumer):
    """faust's consumer, with `ShortFetchConsumerThread`, committing only what the worker
    hands it.

    faust commits, every commit interval and when it stops or rebalances, the offsets
    up to the last record its streams acknowledged with no gap before it. Two ways that
    commits a record never handled (faust/transport/consumer.py): `_new_offset` refuses
    only gaps of more than one, so with 10 committed and 11-13 acknowledged it commits
    14; and its streams acknowledge, unhandled, records fetched before a rebalance that
    are handed out after it (a new generation), which can fill such a gap. The worker
    acknowledges records only so that faust's rebalance waits for the batch in hand
    (`stream_wait_empty`); `commit` is therefore off, and `commit_handled` commits the
    positions the batches report, each the next offset to handle after a run of records
    handled in order, with every output on the broker (app.worker.batch)."""

    async def commit(self, topics: TPorTopicSet | None = None, start_new_transaction: bool = True) -> bool:
        return False

    async def commit_handled(self, offsets: Mapping[TP, int]) -> bool:
        if not offsets:
            return False
        committed = await self._commit(offsets)
        if committed:
            self._committed_offset.update(offsets)
            self._forget_acks_below(offsets)
        return committed

    def _forget_acks_below(self, offsets: Mapping[TP, int]) -> None:
        """faust keeps each acknowledged offset until its own commit takes it; the
        worker's commits do that instead, or the lists would grow with every record."""
        for tp, offset in offsets.items():
            acked = self._acked.get(tp)
            if acked:
                self._acked[tp] = [each for each in acked if each >= offset]
                self._acked_index[tp] = set(self._acked[tp])

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ShortFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)


class ShortFetchTransport(faust_aiokafka.Transport):
    Consumer = WorkerConsumer
