"""Prices, refunds, the clock rules (time zones, DST, booking close) and identities."""

import re
from datetime import date, time
from decimal import Decimal

import hypothesis.strategies as st
import pytest
from hypothesis import given

from app.domain import money
from app.domain.commands import CancelBooking, CreateBooking, RefundDone
from app.domain.ids import booking_id_for, reference_for, trip_of_booking
from app.domain.policy import Policy
from app.domain.rejections import Code
from tests.support.core import HOUR, MINUTE, OTHER_RIDER, PAYMENTS, POLICY, RIDER, Script, local_ms, make_trip

REASON = "My plans changed, sorry"

# -- prices -------------------------------------------------------------------------------


@pytest.mark.parametrize(("occupancy", "multiplier"), [
    ("0", "1.00"), ("0.4999", "1.00"), ("0.5", "1.10"), ("0.7999", "1.10"), ("0.8", "1.25"), ("1", "1.25"),
])
def test_demand_bands_start_at_their_threshold(occupancy, multiplier):
    assert money.demand_multiplier(Decimal(occupancy), POLICY) == Decimal(multiplier)


@pytest.mark.parametrize(("fare", "fee"), [(10, 1), (9, 0), (30, 2), (1010, 51), (1009, 50), (1000, 50)])
def test_the_platform_fee_is_5_percent_rounded_half_up_in_minor_units(fare, fee):
    price = money.quote(fare, 1, Decimal(0), POLICY)
    assert (price.per_seat, price.fare, price.fee, price.total) == (fare, fare, fee, fare + fee)


def test_price_per_seat_is_rounded_half_up_before_multiplying_by_seats():
    price = money.quote(1005, 3, Decimal("0.5"), POLICY)  # 1005 x 1.10 = 1105.5
    assert (price.per_seat, price.fare, price.fee, price.total) == (1106, 3318, 166, 3484)


@pytest.mark.parametrize(("sold", "multiplier"), [(4, "1.00"), (5, "1.10"), (7, "1.10"), (8, "1.25")])
def test_the_demand_multiplier_comes_from_the_seats_sold_before_booking(sold, multiplier):
    script = Script(make_trip(stops=3, capacity=10, fares=(1000, 500)))
    while sold:
        script.pay(script.create(0, 1, seats=min(sold, 4)))
        sold -= min(sold, 4)
    assert script.create(0, 1, seats=1).price_per_seat == int(1000 * Decimal(multiplier))


def test_held_seats_do_not_raise_the_price_for_others():
    script = Script(make_trip(stops=3, capacity=10, fares=(1000, 500)))
    script.create(0, 1, seats=4, rider=OTHER_RIDER)
    script.create(0, 1, seats=4, rider=OTHER_RIDER)  # 80 % held by one rider who never pays
    assert script.create(0, 1, seats=1).price_per_seat == 1000


def test_a_refunded_sale_stops_counting_for_demand():
    script = Script(make_trip(stops=3, capacity=10, fares=(1000, 500)))
    sold = [script.create(0, 1, seats=4), script.create(0, 1, seats=4, rider=OTHER_RIDER)]
    for booking in sold:
        script.pay(booking)
    script.run(RefundDone("refund", PAYMENTS, sold[0].booking_id, sold[0].total))
    assert script.create(0, 1, seats=1).price_per_seat == 1000  # 4 of 10 sold again


def test_only_the_legs_a_booking_uses_set_its_demand_band():
    script = Script(make_trip(stops=3, capacity=10, fares=(1000, 500)))
    script.pay(script.create(1, 2, seats=4))
    script.pay(script.create(1, 2, seats=4, rider=OTHER_RIDER))  # leg 1 is 80 % sold, leg 0 is empty
    assert script.create(0, 1).price_per_seat == 1000
    assert script.create(0, 2).price_per_seat == 1875  # (1000 + 500) x 1.25


def test_the_fare_is_the_sum_of_the_legs_fares_times_seats_plus_the_fee():
    script = Script(make_trip(stops=4, capacity=50, fares=(1234, 2345, 3456)))
    booking = script.create(1, 3, seats=3)
    assert (booking.price_per_seat, booking.fare, booking.fee, booking.total) == (5801, 17403, 870, 18273)


# -- refunds ------------------------------------------------------------------------------


@pytest.mark.parametrize(("hours", "share"), [(100, "1"), (24, "1"), (23, "0.5"), (6, "0.5"), (5, "0"), (0, "0"),
                                              (-3, "0")])
def test_refund_bands(hours, share):
    assert money.refund_share(hours, POLICY) == Decimal(share)


def test_half_refunds_round_half_up_and_never_exceed_what_was_paid():
    assert money.refund_amount(1001, 6, POLICY) == 501
    assert money.refund_amount(1001, 24, POLICY) == 1001
    assert money.refund_amount(1001, 5, POLICY) == 0


