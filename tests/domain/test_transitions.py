"""The 10-state booking lifecycle (docs/design.md §4): every allowed and every forbidden move,
payments, holds, and who may do what."""

import copy
from dataclasses import replace

import pytest

from app.domain import booking as lifecycle
from app.domain.booking import Status, Transition
from app.domain.commands import (
    CancelBooking,
    CancelTrip,
    CheckIn,
    Complete,
    ExpireHolds,
    InitiatePayment,
    PaymentFailed,
    PaymentSucceeded,
    PublishTrip,
    RefundDone,
)
from app.domain.events import BookingMoved, RefundRequired
from app.domain.rejections import Code
from app.domain.state import availability
from app.domain.trip import TripStatus
from tests.support.core import ADMIN, DRIVER, MINUTE, OTHER_DRIVER, OTHER_RIDER, PAYMENTS, RIDER, Script, make_trip

S = Status

# docs/design.md §4, transcribed by hand.
DESIGN_TABLE = {
    S.PENDING: {S.HELD, S.CANCELLED, S.EXPIRED},
    S.HELD: {S.PAYMENT_INITIATED, S.PAID, S.CANCELLED, S.EXPIRED},
    S.PAYMENT_INITIATED: {S.PAID, S.CANCELLED, S.EXPIRED},
    S.PAID: {S.CONFIRMED, S.REFUNDED},
    S.CONFIRMED: {S.CHECKED_IN, S.CANCELLED, S.REFUNDED},
    S.CHECKED_IN: {S.COMPLETED, S.CANCELLED},
    S.CANCELLED: {S.REFUNDED},
    S.COMPLETED: set(),
    S.REFUNDED: set(),
    S.EXPIRED: set(),
}

# The path of moves that brings a booking to each state (the last one is the state).
PATHS = {
    S.PENDING: (),
    S.HELD: (S.HELD,),
    S.PAYMENT_INITIATED: (S.HELD, S.PAYMENT_INITIATED),
    S.PAID: (S.HELD, S.PAID),
    S.CONFIRMED: (S.HELD, S.PAID, S.CONFIRMED),
    S.CHECKED_IN: (S.HELD, S.PAID, S.CONFIRMED, S.CHECKED_IN),
    S.COMPLETED: (S.HELD, S.PAID, S.CONFIRMED, S.CHECKED_IN, S.COMPLETED),
    S.CANCELLED: (S.HELD, S.PAID, S.CONFIRMED, S.CANCELLED),
    S.REFUNDED: (S.HELD, S.PAID, S.CONFIRMED, S.CANCELLED, S.REFUNDED),
    S.EXPIRED: (S.HELD, S.EXPIRED),
}

REASON = "My plans changed, sorry"


