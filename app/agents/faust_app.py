"""The worker's faust.App, without one cost faust pays on every record it produces.

faust (0.15.3) asks `App.maybe_start_producer()` for the producer before each record it
sends: the changelog records of the tables, and the events and replies the agent sends.
That method is wrapped in mode's `stampede`, which yields to the event loop three times
per call (`asyncio.sleep(0)`) even when the producer has long been running: about a dozen
extra event-loop turns per command. Once the producer is started there is nothing to
protect, so it is returned at once; before that, faust's own method runs as it was.
"""

import faust
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
