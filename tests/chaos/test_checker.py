"""The chaos checker's own counts (bench.checker.check_truth): a broken booking is counted
on every trip, with or without a waiting list."""

from collections import Counter

from app.domain.booking import Status, Transition
from bench.checker import Truth, check_truth
from tests.support.core import Script, make_trip


def counted(script: Script) -> Counter[str]:
    counts: Counter[str] = Counter()
    check_truth(Truth(states={"trip": script.state}), counts)
    return counts


def resolved_again(script: Script, booking_id: str) -> None:
    """The booking's hold resolved a second time, as a faulty processor might record it."""
    booking = script.booking(booking_id)
    again = Transition(Status.HELD, Status.EXPIRED, "expired", "system", script.now, "again")
    script.state.bookings[booking_id] = booking.with_transitions(again)


def test_a_hold_resolved_twice_is_counted_on_a_trip_without_a_waiting_list() -> None:
    script = Script()
    booking = script.create()
    script.pay(booking)
    assert counted(script)["hold_resolved_twice"] == 0
    resolved_again(script, booking.booking_id)
    assert not script.state.entries
    assert counted(script)["hold_resolved_twice"] == 1


def test_every_booking_of_a_trip_is_checked_not_only_the_last() -> None:
    script = Script(make_trip(capacity=2))
    first = script.create()
    script.pay(first)
    second = script.create()
    script.pay(second)
    script.join()  # sold out: the trip has a waiting list too
    resolved_again(script, first.booking_id)
    assert counted(script)["hold_resolved_twice"] == 1
