"""The worker's faust.App, with two of faust's behaviours changed.

1. faust (0.15.3) asks `App.maybe_start_producer()` for the producer before each record it
   sends: the changelog records of the tables, and the events and replies the agent sends.
   That method is wrapped in mode's `stampede`, which yields to the event loop three times
   per call (`asyncio.sleep(0)`) even when the producer has long been running: about a
   dozen extra event-loop turns per command. Once the producer is started there is
   nothing to protect, so it is returned at once; before that, faust's own method runs.
2. After a rebalance, faust's recovery lets the command partitions be read before it has
   placed them at their committed offsets; `SeekFirstRecovery` places them first.
"""

import asyncio
from typing import cast

import faust
from faust.app.base import App as _App
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import ProducerT
from mode.utils.futures import stampede


class WorkerApp(faust.App):
    async def maybe_start_producer(self) -> ProducerT:
        producer = self.producer
        if producer.started and not self.in_transaction:
            return producer
        return await self._start_producer()

    @stampede
    async def _start_producer(self) -> ProducerT:
        return await faust.App.maybe_start_producer.__wrapped__(self)


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
       committed offsets, and every command after them is handled once, in order.
    """

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


class WorkerTableManager(TableManager):
    """faust's table manager, recovering with `SeekFirstRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
