"""What an ordinary token must not be able to do to a trip: take it over, change what its
riders paid for, hoard its seats, or learn about other drivers' bookings."""

from dataclasses import replace
from datetime import date, time

import pytest

from app.domain.commands import CancelTrip, CheckIn, Complete, CreateBooking, PublishTrip
from app.domain.handle import handle
from app.domain.rejections import Code
from app.domain.state import TripState
from app.domain.trip import TripStatus
from tests.support.core import ADMIN, DAY, DRIVER, OTHER_DRIVER, OTHER_RIDER, POLICY, RIDER, ROUTES, Script, make_trip

REASON = "My plans changed, sorry"


def publish(state: TripState, actor, trip, now: int):
    return handle(state, PublishTrip(f"publish-{state.trip_version}-{actor.user_id}", actor, trip), now, POLICY)


# -- who creates a trip, and who may take it back -----------------------------------------


def test_a_driver_cannot_claim_a_route_and_date_nobody_published():
    trip = make_trip()
    state = TripState()
    assert publish(state, DRIVER, trip, trip.departure_ms(0) - 7 * DAY).code is Code.FORBIDDEN
    assert state.trip is None
    assert publish(state, ROUTES, trip, trip.departure_ms(0) - 7 * DAY).accepted


def test_a_driver_updates_their_trip_but_cannot_hand_it_to_another_driver():
    script = Script()
    assert script.run(PublishTrip("fares", DRIVER, replace(script.trip, leg_fares=(900, 900, 900)))).accepted
    handover = replace(script.trip, driver_id=OTHER_DRIVER.user_id)
    assert script.run(PublishTrip("handover", DRIVER, handover)).code is Code.FORBIDDEN
    assert script.run(PublishTrip("reassigned", ROUTES, handover)).accepted  # the route service may
    assert script.run(PublishTrip("taken-back", DRIVER, script.trip)).code is Code.FORBIDDEN


def test_the_route_service_reopens_a_cancelled_trip_and_its_cancelled_bookings_stay_cancelled():
    script = Script()
    booking = script.create(0, 1)
    assert script.run(CancelTrip("cancel", DRIVER, "Vehicle broke down")).accepted
    assert script.run(PublishTrip("driver-reopens", DRIVER, script.trip)).code is Code.TRIP_CANCELLED
    outcome = script.run(PublishTrip("reopen", ROUTES, script.trip))
    assert outcome.accepted and script.state.trip.status is TripStatus.ACTIVE
    assert script.booking(booking.booking_id).status.value == "CANCELLED"
    assert script.create(0, 1).seats == (1,)


# -- what a booking was decided on stays as it was ----------------------------------------


@pytest.mark.parametrize("change", [
    {"currency": "USD"},
    {"timezone": "Europe/London"},
    {"departure_time": time(6, 0)},  # earlier: it would cut a refund from 100 % to 50 %
])
def test_once_booked_a_trips_money_and_times_cannot_change_under_its_riders(change):
    script = Script()
    booking = script.create(0, 1)
    script.pay(booking)
    update = replace(script.trip, **change)
    for actor in (DRIVER, ROUTES, ADMIN):
        assert script.run(PublishTrip(f"change-{actor.user_id}", actor, update)).code is Code.TRIP_UPDATE_CONFLICT
    assert script.state.trip == script.trip


def test_before_any_booking_the_route_service_may_still_change_everything():
    script = Script()
    moved = replace(script.trip, currency="USD", timezone="Europe/London", departure_time=time(6, 0))
    assert script.run(PublishTrip("retime", ROUTES, moved)).accepted


# -- how far ahead ------------------------------------------------------------------------


@pytest.mark.parametrize(("travel_date", "zone"), [(date(9999, 12, 31), "Etc/GMT+12"), (date(2031, 9, 1), "UTC")])
def test_a_trip_too_far_ahead_is_refused_before_any_time_arithmetic_can_overflow(travel_date, zone):
    now = make_trip().departure_ms(0) - 30 * DAY  # 2030-05-16
    trip = make_trip(travel_date=travel_date, timezone=zone)
    assert publish(TripState(), ROUTES, trip, now).code is Code.TRAVEL_DATE_OUT_OF_RANGE


def test_a_trip_already_run_is_not_published_again():
    trip = make_trip()
    assert publish(TripState(), ROUTES, trip, trip.departure_ms(0) + 2 * DAY).code is Code.TRAVEL_DATE_OUT_OF_RANGE
    assert publish(TripState(), ROUTES, trip, trip.departure_ms(0) + 2 * 3600_000).accepted  # the same day


# -- hoarding -------------------------------------------------------------------------------


def test_one_rider_cannot_hold_more_than_the_limit_of_a_trip():
    script = Script(make_trip(capacity=14))
    script.create(0, 3, seats=4)
    script.create(0, 3, seats=4)  # 8 held: the limit
    outcome = script.run(CreateBooking(script.next_id(), RIDER, "S0", "S3", 1))
    assert outcome.code is Code.HOLD_LIMIT_REACHED
    assert script.create(0, 3, seats=4, rider=OTHER_RIDER).seats == (9, 10, 11, 12)  # others still can


def test_paying_frees_the_riders_allowance():
    script = Script(make_trip(capacity=14))
    script.pay(script.create(0, 1, seats=4))
    script.create(0, 1, seats=4)
    assert script.create(0, 1, seats=4).seats == (9, 10, 11, 12)


# -- what another trip's driver can learn ----------------------------------------------------


@pytest.mark.parametrize("kind", [CheckIn, Complete])
def test_another_drivers_booking_is_answered_like_an_unknown_one(kind):
    script = Script()
    booking = script.create(0, 1)
    script.pay(booking)
    theirs = script.run(kind("theirs", OTHER_DRIVER, booking.booking_id))
    unknown = script.run(kind("unknown", OTHER_DRIVER, booking.booking_id[:-1] + "Z"))
    assert theirs.code is unknown.code is Code.BOOKING_NOT_FOUND
    assert theirs.events == unknown.events == ()
