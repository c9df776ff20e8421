"""Real worker processes in a topic namespace of their own, the upstream client to drive
them, readers of every topic they write, and the replay that checks determinism."""

import asyncio
import base64
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from app.worker.batch import InMemory
from app.worker.ticks import tick_value
from app.worker.processor import Record
from app.client import BookingClient, ReplyTimeout
from app.config import get_settings
from app.domain.ids import booking_id_of
from app.domain.policy import Policy
from app.domain.trip import trip_key as domain_trip_key
from app.wire import topics
from app.tables.trips import HOLD_DUE, TRIP_STATE
from devstack.processes import Service, worker_service
from devstack.stack import own_topics

PARTITIONS = 6
TICK_SECONDS = 1.0
TRAVEL_DATE = (date.today() + timedelta(days=30)).isoformat()
SERVICE = {"userId": "route-service", "role": "SERVICE"}
PAYMENTS = {"userId": "payments", "role": "SERVICE"}
DRIVER = {"userId": "driver-1", "role": "DRIVER"}


def rider(name: str) -> dict[str, str]:
    return {"userId": name, "role": "RIDER"}


@dataclass
class Namespace:
    """A topic namespace with its topics created, its worker group and its processes."""

    workdir: Path
    env: dict[str, str]
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}.")
    workers: dict[str, Service] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {
            "TOPIC_NAMESPACE": self.prefix,
            "WORKER_ID": "openride-" + self.prefix.rstrip("."),
            "COMMAND_PARTITIONS": str(PARTITIONS),
            "TICK_INTERVAL_SECONDS": str(TICK_SECONDS),
            "WORKER_SESSION_TIMEOUT_SECONDS": "10",
            "WORKER_HEARTBEAT_SECONDS": "1",
            "WORKER_RATE_LOG_SECONDS": "1",
            **self.env,
        }
        own_topics(self.env)

    def topic(self, name: str) -> str:
        """The namespaced name of a topic (the test process itself runs un-namespaced)."""
        return self.prefix + name

    @property
    def worker_id(self) -> str:
        return self.env["WORKER_ID"]

    def worker(self, name: str, datadir: Path | None = None, **env: str) -> Service:
        """A worker of this namespace's group, not started yet."""
        extra = {**self.env, **env, **({"WORKER_DATADIR": str(datadir)} if datadir else {})}
        service = self.workers[name] = worker_service(name, self.workdir, extra)
        return service

    def start_worker(self, name: str, datadir: Path | None = None, **env: str) -> Service:
        service = self.worker(name, datadir, **env)
        service.start()
        return service

    def client(self, reply_partition: int = 0) -> BookingClient:
        return BookingClient(reply_partition=reply_partition, commands_topic=self.topic(topics.COMMANDS),
                             replies_topic=self.topic(topics.REPLIES))

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()

    def assert_alive(self, *names: str) -> None:
        for name in names:
            process = self.workers[name].process
            assert process is not None and process.poll() is None, self.workers[name].log_tail()


@contextmanager
def worker_namespace(workdir: Path, env: dict[str, str] | None = None,
                     worker: str | None = "worker-1") -> Iterator[Namespace]:
    """A namespace with `worker` started (None: no worker yet); its workers stopped after."""
    namespace = Namespace(workdir, env or {})
    if worker is not None:
        namespace.start_worker(worker)
    try:
        yield namespace
    finally:
        namespace.stop()


def answers(ns: Namespace, *commands: dict[str, Any], deadline_s: float = 120) -> list[dict[str, Any]]:
    """The reply to each command, sent in turn and resent until answered."""
    async def in_turn() -> list[dict[str, Any]]:
        async with ns.client() as client:
            return [await send_until_answered(client, command, deadline_s) for command in commands]
    return asyncio.run(in_turn())


# -- commands ----------------------------------------------------------------------------


def command_id() -> str:
    return uuid.uuid4().hex


def publish_trip(route_id: str, capacity: int = 4, driver: str = "driver-1") -> dict[str, Any]:
    return {
        "type": "publish_trip", "commandId": command_id(), "actor": SERVICE, "routeId": route_id,
        "travelDate": TRAVEL_DATE,
        "trip": {"timezone": "Africa/Lagos", "departureTime": "09:00", "capacity": capacity, "currency": "NGN",
                 "driverId": driver,
                 "stops": [{"stopId": "LAG", "offsetMinutes": 0}, {"stopId": "IBD", "offsetMinutes": 90},
                           {"stopId": "OYO", "offsetMinutes": 180}],
                 "legFares": ["2500.00", "1500.00"]},
    }


