"""`make bench-rebuild`: how long a worker holding many trips and bookings takes to answer
commands again: on an empty data dir (its state loaded from the changelogs), on its own
data dir after a clean stop (SIGTERM), started again at once after a SIGKILL, and when
one of two workers is killed and the other takes its partitions over.

    bench/infra.sh rebuild [--trips 10000] [--bookings 100000] [--runs 3] [--profile] [--compact]
                           [--session-timeout 6] [--standby-wait 60] [--variant NAME[@COMMIT]:...]...

Each run, in a topic namespace and worker group of its own (so variants can run side by
side, alternating): one worker is loaded through the command topic (commands produced
in bulk, every reply awaited), then stopped; then, on the same changelogs, each kind of
start once (`KINDS`), under the same static member id for a start of the same worker.
Queries for a few trips of every partition are produced as the process starts (or as
the kill happens), and the start's time is until every partition has answered one.
Each reply must show the availability the loaded worker reported: a start that answers
fast but wrong fails the bench. A killed worker's partitions go to the other only once
the group gives it up (`--session-timeout`, the broker's least by default); the failover
line also says how long after the survivor noticed.

The changelog is as the load left it: every write, uncompacted (the broker does not
compact a log's active segment), as after a burst of commands. `--compact` lets the
broker compact it during the load instead: about one record per key, as a changelog
settles in over time. `--profile` runs the rebuild under py-spy, whose folded stacks go
to the run's directory.
"""

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from app.config import Settings, get_settings
from app.wire.topics import REPLY_PARTITION, REPLY_TO, Topics
from bench import load
from app.transport.admin import ensure_topics, topic_specs
from bench.systems import openride_home, profiled
from bench.variants import ROOT, Variant, parse_variant
from app.transport.clients import command_producer_config, reply_consumer_config
from devstack.processes import Service, worker_service

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
        self.topic = Topics.of(settings).replies
        self.consumer = Consumer(reply_consumer_config(settings))
        tp = TopicPartition(self.topic, partition)
        _, end = watermarks(self.consumer, tp)
        self.consumer.assign([TopicPartition(self.topic, partition, end)])
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
                print(f"  {got} of {len(command_ids)} replies", flush=True, file=sys.stderr)

        if not self.read_until(lambda: command_ids <= self.received.keys(), timeout_s, progress):
            missing = command_ids - self.received.keys()
            raise TimeoutError(f"{len(missing)} of {len(command_ids)} commands unanswered after {timeout_s:.0f} s, "
                               f"e.g. {sorted(missing)[:3]}; {self.position()}")
        return self.bodies(command_ids)

    def bodies(self, command_ids: set[str]) -> dict[str, dict[str, Any]]:
        return {command_id: self.received[command_id][1] for command_id in command_ids if command_id in self.received}

    def position(self) -> str:
        """Whether the replies were all read (a missing one was then never written)."""
        tp = TopicPartition(self.topic, self.partition)
        _, end = watermarks(self.consumer, tp)
        return f"read up to offset {self.consumer.position([tp])[0].offset} of {end}"

    def received_at(self, command_id: str) -> float:
        return self.received[command_id][0]

    def close(self) -> None:
        self.consumer.close()


class Commands:
    """Produces command documents in bulk; remembers the partition each key went to."""

    def __init__(self, settings: Settings, reply_partition: int):
        self.producer = Producer({**command_producer_config(settings), "linger.ms": 20, "batch.size": 1_000_000})
        self.topics = Topics.of(settings)
        self.headers = [(REPLY_TO, self.topics.replies.encode()),
                        (REPLY_PARTITION, str(reply_partition).encode())]
        self.partition_of: dict[str, int] = {}

    def send(self, documents: list[tuple[str, dict[str, Any]]]) -> set[str]:
        """(trip key, command document) pairs; returns their command ids."""
        for key, document in documents:
            while True:
                try:
                    self.producer.produce(self.topics.commands, key=key.encode(), value=orjson.dumps(document),
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
          f"({(len(trips) + args.bookings) / elapsed:.0f} commands/s)", flush=True, file=sys.stderr)


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
    kind: str  # see KINDS
    answered_s: float  # from the start (or the kill) until every partition answered (its first query's reply)
    first_answer_s: float
    faust: dict[str, float]  # faust's log milestones, seconds after the start
    load: float  # 1-minute load average when the run ended
    lost: list[str]  # queries never answered
    duplicated: int  # replies beyond the first to a query
    after_rebalance_s: float | None = None  # failover: from the survivor noticing until every partition answered


