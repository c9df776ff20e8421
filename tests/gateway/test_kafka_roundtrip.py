"""The gateway's request/reply path through the real broker, on scratch topics. In place of
the faust worker, a responder thread runs either an echo (to check partitioning) or the
worker's own record handler, app.worker.processor (to check the command/reply contract).
The lead's end-to-end tests run the real worker, sink and gateway processes.

Keys land where faust's partitioner puts them, replies reach the waiting request, silence
times out, and the HTTP contract holds against the real processor's replies."""

import asyncio
import socket
import threading
import uuid
from contextlib import asynccontextmanager
from datetime import date, timedelta

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from fastapi.testclient import TestClient

from app.worker.batch import InMemory
from app.worker.processor import Record
from app.config import get_settings
from app.wire.topics import REPLY_PARTITION, REPLY_TO
from app.transport.bus import CommandBus, ReplyTimeout, next_batch
from gateway.main import create_app
from tests.gateway.replies import BOOKING_REQUEST, TRIP, new_key
from tests.support.http import auth

pytestmark = pytest.mark.integration

COMMAND_PARTITIONS = 12
REPLY_PARTITIONS = 2


def broker_up() -> bool:
    host, _, port = get_settings().kafka_bootstrap.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def scratch_topics():
    if not broker_up():
        pytest.skip("no Kafka broker at KAFKA_BOOTSTRAP (make test starts one)")
    admin = AdminClient({"bootstrap.servers": get_settings().kafka_bootstrap})
    prefix = f"gateway-test-{uuid.uuid4().hex[:8]}"
    names = (f"{prefix}.commands", f"{prefix}.replies")
    futures = admin.create_topics([NewTopic(names[0], COMMAND_PARTITIONS, 1), NewTopic(names[1], REPLY_PARTITIONS, 1)])
    for future in futures.values():
        future.result(timeout=30)
    yield names
    admin.delete_topics(list(names))


class Responder(threading.Thread):
    """Echo mode: answers each command like the worker does (to the partition its headers
    name, key = command id), telling which command partition it arrived on, and ignores
    "silent" ones."""

    def __init__(self, commands_topic: str):
        super().__init__(daemon=True)
        servers = get_settings().kafka_bootstrap
        self.consumer = Consumer({"bootstrap.servers": servers, "group.id": f"responder-{uuid.uuid4()}",
                                  "enable.auto.commit": False})
        self.consumer.assign([TopicPartition(commands_topic, p, OFFSET_BEGINNING) for p in range(COMMAND_PARTITIONS)])
        self.producer = Producer({"bootstrap.servers": servers, "linger.ms": 0})
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for message in next_batch(self.consumer):
                if message.error() is None:
                    self.answer(message)
            self.producer.poll(0)
        self.consumer.close()
        self.producer.flush(5)

    def answer(self, message) -> None:
        command = orjson.loads(message.value())
        if command.get("silent"):
            return
        headers = {name: value.decode() for name, value in message.headers() or []}
        body = {"v": 1, "commandId": command["commandId"], "ok": True, "partition": message.partition()}
        self.producer.produce(headers[REPLY_TO], key=command["commandId"].encode(), value=orjson.dumps(body),
                              partition=int(headers[REPLY_PARTITION]))
        # A reply for some other gateway process sharing the partition: must be ignored.
        self.producer.produce(headers[REPLY_TO], key=b"someone-else", value=b"{}",
                              partition=int(headers[REPLY_PARTITION]))


class Processor(Responder):
    """Runs the worker's record handler on each command, with a dict as the trip table;
    sends only the replies (lifecycle events would land on the real topics)."""

    def __init__(self, commands_topic: str, replies_topic: str):
        super().__init__(commands_topic)
        self.replies_topic = replies_topic
        self.processor = InMemory(get_settings().policy())

    def answer(self, message) -> None:
        record = Record(topic=message.topic(), partition=message.partition(), offset=message.offset(),
                        timestamp_ms=message.timestamp()[1], key=message.key(), value=message.value(),
                        headers=dict(message.headers() or []))
        self.processor.process(record, self.send)
        self.processor.flush()

    def send(self, topic, key, value, partition, _headers) -> None:
        if topic == self.replies_topic:
            self.producer.produce(topic, key=key, value=value, partition=partition)


