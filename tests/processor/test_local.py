"""The faust internals the worker relies on (pinned with faust-streaming 0.15.3), its
local store written in faust's own layout, the bulk load of a changelog from the broker,
the consumer that commits only what the batches hand it, and its records sent a batch
per partition through faust's producer."""

import asyncio
import uuid
from pathlib import Path

import faust
import pytest
from confluent_kafka import Producer
from faust.types import TP

from aiokafka.partitioner import DefaultPartitioner

from app.worker.batch import Output
from app.worker.faust_app import WorkerConsumer
from app.worker.local import LoadProgress, RocksTables, load_changelogs
from app.worker.produce import BATCH_BYTES, BatchProducer
from app.config import get_settings
from tests.processor.namespace import Namespace
from tests.support.kafka import read_topic


def faust_table(datadir: Path, name: str = "trip-state") -> faust.Table:
    app = faust.App(f"local-{uuid.uuid4().hex[:6]}", store="rocksdb://", datadir=str(datadir),
                    broker=f"kafka://{get_settings().kafka_bootstrap}")
    return app.Table(name, partitions=4, key_type=bytes, value_type=bytes)


def test_a_batch_is_written_in_faust_s_layout_with_the_offset_faust_recovers_from(tmp_path: Path) -> None:
    table = faust_table(tmp_path)
    local = RocksTables({"trip-state": table})
    local.write("trip-state", 2, {b"trip": b"one", b"trip/b/x": b"two"}, 41)
    local.write("trip-state", 2, {b"trip": b"three", b"trip/b/x": None}, 44)
    tp = TP(table.changelog_topic_name, 2)
    assert table.persisted_offset(tp) == 44  # where faust's recovery starts reading
    stored = local.stored("trip-state", 2)
    assert (stored.get(b"trip"), stored.get(b"trip/b/x")) == (b"three", None)
    assert local.stored("trip-state", 1).get(b"trip") is None  # partitions apart, as faust keeps them
    assert (tmp_path / "v1" / "tables" / "trip-state-2.db").is_dir()


def test_faust_s_leader_topic_is_named_as_the_worker_declares_it(tmp_path: Path) -> None:
    app = faust.App("leader-name", datadir=str(tmp_path))
    assert app._leader_assignor._leader_topic_name == "leader-name-__assignor-__leader"


class Acked:
    """A message as faust's consumer tracks it, acknowledged by a stream."""

    def __init__(self, tp: TP, offset: int) -> None:
        self.tp, self.topic, self.offset = tp, tp.topic, offset
        self.acked = False


def test_the_worker_consumer_never_commits_what_faust_would_from_its_acknowledgements(tmp_path: Path) -> None:
    """faust's own commit, with 10 committed and 11-13 acknowledged (10 never handled),
    commits 14; the worker's consumer commits nothing on its own, only `commit_handled`."""
    app = faust.App(f"holes-{uuid.uuid4().hex[:6]}", datadir=str(tmp_path),
                    broker=f"kafka://{get_settings().kafka_bootstrap}")
    app.topics._acking_topics.add("commands")  # as faust does for a topic an agent reads
    tp = TP("commands", 0)
    committed: list[dict] = []

    async def scenario() -> tuple[int | None, bool]:
        consumer = WorkerConsumer(app.transport, callback=lambda message: None, on_partitions_revoked=None,
                                  on_partitions_assigned=None)

        async def record(offsets):
            committed.append(dict(offsets))
            return True

        consumer._commit = record
        consumer._committed_offset[tp] = 10
        for offset in (11, 12, 13):
            consumer.ack(Acked(tp, offset))
        faust_would = faust.transport.consumer.Consumer._new_offset(consumer, tp)
        return faust_would, await consumer.commit()

    faust_would, did = asyncio.run(scenario())
    assert faust_would == 14, "faust's own rule (its hole): past the unhandled 10"
    assert did is False and committed == []