KINDS = {
    "rebuild": "a worker on an empty data dir: its tables loaded from the changelogs",
    "restart": "the same worker on its own data dir after a clean stop (SIGTERM), from the process start",
    "sigkill": "the same worker killed (SIGKILL) and started again at once on its data dir, from the kill",
    "failover": "two workers with standby replicas: one killed (SIGKILL), from the kill until the other answers "
                "for all its partitions",
}


def ask_every_partition(commands: Commands, trips: list[load.TripSpec]) -> tuple[set[str], dict[int, set[str]]]:
    command_ids = commands.send(query_documents(trips, uuid.uuid4().hex[:8]))
    by_partition: dict[int, set[str]] = {}
    for command_id in command_ids:
        by_partition.setdefault(commands.partition_of[trip_key_of(command_id)], set()).add(command_id)
    return command_ids, by_partition


def answered(kind: str, commands: Commands, replies: Replies, trips: list[load.TripSpec], expected: dict[str, Any],
             started: float, log_path: Path) -> Start:
    """Queries for every partition, produced now; once each partition answered one, the
    start is done (the rest may straggle). Every answer must be what it was before."""
    command_ids, by_partition = ask_every_partition(commands, trips)
    if not replies.read_until(lambda: all(ids & replies.received.keys() for ids in by_partition.values()),
                              ANSWER_TIMEOUT_S):
        raise TimeoutError(f"{kind}: a partition never answered; {replies.position()}")
    replies.read_until(lambda: command_ids <= replies.received.keys(), STRAGGLERS_S)
    answers = availability(replies.bodies(command_ids))
    wrong = [key for key, value in answers.items() if value != expected.get(key)]
    if wrong:
        raise RuntimeError(f"{kind}: {len(wrong)} trips answered other than before, e.g. {wrong[0]}")
    answered_at = [min(replies.received_at(i) for i in ids if i in replies.received) for ids in by_partition.values()]
    return Start(kind, max(answered_at) - started, min(answered_at) - started,
                 faust_milestones(log_path, started), os.getloadavg()[0],
                 lost=sorted(command_ids - replies.received.keys()),
                 duplicated=sum(replies.copies[i] - 1 for i in command_ids if replies.copies[i] > 1))


def timed_start(worker: Service, commands: Commands, replies: Replies, trips: list[load.TripSpec],
                expected: dict[str, Any], kind: str, killed_at: float | None = None) -> Start:
    """From the process start (or, for a kill, the kill) until every partition answered."""
    started = killed_at or time.time()
    worker.start()
    try:
        return answered(kind, commands, replies, trips, expected, started, worker.log_path)
    finally:
        worker.stop()
        if worker.process.returncode not in (0, -15):
            raise RuntimeError(f"{worker.name} stopped with {worker.process.returncode}:\n{worker.log_tail()}")


def killed_and_started(worker: Service, commands: Commands, replies: Replies, trips: list[load.TripSpec],
                       expected: dict[str, Any]) -> Start:
    worker.start()
    answered("warm-up", commands, replies, trips, expected, time.time(), worker.log_path)
    killed_at = time.time()
    worker.kill()
    return timed_start(worker, commands, replies, trips, expected, "sigkill", killed_at)