def create_booking(route_id: str, who: str, seats: int = 1, origin: str = "LAG",
                   destination: str = "OYO") -> dict[str, Any]:
    return {"type": "create_booking", "commandId": command_id(), "actor": rider(who), "routeId": route_id,
            "travelDate": TRAVEL_DATE, "originStopId": origin, "destinationStopId": destination,
            "seatsBooked": seats}


def on_booking(kind: str, booking_id: str, actor: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {"type": kind, "commandId": command_id(), "actor": actor, "bookingId": booking_id, **fields}


def on_entry(kind: str, entry_id: str, actor: dict[str, str]) -> dict[str, Any]:
    return {"type": kind, "commandId": command_id(), "actor": actor, "entryId": entry_id}


def join_waitlist(route_id: str, who: str, seats: int = 1, origin: str = "LAG",
                  destination: str = "OYO") -> dict[str, Any]:
    return {"type": "join_waitlist", "commandId": command_id(), "actor": rider(who), "routeId": route_id,
            "travelDate": TRAVEL_DATE, "originStopId": origin, "destinationStopId": destination,
            "seatsBooked": seats}


def made_up_booking(route_id: str, number: int) -> str:
    """A well-formed booking id on the route's trip that no command made."""
    return booking_id_of(route_id, date.fromisoformat(TRAVEL_DATE),
                         base64.b32encode(number.to_bytes(10, "big")).decode())


def on_trip(kind: str, route_id: str, actor: dict[str, str] = SERVICE, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "commandId": command_id(), "actor": actor, "routeId": route_id,
            "travelDate": TRAVEL_DATE, **fields}


async def send_until_answered(client: BookingClient, command: dict[str, Any], deadline_s: float = 90,
                              timeout: float = 5) -> dict[str, Any]:
    """Resends the same command (same id: safe) until a reply comes, as an upstream
    service would while a worker is down or partitions move."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return await client.send(command, timeout=timeout)
        except ReplyTimeout:
            if time.monotonic() > deadline:
                raise


# -- reading topics ----------------------------------------------------------------------


def as_json(record: Record) -> Any:
    return orjson.loads(record.value or b"")


def read_topic(name: str, partitions: list[int] | None = None) -> list[Record]:
    """Every record of the topic up to its current end, in partition then offset order."""
    consumer = Consumer({"bootstrap.servers": get_settings().kafka_bootstrap, "group.id": f"reader-{uuid.uuid4()}",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        metadata = consumer.list_topics(name, timeout=10).topics[name]
        found = sorted(metadata.partitions) if partitions is None else partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10) for p in found}
        wanted = {p: (low, high) for p, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(name, p, low) for p, (low, _) in wanted.items()])
        got: dict[int, list[Record]] = defaultdict(list)
        deadline = time.monotonic() + 30
        while any(not got[p] or got[p][-1].offset < high - 1 for p, (_, high) in wanted.items()):
            assert time.monotonic() < deadline, f"could not read {name} to its end"
            for m in consumer.consume(500, 0.5):
                if m.error() is None:
                    got[m.partition()].append(Record(m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(),
                                                      m.value(), dict(m.headers() or [])))
        return [m for p in sorted(got) for m in got[p]]
    finally:
        consumer.close()


def wait_for(what: str, check, timeout_s: float = 30, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every_s)


def produce_raw(topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes], partition: int = -1) -> None:
    """The recipe for a plain confluent-kafka producer (docs/processor.md)."""
    producer = Producer({"bootstrap.servers": get_settings().kafka_bootstrap, "partitioner": "murmur2_random",
                         "enable.idempotence": True, "acks": "all"})
    producer.produce(topic, key=key, value=value, headers=list(headers.items()), partition=partition)
    assert producer.flush(10) == 0


def trip_key(route_id: str) -> bytes:
    """The command topic's key for the route's trip on TRAVEL_DATE."""
    return domain_trip_key(route_id, date.fromisoformat(TRAVEL_DATE)).encode()


def queue_behind(ns: Namespace, partitions: list[int], count: int, reply_partition: int) -> None:
    """`count` queries spread over the partitions, for trips no worker knows (each is
    answered trip_not_found), waiting in the log for a worker to start."""
    producer = Producer({"bootstrap.servers": get_settings().kafka_bootstrap, "enable.idempotence": True,
                         # Batches of a busy gateway's size at most: a fetch returns at
                         # least one whole batch, whatever its byte limit says.
                         "batch.size": 16384})
    headers = [(topics.REPLY_TO, ns.topic(topics.REPLIES).encode()),
               (topics.REPLY_PARTITION, str(reply_partition).encode())]
    for n in range(count):
        query = on_trip("query_availability", f"W{n:09d}", rider("auditor"))
        producer.produce(ns.topic(topics.COMMANDS), key=trip_key(query["routeId"]), value=orjson.dumps(query),
                         headers=headers, partition=partitions[n % len(partitions)])
        producer.poll(0)
    assert producer.flush(30) == 0


def lifecycle(ns: Namespace) -> dict[str, list[Record]]:
    """Every lifecycle event so far, bookings', trips' and waiting-list entries', by event
    id (a re-emitted event appears twice)."""
    events: dict[str, list[Record]] = defaultdict(list)
    for name in (*topics.LIFECYCLE, topics.TRIP_UPDATED, *topics.WAITLIST):
        for message in read_topic(ns.topic(name)):
            events[as_json(message)["eventId"]].append(message)
    return events


def replies_by_command(ns: Namespace) -> dict[str, list[bytes]]:
    replies: dict[str, list[bytes]] = defaultdict(list)
    for message in read_topic(ns.topic(topics.REPLIES)):
        replies[message.key.decode()].append(message.value)
    return replies


# -- invariants and replay -------------------------------------------------------------------


def assert_one_outcome_each(replies: dict[str, list[bytes]], sent: list[str]) -> None:
    """Exactly one outcome per command id: answered, and every answer byte-identical."""
    missing = [c for c in sent if c not in replies]
    assert not missing, f"{len(missing)} commands never answered, e.g. {missing[:3]}"
    differing = {c: r for c, r in replies.items() if len(set(r)) > 1}
    assert not differing, f"commands answered differently: {list(differing.items())[:2]}"


def assert_no_seat_twice(accepted: list[dict[str, Any]]) -> None:
    """Bookings of one trip that share a leg never share a seat (the test trips have legs
    0 and 1; a LAG-OYO journey uses both)."""
    legs = {("LAG", "IBD"): {0}, ("IBD", "OYO"): {1}, ("LAG", "OYO"): {0, 1}}
    taken: set[tuple[str, int, int]] = set()
    for booking in accepted:
        for leg in legs[(booking["originStopId"], booking["destinationStopId"])]:
            for seat in booking["seatNumbers"]:
                spot = (booking["routeId"], leg, seat)
                assert spot not in taken, f"seat {seat} on leg {leg} of {booking['routeId']} sold twice"
                taken.add(spot)


def assert_conserved(availability: list[dict[str, Any]], capacity: int) -> None:
    for leg in availability:
        assert leg["free"] + leg["held"] + leg["sold"] == capacity, leg
        assert min(leg["free"], leg["held"], leg["sold"]) >= 0, leg


@dataclass
class Replayed:
    processor: InMemory
    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    records: int = 0

    def send(self, topic: str, key: bytes, value: bytes, _partition: int | None, _headers) -> None:
        self.sent.append((topic, key, value))


def committed_offsets(ns: Namespace) -> dict[int, int]:
    """How far the worker group acknowledged each command partition."""
    consumer = Consumer({"bootstrap.servers": get_settings().kafka_bootstrap, "group.id": ns.worker_id,
                         "enable.auto.commit": False})
    try:
        wanted = [TopicPartition(ns.topic(topics.COMMANDS), p) for p in range(PARTITIONS)]
        return {tp.partition: max(tp.offset, 0) for tp in consumer.committed(wanted, timeout=10)}
    finally:
        consumer.close()


def replay(ns: Namespace, partition: int, end: int) -> Replayed:
    """A partition's command log up to `end`, record by record, into a fresh processor."""
    replayed = Replayed(InMemory(settings_policy(ns)))
    for record in read_topic(ns.topic(topics.COMMANDS), [partition]):
        if record.offset >= end:
            break
        replayed.processor.process(record, replayed.send)
        replayed.processor.flush()
        replayed.records += 1
    return replayed


def settings_policy(ns: Namespace):
    """The business rules the namespace's workers run with (their env, not ours)."""
    from app.config import Settings

    return Settings(**{k.lower(): v for k, v in ns.env.items() if k.lower() in Settings.model_fields}).policy()


def changelog(ns: Namespace, table: str, partition: int) -> dict[bytes, bytes]:
    latest: dict[bytes, bytes] = {}
    for m in read_topic(f"{ns.worker_id}-{table}-changelog", [partition]):
        if m.value is None:
            latest.pop(m.key, None)
        else:
            latest[m.key] = m.value
    return latest


def settle(ns: Namespace, timeout_s: float = 120) -> None:
    """Brings the log to rest with every record processed and committed: faust commits
    offsets only every commit interval, not on shutdown, so a stopped worker leaves its
    last records processed (in the changelog) but unacknowledged. A worker that emits no
    ticks, on an empty data dir (a full rebuild from the changelogs), catches up to the
    end of the log; once its group's offsets reach the end, it is stopped."""
    settler = ns.start_worker("settler", ns.workdir / "settler-data", TICK_INTERVAL_SECONDS="86400")
    try:
        def caught_up() -> bool:
            ends = {m.partition: m.offset + 1 for m in last_records(ns.topic(topics.COMMANDS))}
            committed = committed_offsets(ns)
            return all(committed.get(p, 0) >= end for p, end in ends.items())
        wait_for("the settling worker to commit the whole log", caught_up, timeout_s)
    finally:
        settler.stop()


def last_records(name: str) -> list[Record]:
    consumer = Consumer({"bootstrap.servers": get_settings().kafka_bootstrap, "group.id": f"reader-{uuid.uuid4()}"})
    try:
        found = []
        for p in consumer.list_topics(name, timeout=10).topics[name].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            if high > low:
                found.append(Record(name, p, high - 1, 0, None, None, {}))
        return found
    finally:
        consumer.close()


def assert_replay_matches(ns: Namespace) -> int:
    """Determinism (invariant 5): once the log is at rest (`settle`), each partition's log
    replayed into a fresh processor yields the tables the workers left (from their
    changelogs), every reply the workers sent, byte for byte, and every lifecycle event
    they published, byte for byte, and no other. Returns the records replayed."""
    settle(ns)
    live_replies = replies_by_command(ns)
    live_events = {event_id: {m.value for m in ms} for event_id, ms in lifecycle(ns).items()}
    replayed_events: dict[str, bytes] = {}
    records = 0
    for partition, end in committed_offsets(ns).items():
        replayed = replay(ns, partition, end)
        for table in (TRIP_STATE, HOLD_DUE):
            assert replayed.processor.table(table, partition) == changelog(ns, table, partition), \
                f"{table} differs on {partition}"
        # The replay runs un-namespaced: its events go to the plain topic names, its
        # replies where the commands' headers say.
        for topic, key, value in replayed.sent:
            if topic == ns.topic(topics.REPLIES):
                assert set(live_replies[key.decode()]) == {value}, f"reply to {key!r} differs"
            elif topic != topics.DEAD_LETTERS:
                replayed_events[orjson.loads(value)["eventId"]] = value
        records += replayed.records
    assert {k: {v} for k, v in replayed_events.items()} == live_events
    return records


# -- load ----------------------------------------------------------------------------------


def booking_stream(route_ids: list[str], count: int, seed: int) -> Iterator[dict[str, Any]]:
    journeys = [("LAG", "IBD"), ("IBD", "OYO"), ("LAG", "OYO")]
    chance = random.Random(seed)
    for n in range(count):
        origin, destination = chance.choice(journeys)
        yield create_booking(chance.choice(route_ids), f"rider-{n}", chance.randint(1, 3), origin, destination)


@dataclass
class Progress:
    answered: int = 0


async def send_all(client: BookingClient, commands: list[dict[str, Any]], progress: Progress | None = None,
                   in_flight: int = 32, deadline_s: float = 120) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(in_flight)
    progress = progress or Progress()

    async def one(command: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            reply = await send_until_answered(client, command, deadline_s)
            progress.answered += 1
            return reply

    return await asyncio.gather(*(one(c) for c in commands))


# -- in process --------------------------------------------------------------------------

POLICY = Policy(hold_minutes=10, payment_hold_minutes=15)
T0 = int(time.time() * 1000)
PARTITION = 3


class Log:
    """One partition of the command topic and a processor reading it, one record per batch."""

    def __init__(self, policy: Policy = POLICY) -> None:
        self.offset = 0
        self.processor = InMemory(policy)
        self.states = self.processor.table(TRIP_STATE, PARTITION)
        self.due = self.processor.table(HOLD_DUE, PARTITION)
        self.sent: list[tuple[str, bytes, bytes]] = []

    def send(self, topic, key, value, _partition, _headers) -> None:
        self.sent.append((topic, key, value))

    def put(self, key: bytes, value: bytes, at: int, headers: dict[str, bytes] | None = None) -> list:
        before = len(self.sent)
        record = Record(topics.COMMANDS, PARTITION, self.offset, at, key, value,
                        headers if headers is not None else {topics.REPLY_TO: b"replies"})
        self.offset += 1
        self.processor.process(record, self.send)
        self.processor.flush()
        return self.sent[before:]

    def command(self, command: dict, at: int) -> dict:
        route_id = command["routeId"] if "routeId" in command else \
            (command.get("bookingId") or command["entryId"]).split(".")[0]
        sent = self.put(trip_key(route_id), orjson.dumps(command), at)
        return orjson.loads(sent[-1][2])

    def tick(self, at: int, value: bytes | None = None) -> list:
        return self.put(topics.TICK_KEY, value or tick_value(at), at, headers={})
