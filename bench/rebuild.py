"""`make bench-rebuild`: how long a worker holding many trips and bookings takes to answer
commands again after a restart, on an empty data dir (its state rebuilt from the
changelog) and on its own data dir after a clean stop (SIGTERM).

    bench/infra.sh rebuild [--trips 10000] [--bookings 100000] [--runs 3] [--profile] [--compact]

One worker is loaded through the command topic (commands produced in bulk, every reply
awaited), then stopped. Each run starts a worker in the same group under the same static
member id, so it takes every partition at once; queries for a few trips of every
partition are produced as the process starts, and the run's time is from the process's
start to the last of their replies. Each reply must show the availability the loaded
worker reported: a rebuild that answers fast but wrong fails the bench.

The changelog is as the load left it: every write, uncompacted (the broker does not
compact a log's active segment), as after a burst of commands. `--compact` lets the
broker compact it during the load instead: about one record per key, as a changelog
settles in over time. `--profile` adds a rebuild under py-spy, whose folded stacks go
to the run's directory.
"""

import argparse
import os
import random
import re
import shutil
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from app.config import Settings, get_settings
from app.models import topics
from bench import load
from bench.systems import openride_home, profiled
from gateway.kafka import producer_config, reply_consumer_config
from tests.stack import Service, worker_service

