"""Batches, in process (the broker tests run the same code in the worker):

- one recorded command log (waiting lists and seat choice included), handled one record
  at a time and in batches of many sizes, gives byte-identical replies, events and dead
  letters, in the same order, and the same tables;
- a batch's state is in the changelog before its local store has it, and both before
  any reply or event is produced; its positions move on only once all of them are on
  the broker; a failure anywhere leaves its positions where they were.
"""

import asyncio
import random
from collections import Counter

import orjson
import pytest

from app.worker.batch import Batches, BatchFailed, Durable, InMemory, Positions, Processor
from app.worker.ticks import tick_value
from app.worker.processor import Record
from app.domain.trip import MS_PER_MINUTE
from app.wire.topics import CONTRACT, REPLY_TO, TICK_KEY
from app.tables.partition import Partition
from app.tables.store import TripStore
from app.tables.trips import HOLD_DUE, TRIP_STATE
from tests.processor.commands import (
    PAYMENTS,
    create_booking,
    join_waitlist,
    made_up_booking,
    on_booking,
    on_entry,
    on_trip,
    publish_trip,
    rider,
    trip_key,
)
from tests.processor.in_process import POLICY, T0

ROUTES = ["RA", "RB", "RC", "RD"]
PARTITIONS = {route: index % 2 for index, route in enumerate(ROUTES)}
REASON = "Plans changed, sorry about it"
JOURNEYS = [("LAG", "IBD"), ("IBD", "OYO"), ("LAG", "OYO")]


