"""Waiting lists, seat choice and large trips, rule by rule (docs/core.md, "Waiting
lists"): the edge cases written out, next to the state machine that explores the rest."""

from dataclasses import replace

import pytest

from app.domain.commands import (
    AcceptOffer,
    Actor,
    CancelBooking,
    CancelTrip,
    CreateBooking,
    ExpireHolds,
    JoinWaitlist,
    LeaveWaitlist,
    PublishTrip,
    RefundDone,
    Role,
)
from app.domain.events import BookingMoved, EntryMoved
from app.domain.handle import handle
from app.domain.rejections import Code
from app.domain.state import TripState, availability, seat_map
from app.domain.waitlist import EntryStatus
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
    Script,
    THIRD_RIDER,
    make_trip,
)

REASON = "My plans changed, sorry"
W = EntryStatus
FOURTH_RIDER = Actor("rider-4", Role.RIDER)


def offers_in(outcome) -> list[tuple[str, tuple[int, ...]]]:
    return [(e.entry_id, tuple(e.moves[-1].data["seats"])) for e in outcome.events
            if isinstance(e, EntryMoved) and e.moves[-1].target is W.OFFERED]


def cancel(script: Script, booking, rider=RIDER):
    outcome = script.run(CancelBooking(script.next_id(), rider, booking.booking_id, REASON))
    assert outcome.accepted, outcome.code
    return outcome


def two_waiting_then_one_seat_freed() -> tuple[Script, object, object, object]:
    """A one-seat trip sold out, two riders waiting for it; the seat is freed by a cancel."""
    script = Script(make_trip(capacity=1))
    booking = script.create(0, 3)
    first = script.join(0, 3, rider=OTHER_RIDER)
    second = script.join(0, 3, rider=THIRD_RIDER)
    return script, first, second, cancel(script, booking)


def walk_in(script: Script, origin: int = 0, destination: int = 1, seats: int = 1, rider=THIRD_RIDER):
    return script.run(CreateBooking(script.next_id(), rider, f"S{origin}", f"S{destination}", seats))


# -- joining ------------------------------------------------------------------------------


def test_a_rider_joins_only_when_the_journey_has_too_few_free_seats():
    script = Script(make_trip(stops=3, capacity=2))
    script.create(0, 1, seats=1)
    join = JoinWaitlist("early", OTHER_RIDER, "S0", "S1", 1)
    assert script.run(join).code is Code.SEATS_AVAILABLE  # one seat is free: book it
    assert script.run(replace(join, command_id="party", seats=2)).accepted  # a party of two does not fit
    assert script.run(replace(join, command_id="other-leg", origin_stop_id="S1", destination_stop_id="S2")).code \
        is Code.SEATS_AVAILABLE
    assert script.run(replace(join, command_id="too-big", seats=3)).code is Code.TOO_MANY_SEATS  # never fits


def test_an_entry_knows_its_place_in_the_queue_and_is_only_the_riders():
    script = Script(make_trip(capacity=1))
    script.create(0, 3)
    first = script.join(0, 1, rider=OTHER_RIDER)
    second = script.join(2, 3, rider=THIRD_RIDER)
    assert (first.join_order, first.position, second.join_order, second.position) == (1, 1, 2, 2)
    assert script.run(LeaveWaitlist("not-yours", THIRD_RIDER, first.entry_id)).code is Code.ENTRY_NOT_FOUND
    assert script.run(LeaveWaitlist("admin", ADMIN, first.entry_id)).code is Code.FORBIDDEN
    assert script.run(JoinWaitlist("driver", DRIVER, "S0", "S1", 1)).code is Code.FORBIDDEN
    assert script.run(LeaveWaitlist("left", OTHER_RIDER, first.entry_id)).accepted
    assert script.join(0, 1, rider=OTHER_RIDER).position == 2  # behind the entry still waiting


def test_waiting_seats_count_against_the_riders_hold_limit():
    script = Script(make_trip(capacity=4))
    script.create(0, 3, seats=4, rider=OTHER_RIDER)
    script.join(0, 3, seats=4)
    script.join(0, 1, seats=4)  # 8 seats asked for: the limit
    assert script.run(JoinWaitlist("one-more", RIDER, "S0", "S1", 1)).code is Code.HOLD_LIMIT_REACHED


def test_a_full_waiting_list_takes_no_more():
    script = Script(make_trip(capacity=1), policy=replace(POLICY, waitlist_entries_max=2))
    script.create(0, 3)
    script.join(0, 1, rider=OTHER_RIDER)
    script.join(0, 1, rider=THIRD_RIDER)
    assert script.run(JoinWaitlist("third", RIDER, "S0", "S1", 1)).code is Code.WAITLIST_FULL


# -- offers -------------------------------------------------------------------------------