def paid_booking_cancelled_at(before_departure: int, origin: int = 0):
    script = Script(make_trip(stops=4, fares=(1001, 1001, 1001)))
    booking = script.create(origin, origin + 1)
    script.pay(booking)
    script.now = script.trip.departure_ms(origin) - before_departure
    assert script.run(CancelBooking("cancel", RIDER, booking.booking_id, REASON)).accepted
    return booking, script.booking(booking.booking_id).view()


@pytest.mark.parametrize(("before_departure", "refunded_share"), [
    (24 * HOUR, 1), (24 * HOUR - 1, 0.5), (23 * HOUR + 59 * MINUTE, 0.5),
    (6 * HOUR, 0.5), (6 * HOUR - 1, 0), (5 * HOUR + 59 * MINUTE, 0), (0, 0),
])
def test_a_rider_cancel_refunds_by_whole_hours_before_departure(before_departure, refunded_share):
    booking, view = paid_booking_cancelled_at(before_departure)
    assert view.refund_amount == money.round_half_up(Decimal(booking.total) * Decimal(str(refunded_share)))
    assert 0 <= view.refund_amount <= view.amount_paid == booking.total


def test_refund_hours_count_from_departure_at_the_pickup_stop():
    script = Script(make_trip(stops=4, offsets=(0, 30, 60, 90)))
    booking = script.create(2, 3)
    script.pay(booking)
    script.now = script.trip.departure_ms(0) - 24 * HOUR + 30 * MINUTE  # 23.5 h before the first stop
    script.run(CancelBooking("cancel", RIDER, booking.booking_id, REASON))
    assert script.booking(booking.booking_id).view().refund_amount == booking.total  # 24.5 h before stop 2


def test_an_unpaid_cancel_refunds_nothing():
    script = Script()
    booking = script.create(0, 1)
    script.run(CancelBooking("cancel", RIDER, booking.booking_id, REASON))
    view = script.booking(booking.booking_id).view()
    assert (view.refund_amount, view.refund_status) == (0, "NONE")


# -- time zones and daylight saving -------------------------------------------------------

LONDON = "Europe/London"
SPRING_FORWARD = date(2030, 3, 31)  # last Sunday of March: 01:00 GMT -> 02:00 BST
FALL_BACK = date(2030, 10, 27)  # last Sunday of October: 02:00 BST -> 01:00 GMT


def test_departure_is_the_local_time_in_the_routes_zone():
    trip = make_trip(timezone=LONDON, travel_date=date(2030, 6, 15), departure=time(8, 0))
    assert trip.departure_ms(0) == local_ms(date(2030, 6, 15), time(7, 0), "UTC")  # 08:00 BST


def test_stop_offsets_are_elapsed_time_across_a_clock_change():
    trip = make_trip(stops=2, offsets=(0, 90), timezone=LONDON, travel_date=SPRING_FORWARD, departure=time(0, 30))
    assert trip.departure_ms(1) == local_ms(SPRING_FORWARD, time(3, 0), LONDON)  # 00:30 GMT + 1h30 = 03:00 BST


@pytest.mark.parametrize(("cancelled_local", "refunded_share"), [
    (time(12, 0), 0.5),  # 24 wall-clock hours before, but only 23 real hours: the clocks went forward
    (time(11, 0), 1),  # 25 wall-clock hours before, 24 real hours
])
def test_refund_hours_are_real_hours_when_the_clocks_go_forward(cancelled_local, refunded_share):
    trip = make_trip(timezone=LONDON, travel_date=SPRING_FORWARD, departure=time(12, 0), fares=(1000, 1000, 1000))
    script = Script(trip)
    booking = script.create(0, 1)
    script.pay(booking)
    script.now = local_ms(date(2030, 3, 30), cancelled_local, LONDON)
    script.run(CancelBooking("cancel", RIDER, booking.booking_id, REASON))
    assert script.booking(booking.booking_id).view().refund_amount == int(booking.total * refunded_share)


@pytest.mark.parametrize(("cancelled_local", "extra_ms", "refunded_share"), [
    (time(13, 0), 0, 1),  # 23 wall-clock hours before, but 24 real hours: the clocks went back
    (time(13, 0), 1, 0.5),
])
def test_refund_hours_are_real_hours_when_the_clocks_go_back(cancelled_local, extra_ms, refunded_share):
    trip = make_trip(timezone=LONDON, travel_date=FALL_BACK, departure=time(12, 0), fares=(1000, 1000, 1000))
    script = Script(trip)
    booking = script.create(0, 1)
    script.pay(booking)
    script.now = local_ms(date(2030, 10, 26), cancelled_local, LONDON) + extra_ms
    script.run(CancelBooking("cancel", RIDER, booking.booking_id, REASON))
    assert script.booking(booking.booking_id).view().refund_amount == int(booking.total * refunded_share)


