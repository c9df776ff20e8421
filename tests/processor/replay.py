"""Determinism: the command log, replayed into a fresh processor, gives back the tables,
replies and events the workers left."""

from dataclasses import dataclass, field

import orjson

from app.config import Settings
from app.tables.trips import HOLD_DUE, TRIP_STATE
from app.worker.batch import InMemory
from tests.processor.namespace import Namespace
from tests.processor.reading import changelog, committed_offsets, lifecycle, replies_by_command
from tests.support.kafka import last_records, read_topic
from tests.support.waiting import wait_for


@dataclass
class Replayed:
    processor: InMemory
    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    records: int = 0

    def send(self, topic: str, key: bytes, value: bytes, _partition: int | None, _headers) -> None:
        self.sent.append((topic, key, value))


def replay(ns: Namespace, partition: int, end: int) -> Replayed:
    """A partition's command log up to `end`, record by record, into a fresh processor."""
    replayed = Replayed(InMemory(settings_policy(ns), topics=ns.topics))
    for record in read_topic(ns.topics.commands, [partition]):
        if record.offset >= end:
            break
        replayed.processor.process(record, replayed.send)
        replayed.processor.flush()
        replayed.records += 1
    return replayed


def settings_policy(ns: Namespace):
    """The business rules the namespace's workers run with (their env, not ours)."""
    return Settings(**{k.lower(): v for k, v in ns.env.items() if k.lower() in Settings.model_fields}).policy()


def settle(ns: Namespace, timeout_s: float = 120) -> None:
    """Brings the log to rest with every record processed and committed: faust commits
    offsets only every commit interval, not on shutdown, so a stopped worker leaves its
    last records processed (in the changelog) but unacknowledged. A worker that emits no
    ticks, on an empty data dir (a full rebuild from the changelogs), catches up to the
    end of the log; once its group's offsets reach the end, it is stopped."""
    settler = ns.start_worker("settler", ns.workdir / "settler-data", TICK_INTERVAL_SECONDS="86400")
    try:
        def caught_up() -> bool:
            ends = {m.partition: m.offset + 1 for m in last_records(ns.topics.commands)}
            committed = committed_offsets(ns)
            return all(committed.get(p, 0) >= end for p, end in ends.items())
        wait_for("the settling worker to commit the whole log", caught_up, timeout_s)
    finally:
        settler.stop()


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
        # The replay sends to the namespace's topics, its replies where the commands'
        # headers say.
        for topic, key, value in replayed.sent:
            if topic == ns.topics.replies:
                assert set(live_replies[key.decode()]) == {value}, f"reply to {key!r} differs"
            elif topic != ns.topics.dead_letters:
                replayed_events[orjson.loads(value)["eventId"]] = value
        records += replayed.records
    assert {k: {v} for k, v in replayed_events.items()} == live_events
    return records