def recorded_log(seed: int, commands: int) -> list[Record]:
    """A seeded mix on four trips over two partitions, each command chosen from the
    replies and events so far: creates (most of them refused once the trips fill), some
    with seats chosen, payment starts, payments (some late, after the hold expired),
    cancels, refunds, waiting-list joins, leaves and accepts of the seats offered (some
    late, after the offer expired), trip updates and a trip's cancel near the end,
    availability and seat-map queries, re-sent commands, made-up booking ids, malformed
    records and ticks; record time runs over a few hours, so holds and offers expire."""
    rng = random.Random(seed)
    log, records, sent = InMemory(POLICY), [], []
    offsets = Counter()
    now = T0
    held: list[tuple[str, dict]] = []
    confirmed: list[tuple[str, dict]] = []
    owed: list[tuple[str, dict]] = []
    listed: list[tuple[str, dict]] = []  # waiting-list entries joined, to leave
    offered: list[tuple[str, dict]] = []  # entries offered seats, to accept
    unanswered: list[tuple[str, dict, int]] = []  # every third offer: accepted late, if ever

    def put(partition: int, key: bytes, value: bytes, headers: dict | None = None) -> list:
        record = Record(CONTRACT.commands, partition, offsets[partition], now, key, value,
                        {REPLY_TO: b"replies"} if headers is None else headers)
        offsets[partition] += 1
        records.append(record)
        before = len(sent)
        log.process(record, lambda topic, k, v, p, h: sent.append((topic, k, v)))
        log.flush()
        for topic, _, value in sent[before:]:
            if topic == CONTRACT.waitlist_offered:
                entry = orjson.loads(value)["entry"]
                if len(offered) % 3 == 2:
                    unanswered.append((entry["routeId"], entry, len(records)))
                else:
                    offered.append((entry["routeId"], entry))
        return sent[before:]

    def command(document: dict, route: str) -> dict:
        replies = [orjson.loads(v) for topic, _, v in put(PARTITIONS[route], trip_key(route), orjson.dumps(document))
                   if topic == CONTRACT.replies or topic == "replies"]
        return replies[-1] if replies else {}

    for route in ROUTES:
        command(publish_trip(route, capacity=6), route)
    documents: list[tuple[dict, str]] = []
    for n in range(commands):
        now += rng.randrange(0, 10_000)
        route = rng.choice(ROUTES)
        roll = rng.random()
        if roll < 0.05 and documents:
            document, route = rng.choice(documents[-200:])  # re-sent: the same command id
        elif roll < 0.09:
            put(n % 2, TICK_KEY, tick_value(now), {})
            continue
        elif roll < 0.11:
            put(PARTITIONS[route], trip_key(route), b'{"type": "teleport"}')  # a dead letter
            continue
        elif roll < 0.15:
            made_up = made_up_booking(route, rng.randrange(10**15))
            document = on_booking("cancel_booking", made_up, rider("prober"), reason=REASON)
        elif roll < 0.20:
            document = on_trip("query_availability", route, rider("auditor"))
        elif roll < 0.21:
            document = publish_trip(route, capacity=rng.choice((6, 8)))
        elif n == commands * 9 // 10:
            document = on_trip("cancel_trip", "RA", reason="The bus broke down")
            route = "RA"
        elif roll < 0.32 and held:
            route, booking = held.pop(rng.randrange(len(held)))
            document = on_booking("payment_succeeded", booking["id"], PAYMENTS, paymentId=f"pay-{n}",
                                  amount=booking["totalPrice"])
        elif roll < 0.37 and held:
            route, booking = rng.choice(held)
            document = on_booking("initiate_payment", booking["id"], PAYMENTS, paymentId=f"start-{n}")
        elif roll < 0.45 and confirmed:
            route, booking = confirmed.pop(rng.randrange(len(confirmed)))
            document = on_booking("cancel_booking", booking["id"], rider(booking["riderId"]), reason=REASON)
        elif roll < 0.50 and owed:
            route, booking = owed.pop(rng.randrange(len(owed)))
            document = on_booking("refund_done", booking["id"], PAYMENTS, amount=booking["refundAmount"])
        elif roll < 0.54 and offered:
            route, entry = offered.pop(rng.randrange(len(offered)))
            document = on_entry("accept_offer", entry["id"], rider(entry["riderId"]))
        elif roll < 0.545 and unanswered and len(records) - unanswered[0][2] > 300:  # the offer ran out
            route, entry, _ = unanswered.pop(0)
            document = on_entry("accept_offer", entry["id"], rider(entry["riderId"]))
        elif 0.545 <= roll < 0.555 and listed:
            route, entry = listed.pop(rng.randrange(len(listed)))
            document = on_entry("leave_waitlist", entry["id"], rider(entry["riderId"]))
        elif roll < 0.62:
            origin, destination = rng.choice(JOURNEYS)
            document = join_waitlist(route, f"rider-{rng.randrange(50)}", rng.randint(1, 2), origin, destination)
        elif roll < 0.64:
            origin, destination = rng.choice(JOURNEYS)
            document = on_trip("query_seat_map", route, rider("auditor"), originStopId=origin,
                               destinationStopId=destination)
        else:
            origin, destination = rng.choice(JOURNEYS)
            document = create_booking(route, f"rider-{rng.randrange(50)}", rng.randint(1, 3), origin, destination)
            if roll < 0.67:
                document["seatNumbers"] = rng.sample(range(1, 7), document["seatsBooked"])
        documents.append((document, route))
        reply = command(document, route)
        booking = reply.get("booking") if reply.get("ok") else None
        if booking and booking["status"] == "HELD":
            held.append((route, booking))
        elif booking and booking["status"] == "CONFIRMED":
            confirmed.append((route, booking))
        elif booking and booking["status"] == "CANCELLED" and booking["refundStatus"] == "PENDING":
            owed.append((route, booking))
        entry = reply.get("entry") if reply.get("ok") else None
        if entry and entry["status"] == "WAITING":
            listed.append((route, entry))
    return records


def handled_in_batches(records: list[Record], sizes, trips_cached: int = 1_000) -> tuple[list, dict]:
    log, sent = InMemory(POLICY, trips_cached), []
    position = 0
    for size in sizes:
        for record in records[position:position + size]:
            log.process(record, lambda topic, k, v, p, h: sent.append((topic, k, v, p, dict(h))))
        log.flush()
        position += size
        if position >= len(records):
            break
    return sent, {place: table for place, table in log.tables.items() if table}


