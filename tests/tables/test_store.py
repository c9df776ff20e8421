"""The table store: what a command writes, what a fresh worker reads back, and that a
crash cutting a batch's writes anywhere leaves a state from which handling the commands
again gives the same outcomes, events and replies as if nothing happened."""

from dataclasses import replace

import orjson
import pytest

from app.domain.commands import (
    AcceptOffer,
    CancelBooking,
    CancelTrip,
    CheckIn,
    Complete,
    CreateBooking,
    ExpireHolds,
    InitiatePayment,
    JoinWaitlist,
    LeaveWaitlist,
    PaymentSucceeded,
    PublishTrip,
    QueryAvailability,
    RefundDone,
)
from app.domain.handle import Outcome
from app.domain.ids import booking_id_for, entry_id_for
from app.domain.state import availability
from app.wire.outbound import lifecycle_events, reply
from app.tables.store import outcome_key, queue_key
from tests.support.core import (
    ADMIN,
    DAY,
    DRIVER,
    MINUTE,
    OTHER_RIDER,
    PAYMENTS,
    POLICY,
    RIDER,
    ROUTES,
    THIRD_RIDER,
    make_trip,
)
from tests.tables.support import StoreOverDict, live_ids, stored_state

TRIP = make_trip(stops=4, capacity=3)
KEY = TRIP.key.encode()
START = TRIP.departure_ms(0) - 3 * DAY
REASON = "My plans changed, sorry"


def booking(command_id: str) -> str:
    return booking_id_for(TRIP.route_id, TRIP.travel_date, command_id)


def entry(command_id: str) -> str:
    return entry_id_for(TRIP.route_id, TRIP.travel_date, command_id)


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


def waitlist_scenario() -> list[tuple[object, int]]:
    """A sold-out trip's waiting list: offers made by a cancel, by a hold's and by an
    offer's expiry and by a leave, an accept, and a trip cancel ending the rest."""
    return [
        (PublishTrip("publish", ROUTES, TRIP), START),
        (CreateBooking("a", RIDER, "S0", "S3", 3), START + 1),
        (JoinWaitlist("w1", OTHER_RIDER, "S0", "S1", 1), START + 2),
        (JoinWaitlist("w2", THIRD_RIDER, "S0", "S3", 2), START + 3),
        (JoinWaitlist("w3", OTHER_RIDER, "S1", "S3", 1), START + 4),
        (CancelBooking("a-cancel", RIDER, booking("a"), REASON), START + 5),  # w1, w2, w3 offered
        (AcceptOffer("w1-accept", OTHER_RIDER, entry("w1")), START + 6),
        (LeaveWaitlist("w2-leave", THIRD_RIDER, entry("w2")), START + 7),
        (JoinWaitlist("w4", RIDER, "S0", "S3", 3), START + 8),
        (CreateBooking("b", RIDER, "S2", "S3", 1), START + 16 * MINUTE),  # w1's hold and w3's offer expire
        (AcceptOffer("w3-late", OTHER_RIDER, entry("w3")), START + 17 * MINUTE),
        (CancelTrip("cancel-trip", DRIVER, "Vehicle broke down"), START + 18 * MINUTE),
    ]


def with_amounts(steps):
    """Fill in the amounts a payments service would send (the booking's total, the refund
    owed), as the commands come, from one run of the scenario."""
    run = StoreOverDict()
    filled = []
    for offset, (command, now) in enumerate(steps):
        bookings = stored_state(run.table, KEY).bookings
        if isinstance(command, PaymentSucceeded) and command.amount == -1:
            command = replace(command, amount=bookings[command.booking_id].total)
        if isinstance(command, RefundDone) and command.amount == -1:
            command = replace(command, amount=bookings[command.booking_id].view().refund_amount)
        run.handle(KEY, command, now, offset, POLICY)
        run.flush()
        filled.append((command, now))
    return filled


STEPS = with_amounts(scenario(None))
SCENARIOS = {"every command": STEPS, "waiting list": waitlist_scenario()}


def run(store: StoreOverDict, steps, start: int = 0, batch: int = 1) -> list[tuple[object, Outcome, bytes, list]]:
    """The steps from `start`, their offsets their index, `batch` commands per flush."""
    results = []
    for offset in range(start, len(steps)):
        command, now = steps[offset]
        state, outcome = store.handle(KEY, command, now, offset, POLICY)
        results.append((command, replace(outcome, duplicate=False), reply(state, outcome, command),
                        lifecycle_events(state, outcome)))
        if (offset - start + 1) % batch == 0:
            store.flush()
    store.flush()
    return results


