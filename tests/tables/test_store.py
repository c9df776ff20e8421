"""The table store: what a command writes, what a fresh worker reads back, and that a
crash cutting a command's writes anywhere leaves a state from which handling the
commands again gives the same outcomes, events and replies as if nothing happened."""

from dataclasses import replace

import pytest

from app.domain.commands import (
    CancelBooking,
    CancelTrip,
    CheckIn,
    Complete,
    CreateBooking,
    ExpireHolds,
    InitiatePayment,
    PaymentSucceeded,
    PublishTrip,
    QueryAvailability,
    RefundDone,
)
from app.domain.handle import Outcome
from app.domain.ids import booking_id_for
from app.domain.state import availability
from app.models.outbound import lifecycle_events, reply
from app.tables.store import TripStore
from tests.domain.support import (
    ADMIN,
    DAY,
    DRIVER,
    MINUTE,
    OTHER_RIDER,
    PAYMENTS,
    POLICY,
    RIDER,
    ROUTES,
    make_trip,
)
from tests.tables.support import live_ids, stored_state

TRIP = make_trip(stops=4, capacity=3)
KEY = TRIP.key.encode()
START = TRIP.departure_ms(0) - 3 * DAY
REASON = "My plans changed, sorry"


def booking(command_id: str) -> str:
    return booking_id_for(TRIP.route_id, TRIP.travel_date, command_id)


def total_of(table, command_id: str) -> int:
    return stored_state(table, KEY).bookings[booking(command_id)].total


class RecordingTable(dict):
    """A dict that also lists every write, in order, as a worker's changelog would."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[bytes, bytes]] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes.append((key, value))
        super().__setitem__(key, value)


def scenario(table) -> list[tuple[object, int]]:
    """Every kind of command, with expiries triggered by other commands, a late payment,
    a rejection, a trip update and a trip cancel. Payment amounts are read from the
    table as a payments service would have them."""
    steps: list[tuple[object, int]] = [
        (PublishTrip("publish", ROUTES, TRIP), START),
        (CreateBooking("a", RIDER, "S0", "S2", 2), START + 1),
        (CreateBooking("b", OTHER_RIDER, "S0", "S1", 1), START + 2),
        (CreateBooking("c", RIDER, "S2", "S3", 1), START + 3),
        (CreateBooking("full", RIDER, "S0", "S1", 1), START + 4),
        (InitiatePayment("b-pay", OTHER_RIDER, booking("b")), START + 5),
        (CreateBooking("d", OTHER_RIDER, "S1", "S2", 1), START + 12 * MINUTE),  # expires a and c, not b
        (PaymentSucceeded("b-paid", PAYMENTS, booking("b"), "pay-b", -1), START + 13 * MINUTE),
        (PaymentSucceeded("c-late", PAYMENTS, booking("c"), "pay-c", -1), START + 14 * MINUTE),
        (CancelBooking("b-cancel", OTHER_RIDER, booking("b"), REASON), START + 15 * MINUTE),
        (RefundDone("b-refund", PAYMENTS, booking("b"), -1), START + 16 * MINUTE),
        (CreateBooking("e", RIDER, "S2", "S3", 3), START + 17 * MINUTE),
        (PaymentSucceeded("e-paid", PAYMENTS, booking("e"), "pay-e", -1), START + 18 * MINUTE),
        (PublishTrip("republish", DRIVER, replace(TRIP, capacity=3, leg_fares=(900, 900, 900))), START + 19 * MINUTE),
        (QueryAvailability("query", RIDER), START + 20 * MINUTE),
        (ExpireHolds("tick", ADMIN), START + 21 * MINUTE),
        (CancelTrip("cancel-trip", DRIVER, "Vehicle broke down"), START + 30 * MINUTE),
    ]
    return steps


def with_amounts(command, table):
    """Fill in the amount a payments service would send: the booking's total."""
    if isinstance(command, PaymentSucceeded) and command.amount == -1:
        return replace(command, amount=total_of(table, command.payment_id.removeprefix("pay-")))
    if isinstance(command, RefundDone) and command.amount == -1:
        view = stored_state(table, KEY).bookings[command.booking_id].view()
        return replace(command, amount=view.refund_amount)
    return command


def run(store: TripStore, steps, start: int = 0) -> list[tuple[object, Outcome, bytes, list]]:
    results = []
    for command, now in steps[start:]:
        command = with_amounts(command, store.table)
        state, outcome = store.handle(KEY, command, now, POLICY)
        query = isinstance(command, QueryAvailability)
        results.append((command, replace(outcome, duplicate=False), reply(state, outcome, query),
                        lifecycle_events(state, outcome)))
    return results


def without_reads(results):
    """A query answers from the state when it is handled, so a redelivered one may see
    later commands: its reply is not part of what must repeat."""
    return [(c, o, b"" if isinstance(c, QueryAvailability) else r, e) for c, o, r, e in results]


