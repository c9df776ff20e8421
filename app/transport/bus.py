"""Kafka for the gateway: commands out through one idempotent producer, replies back
through a ReplyWaiter that owns one partition of the replies topic.

The request/reply pattern: each gateway process reads exactly one reply partition with
`assign()` (never `subscribe()`, so starting or stopping a gateway rebalances nobody),
names that partition in the command's headers, and the worker sends the reply there with
key = command id. The processes of one host (uvicorn workers) each take a partition of
their own (`claim_reply_partition`); processes on different hosts may land on the same
one, and each ignores the replies it is not waiting for.
"""

import asyncio
import fcntl
import logging
import os
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Any, Protocol

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from app.config import Settings
from app.transport.clients import command_producer_config, process_identity, reply_consumer_config
from app.wire.commands import claimed_command_id
from app.wire.topics import REPLAYED, REPLY_PARTITION, REPLY_TO, Topics

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
REPLY_BATCH = 500
METADATA_TIMEOUT_SECONDS = 5.0
RETRY_CONNECT_SECONDS = 1.0


class KafkaUnavailable(Exception):
    """The command could not be handed to Kafka, or the reply consumer is not ready."""


class ReplyTimeout(Exception):
    """No reply in time. The command may still apply: retrying with the same id is safe."""

    def __init__(self, command_id: str):
        super().__init__(f"no reply for command {command_id}")
        self.command_id = command_id


class RequestInFlight(Exception):
    """This process is already waiting for a reply to the same command id."""

    def __init__(self, command_id: str):
        super().__init__(f"command {command_id} is already in flight")
        self.command_id = command_id


def choose_reply_partition(partitions: int, identity: str | None = None) -> int:
    """A stable hash of (hostname, pid): processes spread over the reply partitions, and
    the choice is reproducible from the logs (Python's hash() is salted per process)."""
    return zlib.crc32((identity or process_identity()).encode()) % partitions


def reply_locks(topic: str, bootstrap: str) -> Path:
    """Where the gateway processes of this host lock the reply partitions they read."""
    return Path(tempfile.gettempdir()) / f"openride-gateway-{zlib.crc32(f'{bootstrap}/{topic}'.encode()):08x}"


