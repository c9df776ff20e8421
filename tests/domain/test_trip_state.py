"""A trip's state as a whole: trip updates, the bounded entry, and duplicate trip commands."""

from dataclasses import replace

from app.domain.commands import CancelTrip, CreateBooking, PublishTrip
from app.domain.handle import handle
from app.domain.ids import booking_id_for
from app.domain.rejections import Code
from app.domain.state import TripState, availability
from tests.support.core import DAY, DRIVER, POLICY, RIDER, ROUTES, Script, make_trip


def conserved(state: TripState) -> bool:
    return all(leg.free + leg.held + leg.sold == state.trip.capacity for leg in availability(state))


def test_a_trip_republished_with_more_stops_before_any_booking_can_be_booked_on_them():
    script = Script(make_trip(stops=3))
    assert script.run(PublishTrip("republish", DRIVER, make_trip(stops=6))).accepted
    assert len(script.state.legs) == 5
    assert script.create(4, 5).seats == (1,)


def test_stops_are_frozen_and_capacity_shrinks_only_down_to_the_seats_in_use():
    script = Script(make_trip(stops=3, capacity=10))
    script.create(0, 1, seats=3)
    assert script.run(PublishTrip("more-stops", DRIVER, make_trip(stops=4, capacity=10))).code is \
        Code.TRIP_UPDATE_CONFLICT
    assert script.run(PublishTrip("too-small", DRIVER, make_trip(stops=3, capacity=2))).code is \
        Code.TRIP_UPDATE_CONFLICT
    assert script.run(PublishTrip("smaller", DRIVER, make_trip(stops=3, capacity=3))).accepted
    assert conserved(script.state)
    assert script.run(CreateBooking("full", RIDER, "S0", "S1", 1)).code is Code.SEATS_UNAVAILABLE


def test_a_duplicate_trip_command_gets_the_original_events():
    state, trip = TripState(), make_trip()
    now = trip.departure_ms(0) - 7 * DAY
    publish = PublishTrip("publish", ROUTES, trip)
    first = handle(state, publish, now, POLICY)
    assert first.accepted and replace(handle(state, publish, now + 1, POLICY), duplicate=False) == first
    cancel = CancelTrip("cancel", DRIVER, "Vehicle broke down")
    first = handle(state, cancel, now + 2, POLICY)
    assert first.accepted and replace(handle(state, cancel, now + 3, POLICY), duplicate=False) == first


def test_a_remembered_outcome_is_recalled_for_the_retention_window_and_decided_again_after():
    script = Script(make_trip(capacity=1))
    script.pay(script.create(0, 1))
    full = CreateBooking("full", RIDER, "S0", "S1", 1)
    first = script.run(full)
    assert first.code is Code.SEATS_UNAVAILABLE
    window = script.policy.outcome_retention_ms
    script.now += window - 1
    assert script.run(full).duplicate
    script.now += 1
    again = script.run(full)
    assert not again.duplicate and again.code is Code.SEATS_UNAVAILABLE
    assert script.state.remembered["full"].at == script.now  # remembered anew, from now


def test_the_hold_index_follows_the_holds():
    script = Script(make_trip(capacity=4))
    first, second = script.create(0, 1), script.create(1, 2)
    assert script.state.holds.expires == {first.booking_id: first.view().expires_at,
                                          second.booking_id: second.view().expires_at}
    script.pay(first)
    assert script.state.holds.expires == {second.booking_id: second.view().expires_at}
    assert script.state.holds.earliest() == second.view().expires_at
    script.now = second.view().expires_at
    script.run(CreateBooking("late", RIDER, "S2", "S3", 1))
    assert second.booking_id not in script.state.holds.expires
    assert script.state.holds.earliest() == script.state.bookings[booking_id_for(
        script.trip.route_id, script.trip.travel_date, "late")].view().expires_at