def script_with_booking_in(status: Status):
    """A trip with one booking brought to `status` by recorded moves (PENDING and PAID
    cannot be reached by commands: PAID passes straight through to CONFIRMED)."""
    script = Script()
    created = script.create(0, 2, seats=2)
    at, total = script.now, created.total
    data = {
        S.HELD: {"expires_at": at + 10 * MINUTE},
        S.PAYMENT_INITIATED: {"expires_at": at + 15 * MINUTE},
        S.PAID: {"payment_id": "pay-1", "payment_status": "SUCCESS", "amount": total},
        S.CANCELLED: {"refund": total // 2, "reason_text": REASON},
        S.REFUNDED: {"refund": total // 2},
    }
    moves, source = [], S.PENDING
    for target in PATHS[status] or (S.PENDING,):
        moves.append(Transition(source, target, "setup", "setup", at, f"setup-{target}", data.get(target, {})))
        source = target
    booking = replace(created, transitions=tuple(moves))
    script.state.put(booking)
    if not lifecycle.occupies_seats(status):
        script.state.legs = [0] * len(script.state.legs)
    return script, booking


def command_for(target: Status, booking, script: Script):
    cid = script.next_id()
    view = booking.view()
    return {
        S.PAYMENT_INITIATED: InitiatePayment(cid, RIDER, booking.booking_id),
        S.PAID: PaymentSucceeded(cid, PAYMENTS, booking.booking_id, "pay-new", booking.total),
        S.CHECKED_IN: CheckIn(cid, DRIVER, booking.booking_id),
        S.COMPLETED: Complete(cid, DRIVER, booking.booking_id),
        S.CANCELLED: CancelBooking(cid, RIDER, booking.booking_id, REASON),
        S.REFUNDED: RefundDone(cid, PAYMENTS, booking.booking_id,
                               view.refund_amount if booking.status is S.CANCELLED else view.amount_paid),
    }[target]


COMMANDED_TARGETS = [S.PAYMENT_INITIATED, S.PAID, S.CHECKED_IN, S.COMPLETED, S.CANCELLED, S.REFUNDED]


# -- the table ----------------------------------------------------------------------------


def test_the_transition_table_is_the_one_in_the_design():
    assert {source: set(targets) for source, targets in lifecycle.ALLOWED.items()} == DESIGN_TABLE


@pytest.mark.parametrize("status", sorted(lifecycle.TERMINAL))
def test_terminal_states_have_no_way_out(status):
    assert not lifecycle.ALLOWED[status]


@pytest.mark.parametrize("source", list(Status))
@pytest.mark.parametrize("target", COMMANDED_TARGETS)
def test_each_command_moves_only_along_the_table(source, target):
    script, booking = script_with_booking_in(source)
    legs_before, bookings_before = list(script.state.legs), dict(script.state.bookings)
    outcome = script.run(command_for(target, booking, script))
    after = script.booking(booking.booking_id)
    if lifecycle.can_move(source, target):
        assert outcome.accepted
        reached = S.CONFIRMED if target is S.PAID else target  # PAID passes through to CONFIRMED
        assert after.status is reached
        assert after.transitions[booking.version].source is source
        assert after.transitions[booking.version].target is target
    else:
        stale = source is S.EXPIRED and target in (S.PAYMENT_INITIATED, S.PAID)
        assert outcome.code is (Code.HOLD_EXPIRED if stale else Code.INVALID_TRANSITION)
        assert after == booking
        assert [e for e in outcome.events if not isinstance(e, RefundRequired)] == []
        assert (script.state.legs, script.state.bookings) == (legs_before, bookings_before)


@pytest.mark.parametrize("source", list(Status))
def test_only_holds_expire(source):
    script, booking = script_with_booking_in(source)
    script.now += 16 * MINUTE
    outcome = script.run(ExpireHolds(script.next_id(), PAYMENTS))
    after = script.booking(booking.booking_id)
    if source in (S.HELD, S.PAYMENT_INITIATED):
        assert after.status is S.EXPIRED and len(outcome.events) == 1
    else:
        assert after == booking and outcome.events == ()


def test_a_new_booking_is_held_by_its_first_move():
    script = Script()
    booking = script.create(0, 1)
    (move,) = booking.transitions
    assert (move.source, move.target, move.at) == (S.PENDING, S.HELD, script.now)
    assert booking.view().expires_at == script.now + 10 * MINUTE


def test_every_move_records_who_when_and_why():
    script = Script()
    booking = script.create(0, 1)
    script.now += MINUTE
    script.run(CancelBooking("cancel-1", RIDER, booking.booking_id, "  " + REASON + "  "))
    move = script.booking(booking.booking_id).transitions[-1]
    assert (move.source, move.target, move.reason, move.actor, move.at, move.command_id) == (
        S.HELD, S.CANCELLED, "cancelled_by_rider", RIDER.user_id, script.now, "cancel-1")
    assert script.booking(booking.booking_id).view().cancellation_reason == REASON


# -- payment ------------------------------------------------------------------------------


def test_confirmation_passes_through_paid_in_one_event():
    script = Script()
    booking = script.create(0, 1)
    outcome = script.pay(booking, "pay-77")
    (event,) = outcome.events
    assert isinstance(event, BookingMoved)
    assert [(m.source, m.target) for m in event.moves] == [(S.HELD, S.PAID), (S.PAID, S.CONFIRMED)]
    view = script.booking(booking.booking_id).view()
    assert (view.status, view.payment_id, view.amount_paid, view.expires_at) == (S.CONFIRMED, "pay-77", booking.total,
                                                                                  None)
    assert view.confirmed_at == script.now and outcome.version == 3


def test_confirming_twice_with_the_same_payment_is_a_no_op_with_the_same_result():
    script = Script()
    booking = script.create(0, 1)
    first = script.pay(booking, "pay-1")
    before = copy.deepcopy(script.state)
    script.now += MINUTE
    again = script.run(PaymentSucceeded("another-delivery", PAYMENTS, booking.booking_id, "pay-1", booking.total))
    assert (again.code, again.booking_id, again.version) == (None, first.booking_id, first.version)
    assert again.events == () and again.duplicate
    assert script.state == before


def test_the_same_payment_command_twice_gets_the_identical_outcome():
    script = Script()
    booking = script.create(0, 1)
    command = PaymentSucceeded("pay-cmd", PAYMENTS, booking.booking_id, "pay-1", booking.total)
    first = script.run(command)
    before = copy.deepcopy(script.state)
    again = script.run(command)
    assert replace(again, duplicate=False) == first
    assert script.state == before


def test_a_second_payment_for_a_confirmed_booking_is_refused_and_sent_back():
    script = Script()
    booking = script.create(0, 1)
    script.pay(booking, "pay-1")
    outcome = script.run(PaymentSucceeded(script.next_id(), PAYMENTS, booking.booking_id, "pay-2", booking.total))
    assert outcome.code is Code.INVALID_TRANSITION
    assert outcome.events == (RefundRequired(booking.booking_id, "pay-2", booking.total, Code.INVALID_TRANSITION,
                                             script.now),)


def test_a_late_payment_is_refused_as_hold_expired_and_must_be_refunded():
    script = Script()
    booking = script.create(0, 1, seats=2)
    script.now += 10 * MINUTE
    outcome = script.run(PaymentSucceeded("late", PAYMENTS, booking.booking_id, "pay-9", booking.total))
    assert outcome.code is Code.HOLD_EXPIRED
    expiry, refund = outcome.events
    assert isinstance(expiry, BookingMoved) and expiry.moves[0].target is S.EXPIRED
    assert refund == RefundRequired(booking.booking_id, "pay-9", booking.total, Code.HOLD_EXPIRED, script.now)
    assert script.booking(booking.booking_id).status is S.EXPIRED
    assert availability(script.state)[0].free == script.trip.capacity


def test_a_payment_of_the_wrong_amount_is_refused_and_the_hold_stays():
    script = Script()
    booking = script.create(0, 1)
    outcome = script.run(PaymentSucceeded("short", PAYMENTS, booking.booking_id, "pay-1", booking.total - 1))
    assert outcome.code is Code.AMOUNT_MISMATCH
    assert outcome.events == (RefundRequired(booking.booking_id, "pay-1", booking.total - 1, Code.AMOUNT_MISMATCH,
                                             script.now),)
    assert script.booking(booking.booking_id).status is S.HELD
    assert script.pay(booking, "pay-2").accepted


def test_a_failed_payment_is_recorded_and_keeps_the_hold():
    script = Script()
    booking = script.create(0, 1)
    outcome = script.run(PaymentFailed("failed", PAYMENTS, booking.booking_id, "pay-1"))
    after = script.booking(booking.booking_id)
    assert outcome.accepted and after.status is S.HELD and after.version == 2
    assert (after.view().payment_status, after.view().expires_at) == ("FAILED", booking.view().expires_at)


# -- holds --------------------------------------------------------------------------------


def test_payment_initiation_extends_the_hold_to_15_minutes_from_then():
    script = Script()
    booking = script.create(0, 1)
    created = script.now
    script.now += 8 * MINUTE
    assert script.run(InitiatePayment("init", RIDER, booking.booking_id, "pay-1")).accepted
    view = script.booking(booking.booking_id).view()
    assert (view.status, view.expires_at, view.payment_id) == (S.PAYMENT_INITIATED, created + 23 * MINUTE, "pay-1")
    script.now = created + 23 * MINUTE - 1
    assert script.run(ExpireHolds("tick-1", PAYMENTS)).events == ()
    script.now += 1
    assert script.booking(booking.booking_id).status is S.PAYMENT_INITIATED
    assert len(script.run(ExpireHolds("tick-2", PAYMENTS)).events) == 1
    assert script.booking(booking.booking_id).status is S.EXPIRED


def test_payment_initiation_at_the_expiry_instant_is_too_late():
    script = Script()
    booking = script.create(0, 1)
    script.now += 10 * MINUTE
    assert script.run(InitiatePayment("init", RIDER, booking.booking_id)).code is Code.HOLD_EXPIRED


def test_a_hold_lasts_10_minutes_and_expires_exactly_once():
    script = Script()
    booking = script.create(0, 3, seats=3)
    script.now += 10 * MINUTE - 1
    assert script.run(ExpireHolds("tick-1", PAYMENTS)).events == ()
    script.now += 1
    (expiry,) = script.run(ExpireHolds("tick-2", PAYMENTS)).events
    assert expiry.booking_id == booking.booking_id
    assert all(leg.free == script.trip.capacity for leg in availability(script.state))
    script.now += 60 * MINUTE
    assert script.run(ExpireHolds("tick-3", PAYMENTS)).events == ()
    moves = script.booking(booking.booking_id).transitions
    assert [m.target for m in moves].count(S.EXPIRED) == 1


def test_any_command_expires_the_due_holds_before_it_is_decided():
    script = Script(make_trip(capacity=2))
    script.create(0, 1, seats=2)
    script.now += 10 * MINUTE
    late_comer = script.create(0, 1, seats=2)  # the seats the expired hold had
    assert late_comer.seats == (1, 2)


# -- who may do what ----------------------------------------------------------------------


def test_only_the_rider_who_booked_may_initiate_payment_or_cancel():
    script = Script()
    booking = script.create(0, 1, rider=RIDER)
    assert script.run(InitiatePayment("i1", OTHER_RIDER, booking.booking_id)).code is Code.NOT_OWNER
    assert script.run(CancelBooking("c1", OTHER_RIDER, booking.booking_id, REASON)).code is Code.NOT_OWNER
    assert script.run(CancelBooking("c2", DRIVER, booking.booking_id, REASON)).code is Code.FORBIDDEN
    assert script.run(CancelBooking("c-payments", PAYMENTS, booking.booking_id, REASON)).code is Code.FORBIDDEN
    assert script.run(InitiatePayment("i-driver", DRIVER, booking.booking_id)).code is Code.FORBIDDEN
    assert script.booking(booking.booking_id) == booking
    assert script.run(CancelBooking("c3", RIDER, booking.booking_id, REASON)).accepted


def test_the_payments_service_may_initiate_payment_for_a_rider():
    script = Script()
    booking = script.create(0, 1)
    assert script.run(InitiatePayment("i1", PAYMENTS, booking.booking_id)).accepted


@pytest.mark.parametrize("actor", [RIDER, DRIVER])
def test_only_payments_or_admin_report_payments_and_refunds(actor):
    script = Script()
    booking = script.create(0, 1)
    for command in (PaymentSucceeded("p", actor, booking.booking_id, "pay-1", booking.total),
                    PaymentFailed("f", actor, booking.booking_id, "pay-1"),
                    RefundDone("r", actor, booking.booking_id, 1)):
        outcome = script.run(command)
        assert outcome.code is Code.FORBIDDEN and outcome.events == ()  # nothing was taken: nothing to return
    assert script.booking(booking.booking_id) == booking


@pytest.mark.parametrize(("actor", "refusal"), [(OTHER_DRIVER, Code.BOOKING_NOT_FOUND), (RIDER, Code.FORBIDDEN)])
def test_only_the_trips_driver_checks_in_completes_and_cancels_the_trip(actor, refusal):
    script = Script()
    booking = script.create(0, 1)
    script.pay(booking)
    assert script.run(CheckIn("ci", actor, booking.booking_id)).code is refusal
    assert script.run(CancelTrip("ct", actor, "Vehicle broke down")).code is Code.FORBIDDEN
    assert script.run(CheckIn("ci-ok", DRIVER, booking.booking_id)).accepted
    assert script.run(Complete("co", actor, booking.booking_id)).code is refusal
    assert script.run(Complete("co-ok", DRIVER, booking.booking_id)).accepted


def test_a_rider_may_not_publish_a_trip():
    script = Script()
    assert script.run(PublishTrip("pub", RIDER, script.trip)).code is Code.FORBIDDEN


def test_an_admin_force_cancel_refunds_everything_paid():
    script = Script()
    booking = script.create(0, 1)
    script.pay(booking)
    script.now = script.trip.departure_ms(0) - MINUTE  # a rider would get nothing back now
    assert script.run(CancelBooking("force", ADMIN, booking.booking_id, "Rider reported abuse")).accepted
    view = script.booking(booking.booking_id).view()
    assert (view.status, view.refund_amount, view.refund_status) == (S.CANCELLED, booking.total, "PENDING")


def test_cancelling_needs_a_reason_of_10_to_500_characters():
    script = Script()
    booking = script.create(0, 1)
    for reason in ("", "too short", "   short    ", "x" * 501):
        assert script.run(CancelBooking(script.next_id(), RIDER, booking.booking_id, reason)).code is \
            Code.INVALID_REASON
    assert script.run(CancelBooking(script.next_id(), RIDER, booking.booking_id, "x" * 500)).accepted


def test_a_trip_cancelled_by_its_driver_cancels_live_bookings_with_a_full_refund():
    script = Script()
    held, paid = script.create(0, 1), script.create(1, 2)
    script.pay(paid)
    script.now = script.trip.departure_ms(0) - MINUTE
    outcome = script.run(CancelTrip("ct", DRIVER, "Vehicle broke down"))
    assert outcome.accepted and script.state.trip.status is TripStatus.CANCELLED
    assert script.booking(held.booking_id).view().refund_amount == 0
    assert script.booking(paid.booking_id).view().refund_amount == paid.total
    assert all(leg.free == script.trip.capacity for leg in availability(script.state))
    assert script.run(RefundDone("rd", PAYMENTS, paid.booking_id, paid.total)).accepted
    assert script.booking(paid.booking_id).status is S.REFUNDED