def claim_reply_partition(partitions: int, topic: str, bootstrap: str,
                          identity: str | None = None) -> tuple[int, int | None]:
    """A reply partition that no other gateway process of this host reads, and the open
    lock file that holds it (None if none could be had). Each partition has a lock file in
    a directory shared by the host's processes for these brokers and this topic; a process
    takes the first free one from its hashed choice on, with flock, which the kernel
    releases when the process ends, however it ends. With every partition taken (more
    processes than partitions), the hashed choice, shared."""
    start = choose_reply_partition(partitions, identity)
    directory = reply_locks(topic, bootstrap)
    try:
        directory.mkdir(exist_ok=True)
        for offset in range(partitions):
            partition = (start + offset) % partitions
            lock = os.open(directory / f"{partition}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return partition, lock
            except BlockingIOError:
                os.close(lock)
    except OSError as error:
        log.warning("reply partition locks unavailable in %s: %s", directory, error)
    return start, None


class ReplyWaiter:
    """A background thread reading one reply partition and resolving the asyncio future
    registered for each reply's command id."""

    def __init__(self, settings: Settings, topic: str | None = None, partition: int | None = None):
        self.topic = topic = topic or Topics.of(settings).replies
        self._lock: int | None = None
        if partition is None:
            partition, self._lock = claim_reply_partition(settings.reply_partitions, topic, settings.kafka_bootstrap)
        self.partition = partition
        self._config = reply_consumer_config(settings)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._assigned = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def assigned(self) -> bool:
        return self._assigned.is_set()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="reply-waiter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    async def wait_assigned(self, timeout: float) -> bool:
        """True once the partition is assigned and positioned (checked without blocking
        the event loop)."""
        return await asyncio.to_thread(self._assigned.wait, timeout)

    def expect(self, command_id: str) -> asyncio.Future[dict[str, Any]]:
        """Registers interest in a reply; call before producing so no reply can beat it."""
        if command_id in self._pending:
            raise RequestInFlight(command_id)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        return future

    def waiting(self, command_id: str | None) -> asyncio.Future[dict[str, Any]] | None:
        return self._pending.get(command_id) if command_id is not None else None

    def forget(self, command_id: str, future: asyncio.Future[dict[str, Any]]) -> None:
        if self._pending.get(command_id) is future:
            del self._pending[command_id]

    # -- the consumer thread ------------------------------------------------------------

    def _run(self) -> None:
        consumer = self._connect_until_assigned()
        if consumer is None:
            return
        try:
            while not self._stopping.is_set():
                try:
                    self._deliver(next_batch(consumer))
                except KafkaException as error:  # librdkafka recovers from most by itself
                    log.warning("reply consumer: %s", error)
                    self._stopping.wait(POLL_SECONDS)
        finally:
            self._assigned.clear()
            consumer.close()

    def _connect_until_assigned(self) -> Consumer | None:
        """Retries until the broker answers, so a gateway started before Kafka becomes
        ready later (until then /health/ready says 503 and requests get 503)."""
        while not self._stopping.is_set():
            consumer = Consumer(self._config)
            try:
                self._assign_at_end(consumer)
                return consumer
            except KafkaException as error:
                log.warning("reply partition %s[%d] not assignable yet: %s", self.topic, self.partition, error)
                consumer.close()
                self._stopping.wait(RETRY_CONNECT_SECONDS)
        return None

    def _assign_at_end(self, consumer: Consumer) -> None:
        """Assigns the partition at its current end as an explicit offset. Assigning the
        symbolic OFFSET_END would resolve the offset later, when fetching starts, and a
        reply written before that moment would be skipped; with the high watermark read
        first, every reply to a command produced after this returns is at or past it."""
        metadata = consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_SECONDS).topics.get(self.topic)
        if metadata is None or metadata.error is not None or self.partition not in metadata.partitions:
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                            f"{self.topic} has no partition {self.partition}"))
        _, end = consumer.get_watermark_offsets(TopicPartition(self.topic, self.partition),
                                                timeout=METADATA_TIMEOUT_SECONDS)
        consumer.assign([TopicPartition(self.topic, self.partition, end)])
        self._deliver(consumer.consume(1, 0))  # a first poll starts the fetcher on the assignment
        log.info("reading replies from %s[%d] from offset %d", self.topic, self.partition, end)
        self._assigned.set()

    def _deliver(self, messages: list[Message]) -> None:
        resolved = [pair for message in messages if (pair := self._match(message)) is not None]
        if resolved and self._loop is not None:
            # One hop into the event loop per batch, not per reply.
            self._loop.call_soon_threadsafe(_resolve_all, resolved)

    def _match(self, message: Message) -> tuple[asyncio.Future[dict[str, Any]], dict[str, Any]] | None:
        if message.error() is not None:
            if message.error().code() != KafkaError._PARTITION_EOF:
                log.warning("reply consumer: %s", message.error())
            return None
        key = message.key()
        # The key is the command id: replies for other processes sharing this partition
        # are skipped without parsing them.
        if key is not None and key.decode(errors="replace") not in self._pending:
            return None
        try:
            body = orjson.loads(message.value() or b"")
        except orjson.JSONDecodeError:
            body = None
        command_id = body.get("commandId") if isinstance(body, dict) else None
        if not isinstance(command_id, str):
            log.warning("unreadable reply at %s[%d]@%d", message.topic(), message.partition(), message.offset())
            return None
        if (REPLAYED, b"true") in (message.headers() or ()):
            body[REPLAYED] = True
        # Plain dict operations are atomic under the GIL: the event loop thread adds and
        # forgets entries, this thread pops them; whoever pops first owns the future.
        future = self._pending.pop(command_id, None)
        return (future, body) if future is not None else None


def next_batch(consumer: Consumer) -> list[Message]:
    """Waits for one message, then takes whatever else is already fetched. (A single
    consume(n, timeout) would wait for n messages or the whole timeout: 100 ms a reply.)"""
    first = consumer.poll(POLL_SECONDS)
    if first is None:
        return []
    return [first, *consumer.consume(REPLY_BATCH - 1, 0)]


def _resolve_all(resolved: list[tuple[asyncio.Future[dict[str, Any]], dict[str, Any]]]) -> None:
    for future, body in resolved:
        if not future.done():  # it may have timed out meanwhile
            future.set_result(body)