def faust_partition(key: str) -> int:
    everything = list(range(COMMAND_PARTITIONS))
    return DefaultPartitioner()(key.encode(), everything, everything)


def test_requests_get_their_replies_through_the_broker(scratch_topics):
    commands_topic, replies_topic = scratch_topics
    responder = Responder(commands_topic)
    responder.start()
    try:
        asyncio.run(exchange(commands_topic, replies_topic))
    finally:
        responder.stopping.set()
        responder.join(10)


async def exchange(commands_topic: str, replies_topic: str) -> None:
    bus = CommandBus(get_settings(), commands_topic, replies_topic, reply_partition=1)
    bus.start()
    try:
        assert await bus.wait_ready(20), "reply partition never assigned"
        keys = [f"route-{n}:2030-01-{n % 28 + 1:02d}" for n in range(60)]
        replies = await asyncio.gather(*(
            bus.request(key, {"commandId": f"c-{n}-{uuid.uuid4()}"}, timeout=15) for n, key in enumerate(keys)))
        for key, reply in zip(keys, replies, strict=True):
            assert reply["ok"] is True
            assert reply["partition"] == faust_partition(key), f"{key} left faust's partition"
        with pytest.raises(ReplyTimeout):
            await bus.request("route-x:2030-01-01", {"commandId": "silent-1", "silent": True}, timeout=1)
        assert await asyncio.to_thread(bus.kafka_reachable, 5)
    finally:
        bus.stop()


def test_http_contract_against_the_worker_handler(scratch_topics, database_url):
    commands_topic, replies_topic = scratch_topics
    processor = Processor(commands_topic, replies_topic)
    processor.start()
    app = create_app(get_settings().model_copy(update={"database_url": database_url}))
    gateway_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def scratch_lifespan(app):
        bus = CommandBus(get_settings(), commands_topic, replies_topic, reply_partition=0)
        bus.start()
        assert await bus.wait_ready(20)
        app.state.given_bus = bus  # the gateway's own lifespan, with this bus
        async with gateway_lifespan(app):
            yield
        bus.stop()

    app.router.lifespan_context = scratch_lifespan
    try:
        with TestClient(app) as client:
            converse(client)
    finally:
        processor.stopping.set()
        processor.join(10)


def converse(client: TestClient) -> None:
    route = f"R{uuid.uuid4().hex[:8]}"
    travel_date = (date.today() + timedelta(days=30)).isoformat()  # within the publishing window
    trip_path = f"/v1/trips/{route}/{travel_date}"
    request = {**BOOKING_REQUEST, "routeId": route, "travelDate": travel_date}

    unpublished = client.post("/v1/bookings", json=request, headers=auth("rider-1"))
    assert (unpublished.status_code, unpublished.json()["code"]) == (404, "trip_not_found")

    published = client.put(trip_path, json=TRIP, headers=auth("route-service", "SERVICE"))
    assert published.status_code == 200, published.text
    assert published.json()["tripVersion"] == 1

    stranger = client.put(trip_path, json=TRIP, headers=auth("driver-9", "DRIVER"))
    assert (stranger.status_code, stranger.json()["code"]) == (403, "forbidden")

    keyed = {**auth("rider-1"), "Idempotency-Key": new_key()}
    created = client.post("/v1/bookings", json=request, headers=keyed)
    assert created.status_code == 201, created.text
    booking = created.json()["booking"]
    assert booking["seatNumbers"] == [1, 2] and booking["status"] == "HELD"
    assert booking["riderId"] == "rider-1" and created.json()["expiresAt"] == booking["expiresAt"]

    again = client.post("/v1/bookings", json=request, headers=keyed)
    assert (again.status_code, again.content) == (201, created.content)

    reused = client.post("/v1/bookings", json={**request, "seatsBooked": 1}, headers=keyed)
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")

    full = client.post("/v1/bookings", json={**request, "seatsBooked": 3}, headers=auth("rider-2"))
    assert (full.status_code, full.json()["code"]) == (409, "seats_unavailable")

    nowhere = client.post("/v1/bookings", json={**request, "originStopId": "Z"}, headers=auth("rider-2"))
    assert (nowhere.status_code, nowhere.json()["code"]) == (422, "invalid_stops")