def failed_over(first: Service, second: Service, commands: Commands, replies: Replies, trips: list[load.TripSpec],
                expected: dict[str, Any], standby_wait_s: float) -> Start:
    """Both workers up, the second's standby copies given `standby_wait_s` to catch up,
    then the first killed; timed from the kill until every partition answered."""
    first.start()
    answered("first alone", commands, replies, trips, expected, time.time(), first.log_path)
    second.start()
    try:
        time.sleep(standby_wait_s)
        answered("both", commands, replies, trips, expected, time.time(), second.log_path)
        killed_at = time.time()
        first.kill()
        start = answered("failover", commands, replies, trips, expected, killed_at, second.log_path)
        noticed = log_times(second.log_path, "(Re-)joining group", after=killed_at)
        if noticed:
            start.after_rebalance_s = start.answered_s - (noticed[0] - killed_at)
        return start
    finally:
        first.stop()
        second.stop()


def log_times(log_path: Path, text: str, after: float) -> list[float]:
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        match = FAUST_LOG_TIME.match(line)
        if match and text in line:
            at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at >= after:
                found.append(at)
    return found


def faust_milestones(log_path: Path, started: float) -> dict[str, float]:
    """Seconds after `started` of the first line of each milestone in this start's log."""
    return {name: round(times[0] - started, 2) for name, text in FAUST_MILESTONES.items()
            if (times := log_times(log_path, text, started))}


# -- one run ------------------------------------------------------------------------------------


def run_once(args: argparse.Namespace) -> list[Start]:
    """Every kind of start once, in a topic namespace and worker group of this run's own."""
    settings = get_settings()
    run_id = uuid.uuid4().hex[:8]
    workdir = openride_home() / "rebuild-run" / run_id
    workdir.mkdir(parents=True)
    env = {**LONG_HOLDS, "WORKER_ID": settings.worker_id, "WORKER_INSTANCE_ID": f"bench-worker-{run_id}",
           "WORKER_SESSION_TIMEOUT_SECONDS": str(args.session_timeout),
           "WORKER_HEARTBEAT_SECONDS": str(min(3.0, args.session_timeout / 3))}
    ensure_topics(settings, topic_specs(settings))
    replies = Replies(settings, settings.reply_partitions - 1)
    commands = Commands(settings, replies.partition)
    trips = load.make_trips(f"rb{run_id}", args.trips)
    loaded = worker_service("loaded", workdir, env, args.tree)
    loaded.start()
    try:
        load_worker(settings, commands, replies, trips, args)
        sample = queried_trips(commands, trips)
        expected = availability(replies.wait_for(commands.send(query_documents(sample, "before")), 60))
    finally:
        loaded.stop()
    if args.compact:
        print(f"waiting {COMPACTION_WAIT_S} s for the log cleaner", flush=True, file=sys.stderr)
        time.sleep(COMPACTION_WAIT_S)
    logs = changelogs(settings)
    for log in logs:
        print(f"changelog {log.topic}: {log.records} records (offsets), {log.bytes / 1e6:.1f} MB on the broker",
              flush=True, file=sys.stderr)
    worker = worker_service("worker", workdir, env, args.tree)
    if args.profile:
        worker = profiled(worker, workdir / "worker.rebuild.folded")
    starts = [timed_start(worker, commands, replies, sample, expected, "rebuild")]
    if args.profile:
        print(f"profile (py-spy folded stacks): {workdir / 'worker.rebuild.folded'}", flush=True, file=sys.stderr)
        worker = worker_service("worker", workdir, env, args.tree)
    starts.append(timed_start(worker, commands, replies, sample, expected, "restart"))
    starts.append(killed_and_started(worker, commands, replies, sample, expected))
    second = worker_service("standby", workdir, {**env, "WORKER_INSTANCE_ID": f"bench-standby-{run_id}"}, args.tree)
    starts.append(failed_over(worker, second, commands, replies, sample, expected, args.standby_wait))
    replies.close()
    for name in ("loaded", "worker", "standby"):
        shutil.rmtree(workdir / name, ignore_errors=True)  # the logs stay, the RocksDB copies go
    return starts


