"""Log-driven expiry in process: the tick path and the hold-due index, record by record,
with dicts as the tables (the broker tests run the same code in the worker); and the
remembered outcomes the ticks delete once their retention window is over."""

import orjson

from app.worker.ticks import tick_value
from app.domain.trip import MS_PER_MINUTE
from app.wire.topics import CONTRACT, TICK_KEY
from app.tables.partition import decode_index, index_key
from tests.processor.commands import (
    PAYMENTS,
    TRAVEL_DATE,
    create_booking,
    made_up_booking,
    on_booking,
    publish_trip,
    rider,
    trip_key,
)
from tests.processor.in_process import Log, PARTITION, POLICY, T0

GRACE_MS = 60 * MS_PER_MINUTE  # app.tables.store.FORGET_GRACE_MS
WINDOW_MS = POLICY.outcome_retention_ms


def index_of(log: Log):
    return decode_index(log.due.get(index_key(PARTITION)))


def expired_events(sent: list) -> list[dict]:
    return [orjson.loads(v) for topic, _, v in sent if topic == CONTRACT.expired]


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
    # No live hold left: the trip is next visited to delete the outcomes it remembers,
    # from the trip's publication on.
    assert index_of(log).due == {"R1:" + TRAVEL_DATE: T0 + WINDOW_MS + GRACE_MS}
    assert expired_events(log.tick(due + 1000)) == []


def test_the_index_errs_early_never_late_when_a_payment_extends_the_hold() -> None:
    log = Log()
    log.command(publish_trip("R2"), T0)
    booking = log.command(create_booking("R2", "rider-1"), T0)["booking"]
    log.command(on_booking("initiate_payment", booking["id"], PAYMENTS, paymentId="p-1"), T0 + 5 * MS_PER_MINUTE)

    assert expired_events(log.tick(T0 + 10 * MS_PER_MINUTE)) == []
    assert index_of(log).due == {"R2:" + TRAVEL_DATE: T0 + 20 * MS_PER_MINUTE}
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
    assert [(topic, key) for topic, key, _ in sent] == [(CONTRACT.dead_letters, TICK_KEY)]


def test_many_trips_on_a_partition_expire_in_trip_key_order() -> None:
    log = Log()
    for route in ("RB", "RA", "RC"):
        log.command(publish_trip(route), T0)
        log.command(create_booking(route, "rider-1"), T0)
    events = expired_events(log.tick(T0 + 10 * MS_PER_MINUTE))
    assert [e["bookingId"].split(".")[0] for e in events] == ["RA", "RB", "RC"]


def test_rejected_commands_are_remembered_for_the_retention_window_then_deleted() -> None:
    """Each command on a made-up booking id of a real trip is refused, and its outcome
    remembered so that a retry gets the same reply: without an end, anyone could grow the
    worker's tables for ever. The ticks delete them after the window (48 h) and its grace."""
    log = Log()
    log.command(publish_trip("R9"), T0)
    before = len(log.states)
    made_up = [made_up_booking("R9", n) for n in range(40)]
    probes = [on_booking("cancel_booking", booking_id, rider("prober"), reason="Let me see what happens")
              for booking_id in made_up]
    for n, probe in enumerate(probes):
        assert log.command(probe, T0 + n)["code"] == "booking_not_found"
    assert len(log.states) >= before + len(probes)
    assert log.command(probes[0], T0 + WINDOW_MS - 1)["code"] == "booking_not_found"  # a retry: recalled

    log.tick(T0 + WINDOW_MS + GRACE_MS - 1)
    assert len(log.states) >= before + len(probes), "deleted before the window and its grace"
    log.tick(T0 + len(probes) + WINDOW_MS + GRACE_MS)
    assert set(log.states) == {trip_key("R9")}, "only the trip itself is left"
    assert index_of(log).due == {}