def test_freed_seats_are_offered_in_join_order_and_held_for_the_offer():
    script = Script(make_trip(capacity=2))
    booking = script.create(0, 3, seats=2)
    first = script.join(0, 3, rider=OTHER_RIDER)
    second = script.join(0, 3, rider=THIRD_RIDER)
    outcome = cancel(script, booking)
    assert offers_in(outcome) == [(first.entry_id, (1,)), (second.entry_id, (2,))]
    offered = script.entry(first.entry_id).view()
    assert offered.status is W.OFFERED and offered.offer_expires_at == script.now + 15 * MINUTE
    assert walk_in(script).code is Code.SEATS_UNAVAILABLE  # nobody else can book them meanwhile
    assert seat_map(script.state, 0, 2) == [False, False]
    assert [leg.held for leg in availability(script.state)] == [2, 2, 2]  # offers count as held


def test_an_entry_too_large_for_the_freed_seats_is_passed_over_not_waited_for():
    """Partial fits: an offer is for the whole party. One freed seat does not go to a party
    of two waiting first; it goes to the next entry that fits, or to a walk-in."""
    script = Script(make_trip(capacity=2))
    one, two = script.create(0, 3, seats=1), script.create(0, 3, seats=1, rider=OTHER_RIDER)
    pair = script.join(0, 3, seats=2, rider=THIRD_RIDER)
    single = script.join(0, 3, seats=1, rider=FOURTH_RIDER)
    assert offers_in(cancel(script, one)) == [(single.entry_id, (1,))]
    assert script.entry(pair.entry_id).status is W.WAITING
    script.run(LeaveWaitlist("single-leaves", single.rider_id.__class__ and script.entry(single.entry_id).rider_id
                             and RIDER.__class__("rider-4", RIDER.role), single.entry_id))
    assert script.entry(pair.entry_id).status is W.WAITING  # still one seat: still does not fit
    assert walk_in(script, 0, 3).accepted  # nobody it fits is waiting: a walk-in may take it
    assert offers_in(cancel(script, two, OTHER_RIDER)) == []


def test_an_offer_is_for_the_legs_of_the_entrys_journey():
    script = Script(make_trip(stops=4, capacity=1))
    first_half = script.create(0, 2)
    script.create(2, 3, rider=OTHER_RIDER)
    whole = script.join(0, 3, rider=THIRD_RIDER)  # needs leg 2 too, still taken
    short = script.join(1, 2, rider=FOURTH_RIDER)
    assert offers_in(cancel(script, first_half)) == [(short.entry_id, (1,))]
    assert script.entry(whole.entry_id).status is W.WAITING


def test_one_seat_gaps_on_different_legs_are_no_seat_for_the_journey():
    """Seat 1 free on leg 0 and seat 2 free on leg 1 is no seat free on both legs."""
    script = Script(make_trip(stops=3, capacity=2))
    a = script.create(0, 1)  # seat 1 on leg 0
    script.create(1, 2)  # seat 1 on leg 1
    b = script.create(0, 2, rider=OTHER_RIDER)  # seat 2 on both legs
    entry = script.join(0, 2, rider=THIRD_RIDER)
    cancel(script, a)  # seat 1 free on leg 0 only
    assert script.entry(entry.entry_id).status is W.WAITING
    assert offers_in(cancel(script, b, OTHER_RIDER)) == [(entry.entry_id, (2,))]


def test_accepting_turns_the_offered_seats_into_a_held_booking_with_no_moment_free():
    script = Script(make_trip(capacity=1))
    booking = script.create(0, 3)
    entry = script.join(0, 3, rider=OTHER_RIDER)
    cancel(script, booking)
    legs = list(script.state.legs)
    accept = AcceptOffer("accept", OTHER_RIDER, entry.entry_id)
    outcome = script.run(accept)
    assert outcome.accepted and (outcome.entry_id, outcome.entry_version) == (entry.entry_id, 3)
    held = script.booking(outcome.booking_id)
    assert (held.status.value, held.seats, held.rider_id) == ("HELD", (1,), OTHER_RIDER.user_id)
    assert script.entry(entry.entry_id).view().booking_id == held.booking_id
    assert script.state.legs == legs and not [e for e in outcome.events if isinstance(e, BookingMoved)]
    assert replace(script.run(accept), duplicate=False) == outcome  # a re-sent accept: the same booking
    script.pay(held)
    assert script.booking(held.booking_id).status.value == "CONFIRMED"


def test_an_offer_not_accepted_in_time_expires_by_the_log_and_passes_to_the_next_entry():
    script, first, second, _ = two_waiting_then_one_seat_freed()
    script.now += 15 * MINUTE  # the offer's last instant has come
    tick = script.run(ExpireHolds("tick", PAYMENTS))
    assert [e.entry_id for e in tick.events if e.moves[-1].target is W.OFFER_EXPIRED] == [first.entry_id]
    assert tick.events[0].moves[0].command_id == "expiry:tick"
    assert offers_in(tick) == [(second.entry_id, (1,))]  # in the same command
    assert script.run(AcceptOffer("late", OTHER_RIDER, first.entry_id)).code is Code.OFFER_EXPIRED


def test_leaving_with_an_offer_passes_its_seats_on():
    script, first, second, _ = two_waiting_then_one_seat_freed()
    outcome = script.run(LeaveWaitlist("leave", OTHER_RIDER, first.entry_id))
    assert script.entry(first.entry_id).status is W.LEFT
    assert offers_in(outcome) == [(second.entry_id, (1,))]


