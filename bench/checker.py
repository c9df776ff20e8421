"""The invariant checker of the chaos run (docs/design.md §13): rebuilds the truth from the
command log with the pure core, then compares every other copy of it.

Truth: for each partition of booking.commands, in log order, `app.domain.handle` over a
fresh in-memory `TripState` per trip, with the broker-stamped record time, rendering the
replies and lifecycle events the way the processor does (`app.wire.outbound`).

Compared with it:
- the replies topic (every copy of a command's reply byte-identical to the truth's: 3, 5),
  and the replies the clients saw (over Kafka and over HTTP: 3, 7);
- the lifecycle topics (every true event there, byte-identical, nothing else: 5, 7);
- the processor's tables, through the query_availability commands sent at the end (their
  replies are in the log, so they must equal the truth's; and legs add up: 1, 2);
- Postgres (every booking row and its history equal the truth's final state: 6);
- the truth itself: no oversold leg, waiting-list offers counted as holds (1), a hold
  resolved at most once (4), 0 ≤ refund ≤ paid (8); and, command by command, the
  waiting list's order (bench.invariants.waitlist_problems): no offer skipping an earlier
  fitting entry, no entry offered twice at once, no walk-in taking seats a waiting entry
  fitted in, no free seats left unoffered to an entry they fit;
- Postgres's waiting-list entries equal the truth's.
"""

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from confluent_kafka import Consumer, TopicPartition
from pydantic import ValidationError

from app.worker.ticks import expiry_record
from app.worker.processor import Record
from app.config import Settings
from app.transport.clients import consumer_config
from app.domain.booking import HOLDING, Booking, Status, occupies_seats
from app.domain.handle import handle
from app.domain.money import format_minor
from app.domain.state import TripState
from app.domain.waitlist import EntryStatus
from app.wire.topics import TICK_KEY, Topics
from app.wire.commands import TICK, parse_command
from app.wire.outbound import lifecycle_events, reply
from bench.invariants import (
    availability_problems,
    before_command,
    oversold_legs,
    postgres_oversold,
    waitlist_problems,
)

WAITLIST_PROBLEMS = ("offer_skipped", "offered_twice", "walk_in_took_due_seats", "offer_not_made")

RESOLVED = {Status.PAID, Status.CONFIRMED, Status.CANCELLED, Status.EXPIRED}


@dataclass
class Truth:
    states: dict[str, TripState] = field(default_factory=lambda: defaultdict(TripState))
    replies: dict[str, bytes] = field(default_factory=dict)  # command id -> reply
    events: dict[str, bytes] = field(default_factory=dict)  # event id -> event
    unstable: int = 0  # a command id answered differently by the core on a re-read
    invalid: int = 0  # records the processor dead-letters
    waitlist: Counter[str] = field(default_factory=Counter)  # bench.invariants.waitlist_problems, summed


@dataclass
class ClientLog:
    """What the clients saw: Kafka replies by command id; HTTP answers as
    (command id, status code, booking id or None)."""

    kafka: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    http: list[tuple[str, int, str | None]] = field(default_factory=list)
    queries: list[tuple[str, int]] = field(default_factory=list)  # (command id, capacity) of table checks


def read_topics(settings: Settings, names: tuple[str, ...],
                until: Mapping[tuple[str, int], int] | None = None) -> Iterator[Any]:
    """Every record of the topics (of a partition in `until`, only those before its offset),
    each partition in offset order (partitions interleave)."""
    consumer = Consumer(consumer_config(settings.kafka_bootstrap, "openride-checker"))
    try:
        remaining: dict[tuple[str, int], int] = {}
        assignment = []
        for name in names:
            for partition in consumer.list_topics(name, timeout=10).topics[name].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
                high = min(high, (until or {}).get((name, partition), high))
                if high > low:
                    remaining[name, partition] = high
                    assignment.append(TopicPartition(name, partition, low))
        consumer.assign(assignment)
        while remaining:
            batch = consumer.consume(1000, 10)
            if not batch:  # what is left holds no records (e.g. transaction markers)
                break
            for message in batch:
                place = (message.topic(), message.partition())
                if message.error() is not None or place not in remaining:
                    continue
                if message.offset() + 1 >= remaining[place]:
                    del remaining[place]
                yield message
    finally:
        consumer.close()