def without_reads(results):
    """A query answers from the state when it is handled, so a redelivered one may see
    later commands: its reply is not part of what must repeat."""
    return [(c, o, b"" if isinstance(c, QueryAvailability) else r, e) for c, o, r, e in results]


def record(steps):
    """The steps handled one at a time: the store and the results."""
    store = StoreOverDict()
    return store, run(store, steps)


@pytest.fixture(scope="module", params=list(SCENARIOS))
def steps(request):
    return SCENARIOS[request.param]


@pytest.fixture(scope="module")
def recorded(steps):
    return record(steps)


@pytest.fixture(scope="module", params=[1, 3, None], ids=lambda n: f"batches of {n or 'all'}")
def batched(request, steps):
    """The scenario handled in batches, with the writes of each batch's flush."""
    store = StoreOverDict()
    boundaries = []
    results = []
    size = request.param or len(steps)
    for start in range(0, len(steps), size):
        boundaries.append((start, len(store.writes)))
        results += run(store, steps[:start + size], start, size)
    return store, boundaries, results


def test_the_scenario_covers_what_it_claims():
    store, results = record(STEPS)
    codes = {command.command_id: outcome.code for command, outcome, _, _ in results}
    assert codes["full"] == "seats_unavailable" and codes["c-late"] == "hold_expired"
    events = {command.command_id: [topic for topic, _, _ in rendered] for command, _, _, rendered in results}
    assert events["d"].count("booking.expired") == 2 and "booking.created" in events["d"]
    assert "booking.refund_required" in events["c-late"]
    assert events["cancel-trip"].count("booking.cancelled") == 1  # e, the only live booking left
    assert stored_state(store.table, KEY).legs == [0, 0, 0]


def test_the_waitlist_scenario_covers_what_it_claims():
    store, results = record(SCENARIOS["waiting list"])
    events = {command.command_id: [topic for topic, _, _ in rendered] for command, _, _, rendered in results}
    assert events["a-cancel"].count("waitlist.offered") == 3
    assert events["w2-leave"] == ["waitlist.left"]  # w4 wants 3 seats: nothing it fits yet
    assert events["b"].count("waitlist.offer_expired") == 1 and "booking.expired" in events["b"]
    assert events["b"].count("waitlist.offered") == 1  # w4, now that all three seats are free
    codes = {command.command_id: outcome.code for command, outcome, _, _ in results}
    assert codes["b"] == "seats_unavailable" and codes["w3-late"] == "offer_expired"
    assert events["cancel-trip"].count("waitlist.cancelled") == 1
    assert stored_state(store.table, KEY).legs == [0, 0, 0]


def test_batches_of_any_size_give_the_same_outcomes_and_the_same_table(recorded, batched):
    one_at_a_time, results = recorded
    store, _, batch_results = batched
    assert without_reads(batch_results) == without_reads(results)
    assert store.table == one_at_a_time.table


def test_a_batch_writes_each_key_once_and_the_trip_entry_last(batched):
    store, boundaries, _ = batched
    ends = [start for _, start in boundaries[1:]] + [len(store.writes)]
    for (_, start), end in zip(boundaries, ends, strict=True):
        keys = [key for key, _ in store.writes[start:end]]
        assert len(keys) == len(set(keys))
        assert KEY not in keys or keys[-1] == KEY


def test_a_crash_anywhere_then_handling_again_changes_nothing(steps, recorded, batched):
    """Cut the writes at every point (the changelog and the local store keep a prefix),
    then handle the commands again from the start of the batch the cut fell in, or one
    batch earlier (a worker starts again from its last committed offset), one at a time:
    same outcomes, replies and events, and the same final state."""
    _, results = recorded
    store, boundaries, _ = batched
    final = stored_state(store.table, KEY)
    for cut in range(len(store.writes) + 1):
        crashed_in = max(i for i, (_, written) in enumerate(boundaries) if written <= cut)
        for redo in {crashed_in, max(0, crashed_in - 1)}:
            replay_from = boundaries[redo][0]
            survived = {}
            for key, value in store.writes[:cut]:
                if value is None:
                    survived.pop(key, None)
                else:
                    survived[key] = value
            again = run(StoreOverDict(survived), steps, replay_from)
            assert without_reads(again) == without_reads(results[replay_from:]), f"cut after write {cut}"
            assert stored_state(survived, KEY) == final, f"cut after write {cut}"