@pytest.fixture(scope="module")
def records() -> list[Record]:
    return recorded_log(seed=11, commands=3000)


def test_the_recorded_log_has_what_it_claims(records):
    sent, tables = handled_in_batches(records, [1] * len(records))
    kinds = Counter(topic for topic, *_ in sent)
    assert kinds[CONTRACT.expired] > 100 and kinds[CONTRACT.confirmed] > 50 and kinds[CONTRACT.refunded] > 50
    assert kinds[CONTRACT.refund_required] > 0 and kinds[CONTRACT.dead_letters] > 20 and kinds[CONTRACT.cancelled] > 20
    replies = [orjson.loads(value) for topic, _, value, *_ in sent if topic == "replies"]
    codes = Counter(reply["code"] for reply in replies)
    assert codes["seats_unavailable"] > 100 and codes["booking_not_found"] > 50 and codes["hold_expired"] > 0
    assert kinds[CONTRACT.waitlist_offered] > 50 and kinds[CONTRACT.waitlist_accepted] > 20
    assert kinds[CONTRACT.waitlist_offer_expired] > 10 and kinds[CONTRACT.waitlist_left] > 0
    assert kinds[CONTRACT.waitlist_cancelled] > 0 and codes["offer_expired"] > 0 and codes["seat_unavailable"] > 0
    assert {TRIP_STATE, HOLD_DUE} == {name for name, _ in tables}


@pytest.mark.parametrize("sizes", [
    pytest.param(lambda n: [2] * n, id="pairs"),
    pytest.param(lambda n: [37] * n, id="37"),
    pytest.param(lambda n: [n], id="all at once"),
    pytest.param(lambda n: [random.Random(n).randint(1, 300) for _ in range(n)], id="random sizes"),
])
@pytest.mark.parametrize("trips_cached", [1_000, 1], ids=["every trip cached", "one trip cached"])
def test_a_log_handled_in_batches_gives_what_it_gives_one_record_at_a_time(records, sizes, trips_cached):
    one_at_a_time = handled_in_batches(records, [1] * len(records))
    assert handled_in_batches(records, sizes(len(records)), trips_cached) == one_at_a_time


# -- the order in which a batch becomes durable -------------------------------------------


class Broker:
    """Records what happens, in order; what is sent is acknowledged when the test says."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.happened: list[tuple[str, ...]] = []
        self.unacknowledged: list[tuple[asyncio.Future, tuple[str, int], int]] = []
        self.offsets = Counter()
        self.fail_on = fail_on

    async def send(self, outputs):
        counts = Counter((output.topic, output.partition if output.partition is not None else 0)
                         for output in outputs)
        self.happened += [("sent", output.topic) for output in outputs]
        sent = {}
        for place, count in counts.items():
            sent[place] = asyncio.get_running_loop().create_future()
            self.unacknowledged.append((sent[place], place, count))
        return sent

    def acknowledge_all(self) -> None:
        for future, place, count in self.unacknowledged:
            self.happened += [("acked", place[0])] * count
            if place[0] == self.fail_on:
                future.set_exception(RuntimeError("MessageSizeTooLarge"))
            else:
                self.offsets[place] += count
                future.set_result(self.offsets[place] - 1)
        self.unacknowledged.clear()

    def write(self, table: str, partition: int, writes: dict, changelog_offset: int) -> None:
        self.happened.append(("local", table))


class InOrder:
    """The guard, with nothing skipped: each record as it comes."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = {}

    async def all_through(self, records: list[Record]) -> list[Record]:
        for record in records:
            self.next[record.topic, record.partition] = record.offset + 1
        return list(records)

    def expected(self, topic: str, partition: int) -> int:
        return self.next[topic, partition]