def test_the_worker_s_commits_take_faust_s_acknowledgements_with_them(tmp_path: Path) -> None:
    """faust keeps each acknowledged offset until its own commit takes it: with that
    commit off, the worker's must, or the lists grow with every record handled."""
    app = faust.App(f"acks-{uuid.uuid4().hex[:6]}", datadir=str(tmp_path),
                    broker=f"kafka://{get_settings().kafka_bootstrap}")
    app.topics._acking_topics.add("commands")
    tp = TP("commands", 0)

    async def scenario() -> list[int]:
        consumer = WorkerConsumer(app.transport, callback=lambda message: None, on_partitions_revoked=None,
                                  on_partitions_assigned=None)

        async def accepted(offsets):
            return True

        consumer._commit = accepted
        for offset in range(10, 20):
            consumer.ack(Acked(tp, offset))
        assert await consumer.commit_handled({tp: 17})
        return sorted(consumer._acked[tp]), sorted(consumer._acked_index[tp])

    assert asyncio.run(scenario()) == ([17, 18, 19], [17, 18, 19])


@pytest.mark.integration
def test_a_changelog_is_loaded_in_bulk_as_faust_s_replay_would_leave_it(tmp_path: Path) -> None:
    ns = Namespace(tmp_path, {})
    topic = ns.topics.named("bulk-changelog")
    from app.transport.admin import ensure_topics
    from confluent_kafka.admin import NewTopic

    ensure_topics(get_settings(), [NewTopic(topic, 2, 1, config={"cleanup.policy": "compact"})])
    producer = Producer({"bootstrap.servers": get_settings().kafka_bootstrap, "enable.idempotence": True})
    expected: dict[bytes, bytes] = {}
    for n in range(5000):
        key, value = f"k{n % 700}".encode(), (None if n % 11 == 0 else f"v{n}".encode())
        producer.produce(topic, key=key, value=value, partition=1)
        if value is None:
            expected.pop(key, None)
        else:
            expected[key] = value
    assert producer.flush(30) == 0
    table = faust_table(tmp_path / "data", "bulk")
    store = table.data
    progress = LoadProgress()
    load_changelogs(get_settings().kafka_bootstrap, {(topic, 1): (0, 4999)},
                    lambda _, partition: store._db_for_partition(partition), store.offset_key, progress)
    db = store._db_for_partition(1)
    loaded = {key: value for key, value in db.items() if key != store.offset_key}
    assert loaded == expected
    assert store.persisted_offset(TP(topic, 1)) == 4999
    assert (progress.records_total, progress.records_loaded) == (5000, 5000)


@pytest.mark.integration
def test_records_go_out_a_batch_per_partition_in_order_with_the_offset_of_each_partition_s_last(
        tmp_path: Path) -> None:
    ns = Namespace(tmp_path, {})
    topic = ns.topics.named("batched-out")
    from confluent_kafka.admin import NewTopic

    from app.transport.admin import ensure_topics

    ensure_topics(get_settings(), [NewTopic(topic, 3, 1)])
    app = faust.App(f"out-{uuid.uuid4().hex[:6]}", datadir=str(tmp_path), broker=f"kafka://{get_settings().kafka_bootstrap}",
                    producer_max_batch_size=BATCH_BYTES, producer_max_request_size=4 * BATCH_BYTES)
    big = b"v" * 2000  # more than one record batch's worth on partition 1
    outputs = [Output(topic, f"k{n}".encode(), big if n % 3 == 1 else f"v{n}".encode(), n % 3 if n % 5 else None,
                      {"n": str(n).encode()}) for n in range(900)]

    async def send() -> dict:
        await app.producer.start()
        try:
            sent = await BatchProducer(app).send(outputs)
            return {place: await last for place, last in sent.items()}
        finally:
            await app.producer.stop()

    offsets = asyncio.run(send())
    records = read_topic(topic)
    by_partition = {p: [r for r in records if r.partition == p] for p in range(3)}
    assert offsets == {(topic, p): len(found) - 1 for p, found in by_partition.items() if found}
    assert sum(map(len, by_partition.values())) == 900
    for found in by_partition.values():  # each partition's in the order given
        numbers = [int(r.headers["n"]) for r in found]
        assert numbers == sorted(numbers)
    keyed = [r for r in records if int(r.headers["n"]) % 5 == 0]
    assert all(r.partition == DefaultPartitioner()(r.key, [0, 1, 2], [0, 1, 2]) for r in keyed)
