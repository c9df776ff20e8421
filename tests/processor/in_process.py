"""One partition of the command topic and a processor reading it, in this process: the
worker's record handling without Kafka."""

import time

import orjson

from app.domain.policy import Policy
from app.tables.trips import HOLD_DUE, TRIP_STATE
from app.wire.topics import CONTRACT, REPLY_TO, TICK_KEY
from app.worker.batch import InMemory
from app.worker.processor import Record
from app.worker.ticks import tick_value
from tests.processor.commands import trip_key


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
        record = Record(CONTRACT.commands, PARTITION, self.offset, at, key, value,
                        headers if headers is not None else {REPLY_TO: b"replies"})
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
        return self.put(TICK_KEY, value or tick_value(at), at, headers={})
