"""Log-driven expiry in process: the tick path and the hold-due index, record by record,
with dicts as the tables (the broker tests run the same code in the worker)."""

import time

import orjson

from app.agents.expiry import load_index, process_record, tick_value
from app.agents.processor import Record
from app.domain.policy import Policy
from app.domain.trip import MS_PER_MINUTE
from app.models import topics
from tests.processor.support import PAYMENTS, TRAVEL_DATE, create_booking, on_booking, publish_trip

POLICY = Policy(hold_minutes=10, payment_hold_minutes=15)
T0 = int(time.time() * 1000)
PARTITION = 3


class Log:
    """One partition of the command topic and a processor reading it."""

    def __init__(self) -> None:
        self.offset = 0
        self.states: dict[bytes, bytes] = {}
        self.due: dict[bytes, bytes] = {}
        self.sent: list[tuple[str, bytes, bytes]] = []

    def send(self, topic, key, value, _partition, _headers) -> None:
        self.sent.append((topic, key, value))

    def put(self, key: bytes, value: bytes, at: int, headers: dict[str, bytes] | None = None) -> list:
        before = len(self.sent)
        record = Record(topics.COMMANDS, PARTITION, self.offset, at, key, value,
                        headers if headers is not None else {topics.REPLY_TO: b"replies"})
        self.offset += 1
        process_record(record, self.states, self.due, self.send, POLICY)
        return self.sent[before:]

    def command(self, command: dict, at: int) -> dict:
        key = f"{command['routeId']}:{TRAVEL_DATE}" if "routeId" in command else \
            f"{command['bookingId'].split('.')[0]}:{TRAVEL_DATE}"
        sent = self.put(key.encode(), orjson.dumps(command), at)
        return orjson.loads(sent[-1][2])

    def tick(self, at: int, value: bytes | None = None) -> list:
        return self.put(topics.TICK_KEY, value or tick_value(at), at, headers={})


def expired_events(sent: list) -> list[dict]:
    return [orjson.loads(v) for topic, _, v in sent if topic == topics.EXPIRED]


def test_a_tick_expires_a_hold_once_its_time_is_up_and_not_before() -> None:
    log = Log()
    log.command(publish_trip("R1"), T0)
    booking = log.command(create_booking("R1", "rider-1", seats=2), T0 + 1000)["booking"]
    due = T0 + 1000 + 10 * MS_PER_MINUTE

    assert expired_events(log.tick(due - 1)) == []
    events = expired_events(log.tick(due))
    assert [e["bookingId"] for e in events] == [booking["id"]]
    assert events[0]["booking"]["status"] == "EXPIRED" and events[0]["version"] == 2
    assert events[0]["transitions"][0]["to"] == "EXPIRED"
    assert events[0]["occurredAt"] == events[0]["booking"]["expiresAt"], "expired at the tick that found it due"
    assert load_index(log.due, PARTITION).due == {}, "a trip with no live hold leaves the index"
    assert expired_events(log.tick(due + 1000)) == []


def test_the_index_errs_early_never_late_when_a_payment_extends_the_hold() -> None:
    log = Log()
    log.command(publish_trip("R2"), T0)
    booking = log.command(create_booking("R2", "rider-1"), T0)["booking"]
    log.command(on_booking("initiate_payment", booking["id"], PAYMENTS, paymentId="p-1"), T0 + 5 * MS_PER_MINUTE)

    assert expired_events(log.tick(T0 + 10 * MS_PER_MINUTE)) == []
    assert load_index(log.due, PARTITION).due == {"R2:" + TRAVEL_DATE: T0 + 20 * MS_PER_MINUTE}
    assert [e["bookingId"] for e in expired_events(log.tick(T0 + 20 * MS_PER_MINUTE))] == [booking["id"]]


def test_a_redelivered_tick_re_emits_the_same_expiries_and_changes_nothing() -> None:
    log = Log()
    log.command(publish_trip("R3"), T0)
    log.command(create_booking("R3", "rider-1"), T0)
    log.command(create_booking("R3", "rider-2"), T0 + 1)
    tick = tick_value(T0)
    first = log.tick(T0 + 10 * MS_PER_MINUTE + 1, tick)
    states, due = dict(log.states), dict(log.due)

    again = log.tick(T0 + 10 * MS_PER_MINUTE + 1, tick)

    assert len(expired_events(first)) == 2
    assert again == first
    assert (log.states, log.due) == (states, due)


def test_an_idle_partition_tick_writes_nothing_and_a_bad_tick_is_a_dead_letter() -> None:
    log = Log()
    assert log.tick(T0) == [] and log.due == {}
    sent = log.tick(T0, b'{"type": "tick"}')
    assert [(topic, key) for topic, key, _ in sent] == [(topics.DEAD_LETTERS, topics.TICK_KEY)]


def test_many_trips_on_a_partition_expire_in_trip_key_order() -> None:
    log = Log()
    for route in ("RB", "RA", "RC"):
        log.command(publish_trip(route), T0)
        log.command(create_booking(route, "rider-1"), T0)
    events = expired_events(log.tick(T0 + 10 * MS_PER_MINUTE))
    assert [e["bookingId"].split(".")[0] for e in events] == ["RA", "RB", "RC"]