def run_in_namespace(args: argparse.Namespace, variant: Variant) -> list[Start]:
    namespace = f"rb{uuid.uuid4().hex[:6]}."
    env = {**os.environ, **variant.env, "TOPIC_NAMESPACE": namespace, "WORKER_ID": f"bench-{namespace[:-1]}"}
    argv = [sys.executable, "-m", "bench.rebuild", "--one", "--tree", str(variant.tree), "--trips", str(args.trips),
            "--bookings", str(args.bookings), "--session-timeout", str(args.session_timeout),
            "--standby-wait", str(args.standby_wait), "--seed", str(args.seed),
            *(["--compact"] if args.compact else []), *(["--profile"] if args.profile else [])]
    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant.name}: run failed:\n{done.stdout}")
    return [Start(**start) for start in json.loads(done.stdout.strip().splitlines()[-1])]


def describe(start: Start) -> str:
    extra = f", {start.after_rebalance_s:.1f} s after the survivor noticed" if start.after_rebalance_s else ""
    return (f"{start.kind}: every partition answered after {start.answered_s:.1f} s{extra} (first "
            f"{start.first_answer_s:.1f} s), faust {start.faust}, load {start.load:.1f}; queries lost "
            f"{len(start.lost)}, duplicate replies {start.duplicated}")


def run(args: argparse.Namespace) -> dict[str, list[list[Start]]]:
    variants = [parse_variant(v) for v in args.variant] or [Variant("as configured")]
    results: dict[str, list[list[Start]]] = {variant.name: [] for variant in variants}
    for number in range(args.runs):
        for variant in variants:
            starts = run_in_namespace(args, variant)
            results[variant.name].append(starts)
            for start in starts:
                print(f"run {number + 1} {variant.name}: {describe(start)}", flush=True)
    summarize(results, variants[0].name)
    return results


def summarize(results: dict[str, list[list[Start]]], first: str) -> None:
    print("\n| variant | " + " | ".join(KINDS) + " |\n|---|" + "---:|" * len(KINDS))
    for name, runs in results.items():
        cells = []
        for kind in KINDS:
            times = [start.answered_s for starts in runs for start in starts if start.kind == kind]
            mine = statistics.median(times)
            theirs = statistics.median(start.answered_s for starts in results[first] for start in starts
                                       if start.kind == kind)
            cells.append(f"{mine:.1f} s ({', '.join(f'{t:.1f}' for t in times)}; {mine / theirs:.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nmedians, the runs, and the ratio to the first variant; " + "; ".join(f"{k}: {v}" for k, v in KINDS.items()))
    lost = sum(len(start.lost) for runs in results.values() for starts in runs for start in starts)
    print(f"queries lost in all: {lost}")


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--trips", type=int, default=10_000)
    result.add_argument("--bookings", type=int, default=100_000)
    result.add_argument("--runs", type=int, default=3, help="runs of each variant, alternating")
    result.add_argument("--variant", action="append", default=[],
                        help="NAME[@COMMIT]:SETTING=VALUE,... the worker's code and settings (bench/variants.py)")
    result.add_argument("--profile", action="store_true", help="the rebuild under py-spy (then not a fair time)")
    result.add_argument("--compact", action="store_true", help="let the broker compact the changelogs during the load")
    result.add_argument("--session-timeout", type=float, default=6.0,
                        help="WORKER_SESSION_TIMEOUT_SECONDS: how soon the group gives a killed worker up "
                             "(the broker's least, by default)")
    result.add_argument("--standby-wait", type=float, default=60.0,
                        help="seconds the second worker's standby copies get before the first is killed")
    result.add_argument("--seed", type=int, default=7)
    result.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    result.add_argument("--tree", type=Path, default=ROOT, help=argparse.SUPPRESS)
    return result


def main() -> None:
    args = parser().parse_args()
    if args.one:
        print(json.dumps([asdict(start) for start in run_once(args)]))
        return
    results = run(args)
    # A query a worker never answered is a lost command: the run's figures stand, but it fails.
    sys.exit(1 if any(start.lost for runs in results.values() for starts in runs for start in starts) else 0)


if __name__ == "__main__":
    main()
