"""Sending commands to a namespace's workers: one until it is answered, many at once, or
a backlog queued in the log before a worker starts."""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Producer

from app.client import BookingClient, ReplyTimeout
from app.wire.topics import REPLY_PARTITION, REPLY_TO
from tests.processor.commands import on_trip, rider, trip_key
from tests.processor.namespace import Namespace
from tests.support.kafka import bootstrap


def answers(ns: Namespace, *commands: dict[str, Any], deadline_s: float = 120) -> list[dict[str, Any]]:
    """The reply to each command, sent in turn and resent until answered."""
    async def in_turn() -> list[dict[str, Any]]:
        async with ns.client() as client:
            return [await send_until_answered(client, command, deadline_s) for command in commands]
    return asyncio.run(in_turn())


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


def queue_behind(ns: Namespace, partitions: list[int], count: int, reply_partition: int) -> None:
    """`count` queries spread over the partitions, for trips no worker knows (each is
    answered trip_not_found), waiting in the log for a worker to start."""
    producer = Producer({"bootstrap.servers": bootstrap(), "enable.idempotence": True,
                         # Batches of a busy gateway's size at most: a fetch returns at
                         # least one whole batch, whatever its byte limit says.
                         "batch.size": 16384})
    headers = [(REPLY_TO, ns.topics.replies.encode()),
               (REPLY_PARTITION, str(reply_partition).encode())]
    for n in range(count):
        query = on_trip("query_availability", f"W{n:09d}", rider("auditor"))
        producer.produce(ns.topics.commands, key=trip_key(query["routeId"]), value=orjson.dumps(query),
                         headers=headers, partition=partitions[n % len(partitions)])
        producer.poll(0)
    assert producer.flush(30) == 0


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