def test_a_command_writes_only_what_it_changed():
    store = StoreOverDict()
    writes = {}
    for offset, (command, now) in enumerate(STEPS):
        store.handle(KEY, command, now, offset, POLICY)
        writes[command.command_id] = store.flush()
    assert writes["b-pay"] == [KEY + b"/b/" + booking("b").encode(), KEY]
    # A rejection: its outcome, its place in the trip's outcome queue, the queue's end.
    assert writes["full"] == [outcome_key(KEY, "full"), queue_key(KEY, 1), KEY]
    assert writes["query"] == []


def test_closed_bookings_leave_the_trip_entry_and_completed_ones_stay():
    store = StoreOverDict()
    steps = [
        (PublishTrip("publish", ROUTES, TRIP), START),
        (CreateBooking("done", RIDER, "S0", "S1", 1), START + 1),
        (CreateBooking("gone", RIDER, "S0", "S1", 1), START + 2),
    ]
    for offset, (command, now) in enumerate(steps):
        store.handle(KEY, command, now, offset, POLICY)
    done = booking("done")
    total = store.store.cache[KEY].state.bookings[done].total
    for offset, command in enumerate([PaymentSucceeded("pay", PAYMENTS, done, "pay-done", total),
                                      CheckIn("in", DRIVER, done), Complete("out", DRIVER, done),
                                      CancelBooking("cancel", RIDER, booking("gone"), REASON)], start=len(steps)):
        assert store.handle(KEY, command, START + 3, offset, POLICY)[1].accepted
    store.flush()
    assert live_ids(store.table, KEY) == [done]
    fresh = StoreOverDict(store.table).store.load(StoreOverDict(store.table).staged, KEY).state
    assert list(fresh.bookings) == [done]
    assert [leg.sold for leg in availability(fresh)] == [1, 0, 0]


def test_a_create_resent_after_its_booking_closed_is_not_booked_again():
    store = StoreOverDict()
    store.handle(KEY, PublishTrip("publish", ROUTES, TRIP), START, 0, POLICY)
    create = CreateBooking("create", RIDER, "S0", "S3", 3)
    _, first = store.handle(KEY, create, START + 1, 1, POLICY)
    store.handle(KEY, CancelBooking("cancel", RIDER, first.booking_id, REASON), START + 2, 2, POLICY)
    store.flush()
    for worker in (store, StoreOverDict(store.table)):  # warm, and restarted
        state, again = worker.handle(KEY, create, START + 3, 3, POLICY)
        assert again.duplicate and replace(again, duplicate=False) == first
        assert state.legs == [0, 0, 0] and state.booked == 1
        assert worker.flush() == []


def test_a_table_changed_underneath_is_read_again():
    """After a rebalance the table may hold what another worker wrote."""
    table: dict[bytes, bytes] = {}
    mine, theirs = StoreOverDict(table), StoreOverDict(table)
    mine.handle(KEY, PublishTrip("publish", ROUTES, TRIP), START, 0, POLICY)
    mine.flush()
    theirs.handle(KEY, CreateBooking("theirs", RIDER, "S0", "S3", 3), START + 1, 1, POLICY)
    theirs.flush()
    state, outcome = mine.handle(KEY, CreateBooking("mine", RIDER, "S0", "S1", 1), START + 2, 2, POLICY)
    assert outcome.code == "seats_unavailable" and state.booked == 1


def test_a_command_that_fails_halfway_leaves_the_state_as_it_was():
    """A bug met by one command (it goes to dead letters) must not leave the trip with
    half of its effect: here the failure comes after the command expired a due hold."""
    store = StoreOverDict()
    store.handle(KEY, PublishTrip("publish", ROUTES, TRIP), START, 0, POLICY)
    store.handle(KEY, CreateBooking("a", RIDER, "S0", "S1", 1), START + 1, 1, POLICY)
    later = START + 11 * MINUTE  # a's hold is due
    outcome = handled_after_a_failure(store, CreateBooking("b", RIDER, "S0", "S1", 1), later, 2)
    assert outcome.accepted and len(outcome.events) == 2  # a expired, b created


def test_a_command_that_fails_halfway_leaves_the_waiting_list_as_it_was():
    """Here the failure comes after the command expired a due offer (freeing its seats)
    and before it could book them."""
    store = StoreOverDict()
    store.handle(KEY, PublishTrip("publish", ROUTES, TRIP), START, 0, POLICY)
    store.handle(KEY, CreateBooking("a", RIDER, "S0", "S3", 3), START + 1, 1, POLICY)
    store.handle(KEY, JoinWaitlist("w1", OTHER_RIDER, "S0", "S1", 1), START + 2, 2, POLICY)
    _, cancelled = store.handle(KEY, CancelBooking("a-cancel", RIDER, booking("a"), REASON), START + 3, 3, POLICY)
    assert [type(event).__name__ for event in cancelled.events] == ["BookingMoved", "EntryMoved"]  # w1 offered
    store.handle(KEY, QueryAvailability("query", RIDER), START + 4, 4, POLICY)  # a, closed, leaves memory
    later = START + 20 * MINUTE  # w1's offer is due
    outcome = handled_after_a_failure(store, CreateBooking("b", THIRD_RIDER, "S0", "S1", 1), later, 5)
    assert outcome.accepted and [type(event).__name__ for event in outcome.events] == ["EntryMoved", "BookingCreated"]