@pytest.mark.parametrize("how", ["refund of a confirmed booking", "hold expiry", "more seats"])
def test_every_way_seats_come_free_offers_them(how):
    script = Script(make_trip(capacity=1))
    booking = script.create(0, 3)
    entry = script.join(0, 3, rider=OTHER_RIDER)
    if how == "refund of a confirmed booking":
        script.pay(booking)
        outcome = script.run(RefundDone("refund", PAYMENTS, booking.booking_id, script.booking(booking.booking_id).total))
    elif how == "hold expiry":
        script.now += 10 * MINUTE
        outcome = walk_in(script, 0, 3)  # the walk-in comes after the offer, and finds the seat taken
        assert outcome.code is Code.SEATS_UNAVAILABLE
    else:
        outcome = script.run(PublishTrip("bigger", ROUTES, replace(script.trip, capacity=2)))
    assert offers_in(outcome) == [(entry.entry_id, (1,) if how != "more seats" else (2,))]


def test_a_cancelled_trip_ends_every_entry():
    script, offered, waiting, _ = two_waiting_then_one_seat_freed()
    assert script.run(CancelTrip("cancel", DRIVER, "Vehicle broke down")).accepted
    assert {script.entry(e.entry_id).status for e in (offered, waiting)} == {W.CANCELLED}
    assert script.state.legs == [0, 0, 0]
    assert script.run(AcceptOffer("too-late", OTHER_RIDER, offered.entry_id)).code is Code.TRIP_CANCELLED


def test_no_offer_after_the_pickups_booking_closes_and_none_lasts_beyond_it():
    script = Script(make_trip(capacity=1))
    closes = script.trip.departure_ms(0) - 15 * MINUTE
    script.now = closes - 8 * MINUTE
    booking = script.create(0, 3)
    early = script.join(0, 3, rider=OTHER_RIDER)
    late = script.join(0, 3, rider=FOURTH_RIDER)
    from_next_stop = script.join(1, 3, rider=THIRD_RIDER)
    script.now = closes - 5 * MINUTE
    cancel(script, booking)
    assert script.entry(early.entry_id).view().offer_expires_at == closes  # not the full 15 minutes
    script.now = closes
    tick = script.run(ExpireHolds("tick", PAYMENTS))
    assert script.entry(early.entry_id).status is W.OFFER_EXPIRED
    assert offers_in(tick) == [(from_next_stop.entry_id, (1,))]  # its pickup is still open
    assert script.entry(late.entry_id).status is W.WAITING  # its pickup has closed: never offered


def test_a_resent_command_that_made_offers_gets_the_same_events():
    script = Script(make_trip(capacity=2))
    booking = script.create(0, 3, seats=2)
    script.join(0, 3, rider=OTHER_RIDER)
    script.join(0, 3, rider=THIRD_RIDER)
    command = CancelBooking("the-cancel", RIDER, booking.booking_id, REASON)
    first = script.run(command)
    again = script.run(command)
    assert again.duplicate and replace(again, duplicate=False) == first and len(offers_in(first)) == 2


# -- seat choice and large trips ------------------------------------------------------------


def test_chosen_seats_are_given_all_or_nothing():
    script = Script(make_trip(capacity=10))
    script.create(0, 2, seats=2)  # seats 1 and 2
    choose = CreateBooking("choose", OTHER_RIDER, "S1", "S3", 2, seat_numbers=(7, 2))
    assert script.run(choose).code is Code.SEAT_UNAVAILABLE
    assert script.run(replace(choose, command_id="bad", seat_numbers=(7, 11))).code is Code.INVALID_SEATS
    assert script.run(replace(choose, command_id="twice", seat_numbers=(7, 7))).code is Code.INVALID_SEATS
    outcome = script.run(replace(choose, command_id="ok", seat_numbers=(9, 3)))
    assert script.booking(outcome.booking_id).seats == (3, 9)
    assert script.run(replace(choose, command_id="after", origin_stop_id="S2", seat_numbers=(1, 2))).accepted


def test_a_train_of_a_thousand_seats():
    script = Script(make_trip(capacity=1000))
    assert script.run(CreateBooking("last", RIDER, "S0", "S3", 1, seat_numbers=(1000,))).accepted
    assert script.create(0, 3, seats=4).seats == (1, 2, 3, 4)
    free = seat_map(script.state, 0, 2)
    assert len(free) == 1000 and free.count(False) == 5 and not free[999]
    assert [leg.free for leg in availability(script.state)] == [995, 995, 995]


@pytest.mark.parametrize(("capacity", "cap", "code"), [(1000, 1000, None), (1001, 1000, Code.CAPACITY_OUT_OF_RANGE),
                                                      (120, 100, Code.CAPACITY_OUT_OF_RANGE), (100, 100, None)])
def test_capacity_is_capped_by_a_setting(capacity, cap, code):
    trip = make_trip(capacity=capacity)
    outcome = handle(TripState(), PublishTrip("publish", ROUTES, trip), trip.departure_ms(0) - 30 * DAY,
                     replace(POLICY, trip_capacity_max=cap))
    assert outcome.code is code
