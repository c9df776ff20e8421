"""The worker's records, sent a record batch per topic partition through faust's producer.

A batch of commands makes about three records per command (its changelog entries, an
event, a reply). Sent one at a time (`producer.send`), each costs a future, a trip
through aiokafka's accumulator and faust's sensors, and at faust's default batch size
(16 KiB) a partition's share of a batch of commands went out as many record batches,
one produce round trip each (aiokafka has one batch of a partition in flight at a time).
Here each topic partition's records go into one record batch of up to BATCH_BYTES
(aiokafka's builder, in C) and are sent with one future: the future resolves to the
offset of the batch's first record, so its last is known too.

faust and aiokafka internals used, pinned with faust-streaming 0.15.3 and aiokafka
0.14.0 (tests/processor/test_local.py): `Producer._ensure_producer()` returns faust's
started `aiokafka.AIOKafkaProducer`; its `client._wait_on_metadata(topic)` returns the
topic's partitions once the producer knows them.
"""

import asyncio
from collections.abc import Awaitable, Sequence

from aiokafka.partitioner import DefaultPartitioner

from app.worker.batch import Output

# Under the broker's default largest record batch (message.max.bytes, 1 MB).
BATCH_BYTES = 512 * 1024


class BatchProducer:
    def __init__(self, app) -> None:  # noqa: ANN001 - faust.App
        self.app = app
        self.partitioner = DefaultPartitioner()  # as aiokafka's and the Java client's (murmur2)
        self.partitions: dict[str, list[int]] = {}  # the partition counts of topics are fixed

    async def send(self, outputs: Sequence[Output]) -> dict[tuple[str, int], Awaitable[int]]:
        """Sends the records, each topic partition's in the given order; returns per topic
        partition what resolves to the offset of its last record once the broker has them."""
        producer = self.app.producer._ensure_producer()
        sending: dict[tuple[str, int], list] = {}  # place -> [builder, records in it, futures]
        for output in outputs:
            place = (output.topic, await self.partition_of(producer, output))
            entry = sending.get(place)
            if entry is None:
                entry = sending[place] = [producer.create_batch(), 0, []]
            headers = list(output.headers.items())
            if entry[0].append(timestamp=None, key=output.key, value=output.value, headers=headers) is None:
                entry[2].append(last_offset(await producer.send_batch(entry[0], place[0], partition=place[1]),
                                            entry[1]))
                entry[0], entry[1] = producer.create_batch(), 0
                entry[0].append(timestamp=None, key=output.key, value=output.value, headers=headers)
            entry[1] += 1
        for place, (builder, count, futures) in sending.items():
            futures.append(last_offset(await producer.send_batch(builder, place[0], partition=place[1]), count))
        return {place: futures[-1] if len(futures) == 1 else last_of(futures)
                for place, (_, _, futures) in sending.items()}

    async def partition_of(self, producer, output: Output) -> int:  # noqa: ANN001 - aiokafka.AIOKafkaProducer
        """The one given, or the key's, as the producer would choose it."""
        if output.partition is not None:
            return output.partition
        partitions = self.partitions.get(output.topic)
        if partitions is None:
            partitions = self.partitions[output.topic] = sorted(await producer.client._wait_on_metadata(output.topic))
        return self.partitioner(output.key, partitions, partitions)


async def last_offset(batch_sent: Awaitable, records: int) -> int:
    return (await batch_sent).offset + records - 1


async def last_of(sent: list[Awaitable[int]]) -> int:
    return (await asyncio.gather(*sent))[-1]