def test_a_command_that_fails_halfway_leaves_the_hold_limit_counted_right():
    """The counts kept in memory (`Tally`) are undone with the rest: the failed command
    had counted a's expiry, which the command handled next counts again."""
    trip = make_trip(stops=4, capacity=20)
    key = trip.key.encode()
    store = StoreOverDict()
    store.handle(key, PublishTrip("publish", ROUTES, trip), START, 0, POLICY)
    store.handle(key, CreateBooking("a", RIDER, "S0", "S1", 4), START + 1, 1, POLICY)
    store.handle(key, CreateBooking("c", RIDER, "S0", "S1", 4), START + 5 * MINUTE, 2, POLICY)  # 8 seats held
    later = START + 11 * MINUTE  # a's hold is due, c's is not
    with pytest.raises(ZeroDivisionError):
        store.handle(key, CreateBooking("b", RIDER, "S0", "S1", 1), later, 3, BrokenPolicy())
    assert store.handle(key, CreateBooking("b", RIDER, "S0", "S1", 1), later, 3, POLICY)[1].accepted
    _, over = store.handle(key, CreateBooking("d", RIDER, "S0", "S1", 4), later, 4, POLICY)
    assert over.code == "hold_limit_reached"  # c's 4 and b's 1 held: 4 more would make 9


def test_a_table_written_before_the_waiting_list_is_read_and_gets_one():
    """Format 3 entries (no join counter, no live entries, outcomes without the entries
    they touched) read as a trip without a waiting list; the next commit writes format 4."""
    store = StoreOverDict()
    steps = [(PublishTrip("publish", ROUTES, TRIP), START), (CreateBooking("a", RIDER, "S0", "S3", 3), START + 1),
             (CreateBooking("full", OTHER_RIDER, "S0", "S1", 1), START + 2)]
    results = run(store, steps)
    old = {key: as_format_3(key, value) for key, value in store.table.items()}
    assert old != store.table
    again = StoreOverDict(old)
    assert stored_state(old, KEY) == stored_state(store.table, KEY)
    _, recalled = again.handle(KEY, steps[-1][0], START + 3, 3, POLICY)
    assert recalled.duplicate and replace(recalled, duplicate=False) == results[-1][1]
    state, joined = again.handle(KEY, JoinWaitlist("w1", OTHER_RIDER, "S0", "S1", 1), START + 4, 4, POLICY)
    assert joined.accepted and state.joined == 1
    again.flush()
    assert orjson.loads(old[KEY])[0] == 4 and stored_state(old, KEY).entries.keys() == {entry("w1")}


def as_format_3(key: bytes, value: bytes) -> bytes:
    """The entry as a worker before the waiting list wrote it."""
    if key == KEY:
        return orjson.dumps([3, *orjson.loads(value)[1:8]])
    if key.startswith(KEY + b"/c/"):
        mark, row = orjson.loads(value)
        return orjson.dumps([mark, row[:8]])
    return value


def handled_after_a_failure(store: StoreOverDict, command, now: int, offset: int) -> Outcome:
    """The command failing halfway, which must leave the state as it was, then handled."""
    before = stored_copy(store)
    with pytest.raises(ZeroDivisionError):
        store.handle(KEY, command, now, offset, BrokenPolicy())
    assert stored_copy(store) == before
    return store.handle(KEY, command, now, offset, POLICY)[1]


class BrokenPolicy:
    """The policy, failing when a create asks how long to hold its seats."""

    def __getattr__(self, name: str):
        if name == "hold_minutes":
            raise ZeroDivisionError("in the middle of a command")
        return getattr(POLICY, name)


def stored_copy(store: StoreOverDict):
    loaded = store.store.cache[KEY]
    return (loaded.mark, dict(loaded.state.bookings), list(loaded.state.legs), loaded.state.booked,
            dict(loaded.state.holds.expires), dict(loaded.state.entries), loaded.state.joined,
            dict(store.staged.pending))