@pytest.fixture(scope="module")
def recorded():
    table = RecordingTable()
    store = TripStore(table, trips_cached=10)
    steps = scenario(table)
    boundaries = []
    results = []
    for index in range(len(steps)):
        boundaries.append(len(table.writes))
        results += run(store, steps[index:index + 1])
    boundaries.append(len(table.writes))
    return steps, table, boundaries, results


def test_the_scenario_covers_what_it_claims(recorded):
    _, table, _, results = recorded
    codes = {command.command_id: outcome.code for command, outcome, _, _ in results}
    assert codes["full"] == "seats_unavailable" and codes["c-late"] == "hold_expired"
    events = {command.command_id: [topic for topic, _, _ in rendered] for command, _, _, rendered in results}
    assert events["d"].count("booking.expired") == 2 and "booking.created" in events["d"]
    assert "booking.refund_required" in events["c-late"]
    assert events["cancel-trip"].count("booking.cancelled") == 1  # e, the only live booking left
    assert stored_state(table, KEY).legs == [0, 0, 0]


def test_a_crash_anywhere_then_handling_again_changes_nothing(recorded):
    """Cut the writes at every point (the changelog and the local RocksDB keep a prefix),
    then handle the commands again from a few before the cut, as a worker does from its
    last committed offset: same outcomes, replies and events, and the same final state."""
    steps, table, boundaries, results = recorded
    final = stored_state(table, KEY)
    for cut in range(len(table.writes) + 1):
        crashed_in = max(i for i, b in enumerate(boundaries[:-1]) if b <= cut)
        replay_from = max(0, crashed_in - 2)
        survived = dict(table.writes[:cut])
        again = run(TripStore(survived, trips_cached=10), steps, replay_from)
        assert without_reads(again) == without_reads(results[replay_from:]), f"cut after write {cut}"
        assert stored_state(survived, KEY) == final, f"cut after write {cut}"


def test_a_command_writes_only_what_it_changed(recorded):
    steps, table, boundaries, results = recorded
    writes = {steps[i][0].command_id: [key for key, _ in table.writes[boundaries[i]:boundaries[i + 1]]]
              for i in range(len(steps))}
    assert writes["b-pay"] == [KEY + b"/b/" + booking("b").encode(), KEY]
    assert writes["full"] == [KEY + b"/c/full"]  # a rejection: its outcome only
    assert writes["query"] == []


def test_closed_bookings_leave_the_trip_entry_and_completed_ones_stay(recorded):
    _, table, _, _ = recorded
    store = TripStore({}, trips_cached=10)
    for command, now in [
        (PublishTrip("publish", ROUTES, TRIP), START),
        (CreateBooking("done", RIDER, "S0", "S1", 1), START + 1),
        (CreateBooking("gone", RIDER, "S0", "S1", 1), START + 2),
    ]:
        store.handle(KEY, command, now, POLICY)
    done = booking("done")
    for command in [PaymentSucceeded("pay", PAYMENTS, done, "pay-done", total_of(store.table, "done")),
                    CheckIn("in", DRIVER, done), Complete("out", DRIVER, done),
                    CancelBooking("cancel", RIDER, booking("gone"), REASON)]:
        assert store.handle(KEY, command, START + 3, POLICY)[1].accepted
    assert live_ids(store.table, KEY) == [done]
    fresh = TripStore(store.table, trips_cached=10).load(KEY).state
    assert list(fresh.bookings) == [done]
    assert [leg.sold for leg in availability(fresh)] == [1, 0, 0]


def test_a_create_resent_after_its_booking_closed_is_not_booked_again():
    store = TripStore({}, trips_cached=10)
    store.handle(KEY, PublishTrip("publish", ROUTES, TRIP), START, POLICY)
    create = CreateBooking("create", RIDER, "S0", "S3", 3)
    _, first = store.handle(KEY, create, START + 1, POLICY)
    store.handle(KEY, CancelBooking("cancel", RIDER, first.booking_id, REASON), START + 2, POLICY)
    for worker in (store, TripStore(store.table, trips_cached=10)):  # warm, and restarted
        state, again = worker.handle(KEY, create, START + 3, POLICY)
        assert again.duplicate and replace(again, duplicate=False) == first
        assert state.legs == [0, 0, 0] and state.booked == 1


def test_a_table_changed_underneath_is_read_again():
    """After a rebalance the table may hold what another worker wrote."""
    table: dict[bytes, bytes] = {}
    mine, theirs = TripStore(table, trips_cached=10), TripStore(table, trips_cached=10)
    mine.handle(KEY, PublishTrip("publish", ROUTES, TRIP), START, POLICY)
    theirs.handle(KEY, CreateBooking("theirs", RIDER, "S0", "S3", 3), START + 1, POLICY)
    state, outcome = mine.handle(KEY, CreateBooking("mine", RIDER, "S0", "S1", 1), START + 2, POLICY)
    assert outcome.code == "seats_unavailable" and state.booked == 1
