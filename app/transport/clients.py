"""The configuration of every confluent-kafka client of the system, and why each setting
is what it is (the worker's own clients are faust's: app.worker.faust_app).

Two base builders, `producer_config` and `consumer_config`, hold what every producer and
every consumer share; the configs of the long-running clients are built on them here, by
role. A caller adds what only it needs as `extra` (a bench trading durability for speed,
a reader that wants to know where a partition ends).
"""

import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from app.config import Settings

Config = dict[str, Any]


def process_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def producer_config(bootstrap: str, client_id: str, extra: Mapping[str, Any] | None = None) -> Config:
    return {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        # librdkafka's retries after a lost ack or a leader change neither duplicate nor
        # reorder what one producer sent to a partition; it implies acks=all: a record
        # acknowledged is on min.insync.replicas brokers.
        "enable.idempotence": True,
        **(extra or {}),
    }


def consumer_config(bootstrap: str, group: str, extra: Mapping[str, Any] | None = None) -> Config:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        # Positions are ours to commit (or not at all): the client never commits behind our back.
        "enable.auto.commit": False,
        **(extra or {}),
    }


def command_producer_config(settings: Settings) -> Config:
    """Commands to the command topic: the gateway's, the upstream client's (app.client),
    tools.deadletters' and the benchmarks' load generators."""
    return producer_config(settings.kafka_bootstrap, f"openride-gateway-{process_identity()}", {
        "acks": "all",
        "linger.ms": 1,
        # faust (aiokafka) places keys like Java, with murmur2; librdkafka's default
        # (CRC32) would send a trip's commands to a partition another agent owns.
        "partitioner": "murmur2_random",
        # Bounds how long a command may sit in the producer during a broker outage:
        # past this the client was long told 503, and a late hold would only expire.
        "message.timeout.ms": 30_000,
        # A metadata request must never create a topic with the broker's default
        # partition count: the command topic's count is a contract with the workers.
        "allow.auto.create.topics": False,
    })


def reply_consumer_config(settings: Settings) -> Config:
    """One reply partition, assigned (app.transport.bus.ReplyWaiter)."""
    # The group is never joined (we assign); unique so no commit can ever clash.
    return consumer_config(settings.kafka_bootstrap, f"openride-gateway-{uuid.uuid4()}", {
        "client.id": f"openride-gateway-replies-{process_identity()}",
        "enable.auto.offset.store": False,
        "auto.offset.reset": "latest",
    })


# The sink's consumer: about a full batch of events (SINK_BATCH_SIZE records of a few hundred bytes).
SINK_FETCH_MIN_BYTES = 1 << 20
SINK_SESSION_TIMEOUT_MS = 10_000


def sink_consumer_config(settings: Settings) -> Config:
    """The lifecycle topics into Postgres (sinks.main): positions come from Postgres."""
    config = consumer_config(settings.kafka_bootstrap, settings.sink_group, {
        "client.id": "openride-sink",
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # A killed sink's partitions move after 10 s rather than the default 45 s; a batch
        # takes milliseconds, so heartbeats are never late for the sink's own sake.
        "session.timeout.ms": SINK_SESSION_TIMEOUT_MS,
        # Only what producers committed: a transactional producer's aborted events are not facts.
        "isolation.level": "read_committed",
        # The broker answers a fetch once it holds a batch's worth of events or the batch
        # wait is over, instead of as soon as one event arrives: it cuts the broker's CPU
        # per command (docs/benchmarks/NOTES.md).
        "fetch.min.bytes": SINK_FETCH_MIN_BYTES,
        "fetch.wait.max.ms": settings.sink_batch_wait_ms,
    })
    if settings.sink_instance_id:
        config["group.instance.id"] = settings.sink_instance_id
    return config


def sink_dead_letter_producer_config(settings: Settings) -> Config:
    """The sink's dead letters: flushed before the batch that passes them commits."""
    return producer_config(settings.kafka_bootstrap, "openride-sink-dlq", {"linger.ms": 5})
