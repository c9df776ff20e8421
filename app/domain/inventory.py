"""Leg inventory as one bitmask per leg: bit s-1 set means seat s is taken on that leg.

A trip of 10 stops and 50 seats is nine small ints: allocation is a few ORs, and the
serialized inventory stays tens of bytes. A 1,000-seat train is nine 1,000-bit ints:
the same operations, on Python's arbitrary-precision ints.
"""

from collections.abc import Sequence


def taken_on(legs: Sequence[int], first: int, last: int) -> int:
    """Seats taken on any leg from `first` to `last` inclusive."""
    mask = 0
    for leg in range(first, last + 1):
        mask |= legs[leg]
    return mask


def lowest_free(taken: int, capacity: int, count: int) -> tuple[int, ...] | None:
    """The `count` lowest seat numbers not in `taken`, or None when too few are free."""
    seats: list[int] = []
    free = ~taken & ((1 << capacity) - 1)
    while free and len(seats) < count:
        low = free & -free
        seats.append(low.bit_length())
        free ^= low
    return tuple(seats) if len(seats) == count else None


def seat_mask(seats: Sequence[int]) -> int:
    mask = 0
    for seat in seats:
        mask |= 1 << (seat - 1)
    return mask


def occupy(legs: list[int], first: int, last: int, seats: Sequence[int]) -> None:
    mask = seat_mask(seats)
    for leg in range(first, last + 1):
        legs[leg] |= mask


def release(legs: list[int], first: int, last: int, seats: Sequence[int]) -> None:
    mask = seat_mask(seats)
    for leg in range(first, last + 1):
        legs[leg] &= ~mask


def free_counts(legs: Sequence[int], capacity: int) -> list[int]:
    return [capacity - leg.bit_count() for leg in legs]


def is_free(taken: int, seats: Sequence[int]) -> bool:
    return not taken & seat_mask(seats)


def free_flags(taken: int, capacity: int) -> list[bool]:
    """For seats 1..capacity in order: free (not in `taken`)."""
    return [not taken >> index & 1 for index in range(capacity)]
