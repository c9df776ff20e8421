"""The invariants checked on what the workers answered (docs/design.md numbers them)."""

from typing import Any


def assert_one_outcome_each(replies: dict[str, list[bytes]], sent: list[str]) -> None:
    """Exactly one outcome per command id: answered, and every answer byte-identical."""
    missing = [c for c in sent if c not in replies]
    assert not missing, f"{len(missing)} commands never answered, e.g. {missing[:3]}"
    differing = {c: r for c, r in replies.items() if len(set(r)) > 1}
    assert not differing, f"commands answered differently: {list(differing.items())[:2]}"


def assert_no_seat_twice(accepted: list[dict[str, Any]]) -> None:
    """Bookings of one trip that share a leg never share a seat (the test trips have legs
    0 and 1; a LAG-OYO journey uses both)."""
    legs = {("LAG", "IBD"): {0}, ("IBD", "OYO"): {1}, ("LAG", "OYO"): {0, 1}}
    taken: set[tuple[str, int, int]] = set()
    for booking in accepted:
        for leg in legs[(booking["originStopId"], booking["destinationStopId"])]:
            for seat in booking["seatNumbers"]:
                spot = (booking["routeId"], leg, seat)
                assert spot not in taken, f"seat {seat} on leg {leg} of {booking['routeId']} sold twice"
                taken.add(spot)


def assert_conserved(availability: list[dict[str, Any]], capacity: int) -> None:
    for leg in availability:
        assert leg["free"] + leg["held"] + leg["sold"] == capacity, leg
        assert min(leg["free"], leg["held"], leg["sold"]) >= 0, leg