class Bus(Protocol):
    """What the gateway and the upstream client need of a command bus: `CommandBus` below,
    or a test's own."""

    async def request(self, key: str, command: dict[str, Any], timeout: float) -> dict[str, Any]: ...

    @property
    def replies_assigned(self) -> bool: ...

    def kafka_reachable(self, timeout: float) -> bool: ...

    def publish(self, topic: str, key: str, value: bytes) -> None: ...


class CommandBus:
    """Produces commands and awaits their replies: the gateway's only way to change state."""

    def __init__(self, settings: Settings, commands_topic: str | None = None, replies_topic: str | None = None,
                 reply_partition: int | None = None):
        """The topics are the settings' (`Topics.of`) unless named."""
        self.commands_topic = commands_topic or Topics.of(settings).commands
        # Delivery reports for failures only, to one callback: a report per command that
        # did arrive is a Python call on the pump thread, contending with the event loop.
        self._producer = Producer({**command_producer_config(settings), "delivery.report.only.error": True,
                                   "on_delivery": self._undelivered})
        self._replies = ReplyWaiter(settings, replies_topic, reply_partition)
        self._headers = [(REPLY_TO, self._replies.topic.encode()),
                         (REPLY_PARTITION, str(self._replies.partition).encode())]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._pump: threading.Thread | None = None

    @property
    def reply_partition(self) -> int:
        return self._replies.partition

    @property
    def replies_assigned(self) -> bool:
        return self._replies.assigned

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._replies.start(self._loop)
        self._pump = threading.Thread(target=self._serve_delivery_reports, name="producer-pump", daemon=True)
        self._pump.start()

    async def wait_ready(self, timeout: float) -> bool:
        return await self._replies.wait_assigned(timeout)

    def stop(self, flush_seconds: float = 5.0) -> None:
        self._replies.stop()
        remaining = self._producer.flush(flush_seconds)
        if remaining:
            log.warning("%d commands still unsent at shutdown", remaining)
        self._stopping.set()
        if self._pump is not None:
            self._pump.join(timeout=5)

    async def request(self, key: str, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Produces the command and returns its reply. Raises ReplyTimeout (the command may
        still apply), KafkaUnavailable (it was not sent), RequestInFlight."""
        command_id = command["commandId"]
        if not self._replies.assigned and not await self._replies.wait_assigned(min(timeout, 1.0)):
            # Sending now could lose the reply: refuse instead, nothing was produced.
            raise KafkaUnavailable("the reply consumer is not assigned yet")
        future = self._replies.expect(command_id)
        try:
            self._produce(key, command, future)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise ReplyTimeout(command_id) from None
        finally:
            self._replies.forget(command_id, future)

    def kafka_reachable(self, timeout: float = 2.0) -> bool:
        """Blocking metadata round trip to the brokers (run it in a thread)."""
        try:
            metadata = self._producer.list_topics(self.commands_topic, timeout=timeout)
        except KafkaException:
            return False
        found = metadata.topics.get(self.commands_topic)
        return found is not None and found.error is None

    def publish(self, topic: str, key: str, value: bytes) -> None:
        """Fire and forget (the audit trail): a failure is logged, never raised."""
        try:
            self._producer.produce(topic, key=key.encode(), value=value)
        except (BufferError, KafkaException) as error:
            log.warning("not published to %s: %s", topic, error)

    def _produce(self, key: str, command: dict[str, Any], future: asyncio.Future[dict[str, Any]]) -> None:
        try:
            self._producer.produce(self.commands_topic, key=key.encode(), value=orjson.dumps(command),
                                   headers=self._headers)
        except (BufferError, KafkaException) as error:
            raise KafkaUnavailable(str(error)) from error

    def _undelivered(self, error: KafkaError, message: Message) -> None:
        """A record the producer gave up on (runs on the pump thread): a command's request
        fails at once with 503 instead of waiting out its reply timeout."""
        if message.topic() != self.commands_topic:
            log.warning("not delivered to %s: %s", message.topic(), error)
            return
        future = self._replies.waiting(claimed_command_id(message.value()))
        if future is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(_fail, future, KafkaUnavailable(f"command not delivered: {error}"))

    def _serve_delivery_reports(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(POLL_SECONDS)


def _fail(future: asyncio.Future[dict[str, Any]], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