def batches_over(broker: Broker) -> tuple[Batches, Positions]:
    tables: dict = {}
    def open_partition(number: int) -> Partition:
        return Partition.over(number, tables.setdefault((TRIP_STATE, number), {}),
                              tables.setdefault((HOLD_DUE, number), {}))

    processor = Processor(TripStore(10), POLICY, CONTRACT, open_partition)
    positions = Positions()
    changelogs = {TRIP_STATE: "trip-state-changelog", HOLD_DUE: "hold-due-changelog"}
    return Batches(processor, InOrder(), Durable(broker, changelogs, broker), positions), positions


async def run_acknowledging(broker: Broker, batches: Batches, records: list[Record]) -> None:
    running = asyncio.ensure_future(batches.run(records))
    while not running.done():
        await asyncio.sleep(0.001)
        broker.acknowledge_all()
    await running


def a_batch() -> list[Record]:
    documents = [publish_trip("RZ"), create_booking("RZ", "rider-1", 2), create_booking("RZ", "rider-2")]
    return [Record(CONTRACT.commands, 1, offset, T0 + offset, trip_key("RZ"), orjson.dumps(document),
                   {REPLY_TO: b"replies"}) for offset, document in enumerate(documents)]


def test_a_batch_is_in_the_changelog_then_the_local_store_then_its_outputs_go_out():
    broker = Broker()
    batches, positions = batches_over(broker)
    asyncio.run(run_acknowledging(broker, batches, a_batch()))
    happened = broker.happened
    changelog = [i for i, (what, topic) in enumerate(happened) if topic.endswith("-changelog")]
    local = [i for i, (what, _) in enumerate(happened) if what == "local"]
    outputs = [i for i, (what, topic) in enumerate(happened) if not topic.endswith("-changelog") and what != "local"]
    assert changelog and local and outputs
    assert max(changelog) < min(local) < max(local) < min(outputs), happened
    assert sum(what == "sent" and topic == "replies" for what, topic in happened) == 3
    assert sum(what == "acked" for what, _ in happened) == sum(what == "sent" for what, _ in happened)
    assert positions.take() == {(CONTRACT.commands, 1): 3}


@pytest.mark.parametrize("failing", ["trip-state-changelog", "replies"])
def test_a_batch_that_fails_anywhere_moves_no_position(failing):
    broker = Broker(fail_on=failing)
    batches, positions = batches_over(broker)
    with pytest.raises(BatchFailed):
        asyncio.run(run_acknowledging(broker, batches, a_batch()))
    assert positions.take() == {}
    if failing.endswith("-changelog"):
        assert not any(what == "local" or topic == "replies" for what, topic in broker.happened)


def test_positions_move_on_only_after_every_output_is_acknowledged():
    broker = Broker()
    batches, positions = batches_over(broker)

    async def scenario() -> None:
        running = asyncio.ensure_future(batches.run(a_batch()))
        await asyncio.sleep(0.01)
        broker.acknowledge_all()  # the changelog
        await asyncio.sleep(0.01)
        assert any(place[0] == "replies" for _, place, _ in broker.unacknowledged)
        assert positions.take() == {} and not running.done()
        broker.acknowledge_all()  # the replies and events
        await running
        assert positions.take() == {(CONTRACT.commands, 1): 3}

    asyncio.run(scenario())


def test_holds_expire_in_a_batch_as_one_at_a_time():
    """Ticks and commands of many trips in one batch: the expiries are the same records."""
    log = [Record(CONTRACT.commands, 0, 0, T0, trip_key("RY"), orjson.dumps(publish_trip("RY")), {})]
    for n in range(1, 4):
        log.append(Record(CONTRACT.commands, 0, n, T0 + n, trip_key("RY"),
                          orjson.dumps(create_booking("RY", f"rider-{n}")), {}))
    log.append(Record(CONTRACT.commands, 0, 4, T0 + 11 * MS_PER_MINUTE, TICK_KEY,
                      tick_value(T0 + 11 * MS_PER_MINUTE), {}))
    one, batched = handled_in_batches(log, [1] * 5), handled_in_batches(log, [5])
    assert one == batched
    assert sum(topic == CONTRACT.expired for topic, *_ in batched[0]) == 3