# Holds outlive the run: an expiry during a measurement would write to the tables.
LONG_HOLDS = {"HOLD_MINUTES": "1440", "PAYMENT_HOLD_MINUTES": "1440"}
# --compact: segments the load fills many times over, cleaned as soon as a tenth is dirty.
COMPACT_SOON = {"segment.bytes": str(1024 * 1024), "min.cleanable.dirty.ratio": "0.1"}
COMPACTION_WAIT_S = 60
QUERIED_PER_PARTITION = 4
LOAD_TIMEOUT_S = 1800.0
ANSWER_TIMEOUT_S = 600.0
# Once every partition answered, how long the other queries may take before they count as lost.
STRAGGLERS_S = 30.0
# What faust logs on the way to processing again, in order (faust/tables/recovery.py).
FAUST_MILESTONES = {
    "restoring": "Restoring state from changelog topics",
    "read": "Done reading from changelog topics",
    "ready": "Worker ready",
}
FAUST_LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def watermarks(consumer: Consumer, tp: TopicPartition, timeout_s: float = 30) -> tuple[int, int]:
    """A topic created moments ago may have no leader yet: ask again until it has."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=10)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class Replies:
    """One reply partition, read from its end onwards: the first reply to each command id
    with the time it was read, and how many replies each command id got."""

    def __init__(self, settings: Settings, partition: int):
        self.partition = partition
        self.consumer = Consumer(reply_consumer_config(settings))
        tp = TopicPartition(topics.REPLIES, partition)
        _, end = watermarks(self.consumer, tp)
        self.consumer.assign([TopicPartition(topics.REPLIES, partition, end)])
        self.received: dict[str, tuple[float, dict[str, Any]]] = {}
        self.copies: Counter[str] = Counter()

    def read_until(self, done: Callable[[], bool], timeout_s: float, progress: Callable[[], None] = lambda: None) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            for message in self.consumer.consume(5000, 0.05):
                if message.error() is None:
                    command_id = message.key().decode()
                    self.copies[command_id] += 1
                    if command_id not in self.received:
                        self.received[command_id] = (time.time(), orjson.loads(message.value()))
            progress()
        return done()

    def wait_for(self, command_ids: set[str], timeout_s: float, progress_every: int = 0) -> dict[str, dict[str, Any]]:
        printed = [0]

        def progress() -> None:
            got = len(command_ids & self.received.keys())
            if progress_every and got // progress_every > printed[0]:
                printed[0] = got // progress_every
                print(f"  {got} of {len(command_ids)} replies", flush=True)

        if not self.read_until(lambda: command_ids <= self.received.keys(), timeout_s, progress):
            missing = command_ids - self.received.keys()
            raise TimeoutError(f"{len(missing)} of {len(command_ids)} commands unanswered after {timeout_s:.0f} s, "
                               f"e.g. {sorted(missing)[:3]}; {self.position()}")
        return self.bodies(command_ids)

    def bodies(self, command_ids: set[str]) -> dict[str, dict[str, Any]]:
        return {command_id: self.received[command_id][1] for command_id in command_ids if command_id in self.received}

    def position(self) -> str:
        """Whether the replies were all read (a missing one was then never written)."""
        tp = TopicPartition(topics.REPLIES, self.partition)
        _, end = watermarks(self.consumer, tp)
        return f"read up to offset {self.consumer.position([tp])[0].offset} of {end}"

    def received_at(self, command_id: str) -> float:
        return self.received[command_id][0]

    def close(self) -> None:
        self.consumer.close()


class Commands:
    """Produces command documents in bulk; remembers the partition each key went to."""

    def __init__(self, settings: Settings, reply_partition: int):
        self.producer = Producer({**producer_config(settings), "linger.ms": 20, "batch.size": 1_000_000})
        self.headers = [(topics.REPLY_TO, topics.REPLIES.encode()),
                        (topics.REPLY_PARTITION, str(reply_partition).encode())]
        self.partition_of: dict[str, int] = {}

    def send(self, documents: list[tuple[str, dict[str, Any]]]) -> set[str]:
        """(trip key, command document) pairs; returns their command ids."""
        for key, document in documents:
            while True:
                try:
                    self.producer.produce(topics.COMMANDS, key=key.encode(), value=orjson.dumps(document),
                                          headers=self.headers, on_delivery=self._delivered)
                    break
                except BufferError:  # the local queue is full: let it drain
                    self.producer.poll(0.1)
            self.producer.poll(0)
        if self.producer.flush(60) != 0:
            raise RuntimeError("commands not delivered")
        return {document["commandId"] for _, document in documents}

    def _delivered(self, error, message) -> None:
        if error is not None:
            raise RuntimeError(f"command not delivered: {error}")
        self.partition_of[message.key().decode()] = message.partition()


# -- the state the worker is loaded with -----------------------------------------------------


def bookings_for(trips: list[load.TripSpec], count: int, seed: int) -> list[load.Create]:
    """`count` creates spread evenly over the trips. At most 12 bookings of at most 4 seats
    per 50-seat trip, so every one of them fits."""
    per_trip = -(-count // len(trips))
    if per_trip * max(load.SEAT_COUNTS) > min(trip.capacity for trip in trips):
        raise ValueError(f"{per_trip} bookings per trip could overbook; use more trips")
    rng = random.Random(seed)
    creates = []
    for i in range(count):
        origin = rng.randrange(len(load.STOPS) - 1)
        destination = rng.randrange(origin + 1, len(load.STOPS))
        creates.append(load.Create(trips[i % len(trips)], f"rider-{i}", load.STOPS[origin], load.STOPS[destination],
                                   rng.choice(load.SEAT_COUNTS), f"bench-create-{i}"))
    return creates


def refused(replies: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [body for body in replies.values() if not body.get("ok")]


def load_worker(settings: Settings, commands: Commands, replies: Replies, trips: list[load.TripSpec],
                args: argparse.Namespace) -> None:
    started = time.monotonic()
    published = replies.wait_for(commands.send(
        [(trip.key, load.publish_trip_command(trip, f"trip-{trip.key}")) for trip in trips]), LOAD_TIMEOUT_S)
    if refused(published):
        raise RuntimeError(f"{len(refused(published))} trips not published, e.g. {refused(published)[0]}")
    if args.compact:
        compact_soon(settings)  # the worker has created the changelogs by now
    creates = bookings_for(trips, args.bookings, args.seed)
    created = replies.wait_for(commands.send([(op.trip.key, load.create_command(op)) for op in creates]),
                               LOAD_TIMEOUT_S, progress_every=10_000)
    if refused(created):
        raise RuntimeError(f"{len(refused(created))} bookings refused, e.g. {refused(created)[0]}")
    elapsed = time.monotonic() - started
    print(f"loaded {len(trips)} trips and {args.bookings} bookings in {elapsed:.0f} s "
          f"({(len(trips) + args.bookings) / elapsed:.0f} commands/s)", flush=True)


def queried_trips(commands: Commands, trips: list[load.TripSpec]) -> list[load.TripSpec]:
    """A few trips of every partition: the first of each to answer marks that partition
    as processing again."""
    by_partition: dict[int, list[load.TripSpec]] = {}
    for trip in trips:
        chosen = by_partition.setdefault(commands.partition_of[trip.key], [])
        if len(chosen) < QUERIED_PER_PARTITION:
            chosen.append(trip)
    return [trip for chosen in by_partition.values() for trip in chosen]


def query_documents(trips: list[load.TripSpec], tag: str) -> list[tuple[str, dict[str, Any]]]:
    return [(trip.key, {"v": 1, "type": "query_availability", "commandId": f"query-{tag}-{trip.key}",
                        "actor": load.actor("route-svc", "SERVICE"), "routeId": trip.route_id,
                        "travelDate": trip.travel_date.isoformat()}) for trip in trips]


def trip_key_of(query_id: str) -> str:
    return query_id.split("-", 2)[2]


def availability(replies: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """By trip key, what each query answered."""
    return {trip_key_of(command_id): body.get("availability") or body for command_id, body in replies.items()}


# -- the changelog ------------------------------------------------------------------------------


@dataclass
class Changelog:
    topic: str
    records: int
    bytes: int


def changelogs(settings: Settings) -> list[Changelog]:
    """Records (end minus start offsets, before any compaction) and bytes on the broker's
    disk of each table's changelog."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"bench-{uuid.uuid4()}"})
    try:
        names = sorted(name for name in consumer.list_topics(timeout=10).topics
                       if name.startswith(settings.worker_id) and name.endswith("-changelog"))
        result = []
        for name in names:
            records = 0
            for partition in range(settings.command_partitions):
                low, high = watermarks(consumer, TopicPartition(name, partition))
                records += high - low
            result.append(Changelog(name, records, broker_bytes(name)))
        return result
    finally:
        consumer.close()