def committed_offsets(settings: Settings, group: str, topic: str) -> dict[tuple[str, int], int]:
    """Where a consumer group stands on each partition of a topic (0 where it never committed)."""
    consumer = Consumer(consumer_config(settings.kafka_bootstrap, group))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in committed}


def rebuild_truth(settings: Settings, processed: Mapping[tuple[str, int], int] | None = None) -> Truth:
    """The core over each partition's log in order (up to `processed`, the workers'
    committed offsets, when given). A tick stands for `expire_holds` on every trip of its
    partition (the worker visits only those its hold-due index lists, which are all that
    have holds due, so the expiries are the same)."""
    truth = Truth()
    policy = settings.policy()
    trips_of: dict[int, list[str]] = defaultdict(list)
    for message in read_topics(settings, (Topics.of(settings).commands,), processed):
        record = Record(message.topic(), message.partition(), message.offset(), message.timestamp()[1],
                        message.key(), message.value())
        if record.key == TICK_KEY:
            tick_id = TICK.validate_json(record.value or b"").tick_id
            for trip in trips_of[record.partition]:
                apply(truth, expiry_record(record, trip, tick_id), policy)
            continue
        key = apply(truth, record, policy)
        if key is not None and key not in trips_of[record.partition]:
            trips_of[record.partition].append(key)
    return truth


def apply(truth: Truth, record: Record, policy) -> str | None:
    """One command record into the truth; the trip key it concerns, if valid."""
    try:
        wire = parse_command(record.value or b"")
    except ValidationError:
        truth.invalid += 1
        return None
    key = record.key.decode() if record.key else None
    if key != wire.key():
        truth.invalid += 1
        return None
    command = wire.to_domain()
    state = truth.states[key]
    before = before_command(state)
    outcome = handle(state, command, record.timestamp_ms, policy)
    if before is not None and not outcome.duplicate:  # a duplicate re-emits events it does not apply again
        truth.waitlist += waitlist_problems(before, outcome.events, record.timestamp_ms, policy)
    body = reply(state, outcome, command)
    if truth.replies.setdefault(wire.command_id, body) != body:
        truth.unstable += 1
    for _, _, value in lifecycle_events(state, outcome):
        event_id = orjson.loads(value)["eventId"]
        if truth.events.setdefault(event_id, value) != value:
            truth.unstable += 1
    return key


def copies(settings: Settings, names: tuple[str, ...], id_of) -> dict[str, set[bytes]]:
    found: dict[str, set[bytes]] = defaultdict(set)
    for message in read_topics(settings, names):
        found[id_of(message)].add(message.value())
    return found


def compare_topics(settings: Settings, truth: Truth, counts: dict[str, int]) -> None:
    topics = Topics.of(settings)
    replies = copies(settings, (topics.replies,), lambda m: m.key().decode())
    counts["duplicates"] += sum(len(values) > 1 for values in replies.values())
    counts["reply_diff"] += sum(1 for command_id, values in replies.items()
                                if command_id in truth.replies and values != {truth.replies[command_id]})
    events = copies(settings, (*topics.lifecycle, topics.trip_updated, *topics.waitlist),
                    lambda m: orjson.loads(m.value())["eventId"])
    counts["duplicates"] += sum(len(values) > 1 for values in events.values())
    counts["lost"] += sum(event_id not in events for event_id in truth.events)
    counts["event_diff"] += sum(1 for event_id, values in events.items()
                                if truth.events.get(event_id) not in values or len(values) > 1)


def compare_clients(truth: Truth, clients: ClientLog, counts: dict[str, int]) -> None:
    for command_id, seen in clients.kafka.items():
        expected = truth.replies.get(command_id)
        if expected is None:
            counts["lost"] += any(body.get("ok") for body in seen)
            continue
        counts["reply_diff"] += sum(body != orjson.loads(expected) for body in seen)
    booking_of: dict[str, set[str]] = defaultdict(set)
    for command_id, status, booking_id in clients.http:
        expected = orjson.loads(truth.replies[command_id]) if command_id in truth.replies else None
        if status == 201:
            booking_of[command_id].add(booking_id)
            if expected is None or not expected["ok"]:
                counts["lost"] += 1
            elif expected["booking"]["id"] != booking_id:
                counts["reply_diff"] += 1
        elif expected is not None and expected["ok"] and 400 <= status < 500:
            counts["reply_diff"] += 1
    counts["duplicates"] += sum(len(ids) > 1 for ids in booking_of.values())


