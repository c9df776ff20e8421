"""The leg bitmask helpers, against a naive model: one set of taken seats per leg."""

import hypothesis.strategies as st
from hypothesis import given

from app.domain import inventory


def test_a_seat_is_one_bit():
    assert inventory.seat_mask([]) == 0
    assert inventory.seat_mask([1]) == 0b1
    assert inventory.seat_mask([1, 3, 50]) == 0b101 | 1 << 49


def test_seats_taken_on_a_range_of_legs_is_the_union_of_those_legs():
    legs = [0b0001, 0b0010, 0b0100, 0b1000]
    assert inventory.taken_on(legs, 1, 2) == 0b0110
    assert inventory.taken_on(legs, 0, 3) == 0b1111
    assert inventory.taken_on(legs, 3, 3) == 0b1000


def test_the_lowest_free_seats_skip_the_taken_ones():
    assert inventory.lowest_free(0b0000, 4, 2) == (1, 2)
    assert inventory.lowest_free(0b0101, 4, 2) == (2, 4)
    assert inventory.lowest_free(0b0101, 4, 3) is None
    assert inventory.lowest_free(0b1111, 4, 1) is None


def test_seats_above_capacity_are_never_given():
    assert inventory.lowest_free(0b011, 3, 1) == (3,)
    assert inventory.lowest_free(0b111, 3, 1) is None


def test_occupy_and_release_touch_only_the_legs_of_the_journey():
    legs = [0, 0, 0, 0]
    inventory.occupy(legs, 1, 2, (1, 3))
    assert legs == [0, 0b101, 0b101, 0]
    inventory.release(legs, 1, 2, (3,))
    assert legs == [0, 0b001, 0b001, 0]


def test_free_counts_per_leg():
    assert inventory.free_counts([0, 0b111, 0b101], 5) == [5, 2, 3]


# -- against the naive model ----------------------------------------------------------------


def naive_lowest_free(taken: set[int], capacity: int, count: int) -> tuple[int, ...] | None:
    free = [seat for seat in range(1, capacity + 1) if seat not in taken]
    return tuple(free[:count]) if len(free) >= count else None


def as_set(mask: int) -> set[int]:
    return {bit + 1 for bit in range(mask.bit_length()) if mask >> bit & 1}


@st.composite
def journeys(draw, legs: int):
    first = draw(st.integers(0, legs - 1))
    last = draw(st.integers(first, legs - 1))
    return first, last, draw(st.integers(1, 5)), draw(st.booleans())


@st.composite
def scenarios(draw):
    legs, capacity = draw(st.integers(1, 9)), draw(st.integers(1, 64))
    return legs, capacity, draw(st.lists(journeys(legs), max_size=40))


@given(scenarios())
def test_the_bitmask_inventory_behaves_like_a_set_per_leg(scenario):
    """Book journeys (and sometimes give them back) on both; they always agree."""
    leg_count, capacity, journeys_ = scenario
    legs = [0] * leg_count
    naive: list[set[int]] = [set() for _ in range(leg_count)]
    for first, last, count, give_back in journeys_:
        taken = set().union(*naive[first:last + 1])
        assert as_set(inventory.taken_on(legs, first, last)) == taken
        seats = inventory.lowest_free(inventory.taken_on(legs, first, last), capacity, count)
        assert seats == naive_lowest_free(taken, capacity, count)
        if seats is None:
            continue
        inventory.occupy(legs, first, last, seats)
        for leg in range(first, last + 1):
            naive[leg] |= set(seats)
        if give_back:
            inventory.release(legs, first, last, seats)
            for leg in range(first, last + 1):
                naive[leg] -= set(seats)
        assert [as_set(mask) for mask in legs] == naive
        assert inventory.free_counts(legs, capacity) == [capacity - len(s) for s in naive]