def broker_bytes(topic: str) -> int:
    data = openride_home() / "kafka" / "data"
    return sum(path.stat().st_size for path in data.glob(f"{topic}-*/*.log"))


@dataclass
class PlainRead:
    seconds: float
    records: int
    keys: int  # distinct keys: what a fully compacted changelog would hold


def plain_read(settings: Settings, names: list[str]) -> PlainRead:
    """Reads the changelogs end to end with a plain librdkafka consumer: what the broker
    and the loopback can do, with no faust and no RocksDB."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    try:
        started = time.monotonic()
        ends = {}
        for name in names:
            for partition in range(settings.command_partitions):
                low, high = watermarks(consumer, TopicPartition(name, partition))
                if high > low:
                    ends[(name, partition)] = high
        consumer.assign([TopicPartition(name, partition, 0) for name, partition in ends])
        records, keys = 0, set()
        while ends:
            for message in consumer.consume(10_000, 1.0):
                if message.error() is None:
                    records += 1
                    keys.add((message.topic(), message.key()))
                    if message.offset() + 1 >= ends.get((message.topic(), message.partition()), sys.maxsize):
                        del ends[(message.topic(), message.partition())]
        return PlainRead(time.monotonic() - started, records, len(keys))
    finally:
        consumer.close()


def compact_soon(settings: Settings) -> None:
    """Small segments and an eager cleaner on the changelogs, so that the broker compacts
    them while the load runs (it never compacts a log's active segment): the state a
    changelog settles in after a while, instead of every write since it was created."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    entries = [ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
               for name, value in COMPACT_SOON.items()]
    resources = [ConfigResource(ResourceType.TOPIC, log.topic, incremental_configs=entries)
                 for log in changelogs(settings)]
    for future in admin.incremental_alter_configs(resources).values():
        future.result()


# -- one timed start -------------------------------------------------------------------------


@dataclass
class Start:
    kind: str  # "rebuild" (empty data dir) or "restart" (own data dir, after a clean stop)
    answered_s: float  # process start -> every partition answered (its first query's reply)
    first_answer_s: float
    faust: dict[str, float]  # faust's log milestones, seconds after process start
    load: float  # 1-minute load average when the run ended
    lost: list[str]  # queries never answered
    duplicated: int  # replies beyond the first to a query


def timed_start(worker: Service, commands: Commands, replies: Replies, trips: list[load.TripSpec],
                expected: dict[str, Any], kind: str) -> Start:
    started = time.time()
    worker.start()
    try:
        command_ids = commands.send(query_documents(trips, uuid.uuid4().hex[:8]))
        by_partition: dict[int, set[str]] = {}
        for command_id in command_ids:
            by_partition.setdefault(commands.partition_of[trip_key_of(command_id)], set()).add(command_id)
        if not replies.read_until(lambda: all(ids & replies.received.keys() for ids in by_partition.values()),
                                  ANSWER_TIMEOUT_S):
            raise TimeoutError(f"{kind}: a partition never answered; {replies.position()}")
        replies.read_until(lambda: command_ids <= replies.received.keys(), STRAGGLERS_S)
    finally:
        worker.stop()
    if worker.process.returncode not in (0, -15):
        raise RuntimeError(f"{worker.name} stopped with {worker.process.returncode}:\n{worker.log_tail()}")
    answers = availability(replies.bodies(command_ids))
    wrong = [key for key, value in answers.items() if value != expected.get(key)]
    if wrong:
        raise RuntimeError(f"{kind}: {len(wrong)} trips answered other than before the restart, e.g. {wrong[0]}")
    answered_at = [min(replies.received_at(i) for i in ids if i in replies.received) for ids in by_partition.values()]
    return Start(kind, max(answered_at) - started, min(answered_at) - started,
                 faust_milestones(worker.log_path, started), os.getloadavg()[0],
                 lost=sorted(command_ids - replies.received.keys()),
                 duplicated=sum(replies.copies[i] - 1 for i in command_ids if replies.copies[i] > 1))


