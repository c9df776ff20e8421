"""Helpers for the sink tests: the sink as a subprocess, records for it on Kafka, and
reading back what it wrote. The database, Kafka and waiting helpers they share with other
folders are in tests/support."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from prometheus_client.parser import text_string_to_metric_families

from app.config import ROOT
from gateway import queries
from sinks.events import SUBSCRIBED
from tests.support.kafka import bootstrap
from tests.support.postgres import rows, scalar
from tests.support.scenario import expected_bookings, expected_history
from tests.support.waiting import wait_for

# -- Postgres ---------------------------------------------------------------------------


def booking_ids_like(url: str, prefix: str) -> list[str]:
    return [r[0] for r in rows(url, "SELECT id FROM bookings WHERE route_id LIKE %s ORDER BY id", (prefix + "%",))]


def dump_of_routes(url: str, prefix: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of every row the events of these routes produced."""
    like = (prefix + "%",)
    return {
        "bookings": rows(url, "SELECT * FROM bookings WHERE route_id LIKE %s ORDER BY id", like),
        "booking_history": rows(url, "SELECT * FROM booking_history WHERE booking_id LIKE %s "
                                     "ORDER BY event_id, seq", like),
        "trips": rows(url, "SELECT * FROM trips WHERE route_id LIKE %s ORDER BY trip_key", like),
    }


def duplicate_history_rows(url: str) -> int:
    """Transitions recorded more than once (a replayed event written twice)."""
    return scalar(url, "SELECT count(*) - count(DISTINCT (booking_id, version)) FROM booking_history")


def read_back(url: str, booking_ids: list[str]) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """The bookings and histories as the gateway would read them (gateway.queries)."""

    async def read() -> tuple[dict[str, dict], dict[str, list[dict]]]:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            found = {bid: await queries.booking_by_id(conn, bid) for bid in booking_ids}
            moves = {bid: await queries.history(conn, bid) for bid in booking_ids}
        return found, moves

    return asyncio.run(read())


def wait_until(condition: Callable[[], bool], timeout: float, message: str, every: float = 0.05) -> None:
    wait_for(message, condition, timeout, every)


# Generous: the machine is shared and slow; a test that passes waits only as long as it must.
CATCH_UP_SECONDS = 120


def progress(url: str, prefix: str) -> tuple[int, int]:
    """(bookings, history rows) of this test's routes."""
    return (scalar(url, "SELECT count(*) FROM bookings WHERE id LIKE %s", (prefix + "%",)),
            scalar(url, "SELECT count(*) FROM booking_history WHERE booking_id LIKE %s", (prefix + "%",)))


def wait_for_log(url: str, records, prefix: str, sink: "SinkProcess") -> None:
    """Until every booking is at its newest version and every transition is recorded."""
    newest = {bid: b["version"] for bid, b in expected_bookings(records).items()}
    transitions = sum(len(moves) for moves in expected_history(records).values())

    def caught_up() -> bool:
        stored = dict(rows(url, "SELECT id, version FROM bookings WHERE id LIKE %s", (prefix + "%",)))
        return stored == newest and progress(url, prefix)[1] == transitions

    try:
        wait_until(caught_up, CATCH_UP_SECONDS, "the sink did not catch up with the log")
    except AssertionError:
        raise AssertionError(f"sink did not catch up; its log:\n{sink.log()[-4000:]}") from None


def assert_equals_log(url: str, records) -> None:
    """Rows and history are exactly what the events say: nothing missing, nothing twice."""
    bookings = expected_bookings(records)
    found, moves = read_back(url, sorted(bookings))
    assert found == bookings
    assert moves == expected_history(records)


# -- Kafka ------------------------------------------------------------------------------


def partitions_of(topics: tuple[str, ...] | list[str]) -> list[tuple[str, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap(), "group.id": "sinktest-metadata"})
    try:
        metadata = consumer.list_topics(timeout=10)
        return [(t, p) for t in topics for p in sorted(metadata.topics[t].partitions)]
    finally:
        consumer.close()


def log_end_offsets(topics: tuple[str, ...] | list[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap(), "group.id": "sinktest-metadata"})
    try:
        return {(t, p): log_end(consumer, TopicPartition(t, p)) for t, p in partitions_of(topics)}
    finally:
        consumer.close()


ELECTION_PENDING = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                    KafkaError.UNKNOWN_TOPIC_OR_PART)


def log_end(consumer: Consumer, partition: TopicPartition, timeout: float = 60) -> int:
    """Retried while the broker says so: right after the topics are created, their
    leaders may not be elected yet (NOT_LEADER_FOR_PARTITION)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(partition, timeout=10)[1]
        except KafkaException as error:
            if error.args[0].code() not in ELECTION_PENDING or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_sink_at_log_end(url: str) -> None:
    """A fresh database would make the sink read the shared topics from their beginning:
    everything other engineers produced. Start it where the log ends now instead."""
    ends = log_end_offsets(SUBSCRIBED)
    with psycopg.connect(url) as conn:
        conn.cursor().executemany(
            "INSERT INTO sink_offsets (topic, partition, next_offset) VALUES (%s, %s, %s)",
            [(t, p, offset) for (t, p), offset in ends.items()],
        )


def produce(records: list[tuple[str, str | None, bytes]], headers: list | None = None,
            max_bytes: int = 1_000_000) -> None:
    producer = Producer({"bootstrap.servers": bootstrap(), "linger.ms": 10, "enable.idempotence": True,
                         "batch.num.messages": 10000, "message.max.bytes": max_bytes})
    failures: list[Any] = []

    def on_delivery(error, _message) -> None:
        if error is not None:
            failures.append(error)

    for topic, key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(30) == 0, "records still queued"
    assert not failures, failures


def consume_from(offsets: dict[tuple[str, int], int], accept: Callable[[Any], bool], wanted: int,
                 timeout: float) -> list[Any]:
    """Messages from the given positions on that `accept` keeps, until `wanted` of them."""
    consumer = Consumer({"bootstrap.servers": bootstrap(), "group.id": f"sinktest-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in offsets.items()])
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < wanted and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.2):
                if message.error() is None and accept(message):
                    found.append(message)
    finally:
        consumer.close()
    return found


# -- the sink as a process --------------------------------------------------------------


@dataclass
class SinkProcess:
    """`python -m sinks.main` on a test database, with its own consumer group."""

    database_url: str
    log_path: Path
    group: str = field(default_factory=lambda: f"sinktest-{uuid.uuid4().hex[:12]}")
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": self.database_url, "KAFKA_BOOTSTRAP": bootstrap(),
                "SINK_GROUP": self.group, "PYTHONUNBUFFERED": "1", "SINK_HTTP_PORT": "0", **self.extra_env}

    def start(self) -> None:
        log = self.log_path.open("a")
        self.process = subprocess.Popen([sys.executable, "-m", "sinks.main"], cwd=ROOT, env=self.env(),
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def stop(self, timeout: float = 15) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def ensure_stopped(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def monitor_url(self) -> str:
        """Where this run of the process serves /metrics and /health (it took a free port)."""
        found = re.findall(r"monitoring on (http://\S+) ", self.log())
        assert found, f"the sink has not started its HTTP server; its log:\n{self.log()[-2000:]}"
        return found[-1]

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.monitor_url() + path, timeout=10)

    def lag(self) -> dict[tuple[str, int], float]:
        """openride_sink_lag per partition, as Prometheus would scrape it."""
        families = text_string_to_metric_families(self.get("/metrics").text)
        return {(s.labels["topic"], int(s.labels["partition"])): s.value
                for family in families if family.name == "openride_sink_lag" for s in family.samples}