# -- booking close ------------------------------------------------------------------------


def create_at(script: Script, now: int, origin: int):
    script.now = now
    return script.run(CreateBooking(script.next_id(), RIDER, f"S{origin}", f"S{origin + 1}", 1))


@pytest.mark.parametrize(("origin", "offset_minutes"), [(0, 0), (2, 60)])
def test_booking_closes_15_minutes_before_departure_from_the_pickup_stop(origin, offset_minutes):
    script = Script(make_trip(stops=4, offsets=(0, 30, 60, 90)))
    closing = script.trip.departure_ms(0) + offset_minutes * MINUTE - 15 * MINUTE
    assert create_at(script, closing, origin).accepted
    assert create_at(script, closing + 1, origin).code is Code.BOOKING_CLOSED


def test_later_stops_stay_bookable_after_the_trip_has_left():
    script = Script(make_trip(stops=4, offsets=(0, 30, 60, 90)))
    after_departure = script.trip.departure_ms(0) + 10 * MINUTE
    assert create_at(script, after_departure, 0).code is Code.BOOKING_CLOSED
    assert create_at(script, after_departure, 2).accepted


def test_same_day_booking_is_allowed():
    trip = make_trip(travel_date=date(2030, 6, 15), departure=time(18, 0), timezone=LONDON)
    script = Script(trip, now=local_ms(date(2030, 6, 15), time(9, 0), LONDON))
    assert create_at(script, script.now, 0).accepted


def test_the_closing_time_is_configurable():
    script = Script(make_trip(), policy=Policy(booking_close_minutes=60))
    departure = script.trip.departure_ms(0)
    assert create_at(script, departure - 60 * MINUTE, 0).accepted
    assert create_at(script, departure - 60 * MINUTE + 1, 0).code is Code.BOOKING_CLOSED


# -- identities ---------------------------------------------------------------------------

TRAVEL = date(2030, 6, 15)


def test_booking_ids_and_references_are_determined_by_the_command():
    assert booking_id_for("R1", TRAVEL, "cmd-1") == booking_id_for("R1", TRAVEL, "cmd-1")
    assert reference_for("R1", TRAVEL, "cmd-1") == reference_for("R1", TRAVEL, "cmd-1")
    assert booking_id_for("R1", TRAVEL, "cmd-1") != booking_id_for("R1", TRAVEL, "cmd-2")
    assert booking_id_for("R1", TRAVEL, "cmd-1") != booking_id_for("R2", TRAVEL, "cmd-1")


def test_the_reference_is_bk_the_travel_date_and_6_upper_case_characters():
    references = {reference_for("R1", TRAVEL, f"cmd-{i}") for i in range(2000)}
    assert len(references) == 2000
    for reference in references:
        assert re.fullmatch(r"BK20300615[A-Z2-7]{6}", reference), reference


def test_a_replayed_create_gets_the_same_id_and_reference():
    first, second = Script(), Script()
    command = CreateBooking("cmd-1", RIDER, "S0", "S1", 1)
    a = first.state.bookings[first.run(command).booking_id]
    b = second.state.bookings[second.run(command).booking_id]
    assert (a.booking_id, a.reference) == (b.booking_id, b.reference)


@given(route_id=st.text(st.sampled_from("ABCxyz019-_.:"), min_size=1, max_size=20),
       travel=st.dates(date(2000, 1, 1), date(2099, 12, 31)), command_id=st.text(min_size=1, max_size=40))
def test_a_booking_id_names_its_trip(route_id, travel, command_id):
    booking_id = booking_id_for(route_id, travel, command_id)
    assert re.fullmatch(r".+\.\d{8}\.[A-Z2-7]{16}", booking_id)
    assert trip_of_booking(booking_id) == (route_id, travel)


@pytest.mark.parametrize("booking_id", [
    "", "R1", "R1.20300615", "R1.20300615.SHORT", ".20300615.AAAAAAAAAAAAAAAA",
    "R1.20300230.AAAAAAAAAAAAAAAA",  # 30 February
    "R1.2030615.AAAAAAAAAAAAAAAA",  # seven digits
    "R1.203006150.AAAAAAAAAAAAAAAA",  # nine digits
    "R1.2030-6-1.AAAAAAAAAAAAAAAA",
    "R1.+2030615.AAAAAAAAAAAAAAAA",
    "R1.20300615.AAAAAAAAAAAAAAAAA",  # seventeen characters
    "BK20300615ABCDEF",  # a reference is not an id
])
def test_what_is_not_a_booking_id_names_no_trip(booking_id):
    assert trip_of_booking(booking_id) is None