def compare_tables(truth: Truth, clients: ClientLog, counts: dict[str, int]) -> None:
    for command_id, capacity in clients.queries:
        seen = clients.kafka.get(command_id)
        expected = truth.replies.get(command_id)
        if not seen or expected is None or seen[-1] != orjson.loads(expected):
            counts["table_diff"] += 1
            continue
        counts["oversold_legs"] += availability_problems(seen[-1]["availability"], capacity)


def check_truth(truth: Truth, counts: dict[str, int]) -> None:
    holding, capacity = [], {}
    for key, state in truth.states.items():
        if state.trip is None:
            continue
        capacity[key] = state.trip.capacity
        for booking in state.bookings.values():
            if occupies_seats(booking.status):
                holding.append((key, booking.first_leg, booking.last_leg, booking.seats))
            counts["hold_resolved_twice"] += sum(
                move.source in HOLDING and move.target in RESOLVED for move in booking.transitions) > 1
            view = booking.view()
            counts["money"] += not 0 <= view.refund_amount <= view.amount_paid
        for entry in state.entries.values():
            if entry.status is EntryStatus.OFFERED:  # an offer holds its seats as a hold does
                holding.append((key, entry.first_leg, entry.last_leg, entry.view().seats))
    counts["oversold_legs"] += oversold_legs(holding, capacity)


def compare_postgres(database_url: str, truth: Truth, counts: dict[str, int]) -> None:
    bookings: dict[str, tuple[Booking, str]] = {
        booking.booking_id: (booking, key) for key, state in truth.states.items() for booking in state.bookings.values()}
    with psycopg.connect(database_url) as conn:
        rows = {row[0]: row[1:] for row in conn.execute(
            "SELECT id, status, version, seat_numbers, refund_amount FROM bookings")}
        history = dict(conn.execute("SELECT booking_id, count(*) FROM booking_history GROUP BY booking_id").fetchall())
    for booking_id, (booking, _) in bookings.items():
        view = booking.view()
        expected = (view.status.value, view.version, list(booking.seats), Decimal(format_minor(view.refund_amount)))
        counts["sink_diff"] += rows.get(booking_id) != expected
        counts["sink_diff"] += history.get(booking_id, 0) != len(booking.transitions)
    counts["sink_diff"] += len(set(rows) - set(bookings))
    counts["oversold_legs"] += postgres_oversold(database_url)["oversold_legs"]
    compare_entries(database_url, truth, counts)


def compare_entries(database_url: str, truth: Truth, counts: dict[str, int]) -> None:
    """Every waiting-list entry's row as the truth ends it."""
    entries = {entry.entry_id: entry for state in truth.states.values() for entry in state.entries.values()}
    with psycopg.connect(database_url) as conn:
        rows = {row[0]: row[1:] for row in conn.execute(
            "SELECT id, status, version, seat_numbers, booking_id FROM waitlist_entries")}
    for entry_id, entry in entries.items():
        view = entry.view()
        counts["sink_diff"] += rows.get(entry_id) != (view.status.value, view.version, list(view.seats),
                                                      view.booking_id)
    counts["sink_diff"] += len(set(rows) - set(entries))


def check(settings: Settings, database_url: str, clients: ClientLog,
          processed: Mapping[tuple[str, int], int] | None = None) -> dict[str, int]:
    truth = rebuild_truth(settings, processed)
    counts: dict[str, int] = defaultdict(int)
    for name in ("duplicates", "lost", "oversold_legs", "sink_diff", "reply_diff", "event_diff", "table_diff",
                 "hold_resolved_twice", "money", *WAITLIST_PROBLEMS):
        counts[name] = 0
    counts["unstable_core"] = truth.unstable
    counts.update({name: truth.waitlist[name] for name in WAITLIST_PROBLEMS})
    compare_topics(settings, truth, counts)
    compare_clients(truth, clients, counts)
    compare_tables(truth, clients, counts)
    check_truth(truth, counts)
    compare_postgres(database_url, truth, counts)
    return dict(counts)