def faust_milestones(log_path: Path, started: float) -> dict[str, float]:
    """Seconds after `started` of the first line of each milestone in this start's log."""
    found: dict[str, float] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        match = FAUST_LOG_TIME.match(line)
        if not match:
            continue
        at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for name, text in FAUST_MILESTONES.items():
            if name not in found and text in line and at >= started - 1:
                found[name] = round(at - started, 2)
    return found


# -- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> list[Start]:
    settings = get_settings()
    run_id = uuid.uuid4().hex[:8]
    workdir = openride_home() / "rebuild-run" / run_id
    workdir.mkdir(parents=True)
    env = {**LONG_HOLDS, "WORKER_ID": settings.worker_id, "WORKER_INSTANCE_ID": f"bench-worker-{run_id}"}
    replies = Replies(settings, settings.reply_partitions - 1)
    commands = Commands(settings, replies.partition)
    trips = load.make_trips(f"rb{run_id}", args.trips)
    loaded = worker_service("loaded", workdir, env)
    loaded.start()
    try:
        load_worker(settings, commands, replies, trips, args)
        sample = queried_trips(commands, trips)
        expected = availability(replies.wait_for(commands.send(query_documents(sample, "before")), 60))
    finally:
        loaded.stop()
    if args.compact:
        print(f"waiting {COMPACTION_WAIT_S} s for the log cleaner", flush=True)
        time.sleep(COMPACTION_WAIT_S)
    logs = changelogs(settings)
    for log in logs:
        print(f"changelog {log.topic}: {log.records} records (offsets), {log.bytes / 1e6:.1f} MB on the broker",
              flush=True)
    read = plain_read(settings, [log.topic for log in logs])
    print(f"plain consumer read {read.records} changelog records ({read.keys} distinct keys) in {read.seconds:.1f} s "
          f"({read.records / read.seconds:.0f}/s)", flush=True)

    starts = []
    for i in range(args.runs + args.profile):
        name = f"worker-{i}"
        worker = worker_service(name, workdir, env)
        if i == args.runs:
            worker = profiled(worker, workdir / f"{name}.rebuild.folded")
        for kind in ("rebuild", "restart"):
            start = timed_start(worker, commands, replies, sample, expected, kind)
            print(f"{name} {kind}: answered after {start.answered_s:.1f} s (first partition {start.first_answer_s:.1f} s), "
                  f"faust {start.faust}, load {start.load:.1f}; queries lost {len(start.lost)} {start.lost[:3]}, "
                  f"duplicate replies {start.duplicated}", flush=True)
            if i < args.runs:
                starts.append(start)
            elif kind == "rebuild":
                print(f"profile (py-spy folded stacks): {workdir / f'{name}.rebuild.folded'}", flush=True)
                break
        shutil.rmtree(workdir / name, ignore_errors=True)
    replies.close()
    shutil.rmtree(workdir / "loaded", ignore_errors=True)  # the logs stay, the RocksDB copies go
    summarize(starts)
    return starts


def summarize(starts: list[Start]) -> None:
    for kind in ("rebuild", "restart"):
        mine = [s for s in starts if s.kind == kind]
        if not mine:
            continue
        faust = {name: statistics.median(s.faust[name] for s in mine if name in s.faust)
                 for name in FAUST_MILESTONES if any(name in s.faust for s in mine)}
        print(f"{kind}: median {statistics.median(s.answered_s for s in mine):.1f} s to answer on every partition "
              f"(runs: {', '.join(f'{s.answered_s:.1f}' for s in mine)}); faust milestones (median s): {faust}; "
              f"load {', '.join(f'{s.load:.1f}' for s in mine)}; queries lost {sum(len(s.lost) for s in mine)}, "
              f"duplicate replies {sum(s.duplicated for s in mine)}", flush=True)


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--trips", type=int, default=10_000)
    result.add_argument("--bookings", type=int, default=100_000)
    result.add_argument("--runs", type=int, default=3, help="timed rebuilds (each followed by a timed restart)")
    result.add_argument("--profile", action="store_true", help="one more rebuild under py-spy (not timed)")
    result.add_argument("--compact", action="store_true", help="let the broker compact the changelogs during the load")
    result.add_argument("--seed", type=int, default=7)
    return result


if __name__ == "__main__":
    # A query the worker never answered is a lost command: the run's figures stand, but it fails.
    sys.exit(1 if any(start.lost for start in run(parser().parse_args())) else 0)
