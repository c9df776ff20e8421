"""A waiting-list entry: a rider waiting for seats on a journey of a sold-out trip.

Like a booking, an entry is its creation facts plus the transitions it went through, so
its snapshot as of any version can be rebuilt (a duplicate command gets the same reply
and events). Its life:

    NEW -> WAITING -> OFFERED -> ACCEPTED        (the offered seats became a HELD booking)
                   |          -> OFFER_EXPIRED   (not accepted in time)
                   |          -> LEFT, CANCELLED
                   -> LEFT                       (the rider left the list)
                   -> CANCELLED                  (the driver cancelled the trip)

An OFFERED entry holds its seats on the leg inventory exactly as a held booking does.
"""

from dataclasses import dataclass
from enum import StrEnum

from app.domain.booking import Recorded, Transition


class EntryStatus(StrEnum):
    NEW = "NEW"  # before joining: only the source of the first transition
    WAITING = "WAITING"
    OFFERED = "OFFERED"
    ACCEPTED = "ACCEPTED"
    OFFER_EXPIRED = "OFFER_EXPIRED"
    LEFT = "LEFT"
    CANCELLED = "CANCELLED"


ENTRY_ALLOWED: dict[EntryStatus, frozenset[EntryStatus]] = {
    EntryStatus.NEW: frozenset({EntryStatus.WAITING}),
    EntryStatus.WAITING: frozenset({EntryStatus.OFFERED, EntryStatus.LEFT, EntryStatus.CANCELLED}),
    EntryStatus.OFFERED: frozenset({EntryStatus.ACCEPTED, EntryStatus.OFFER_EXPIRED, EntryStatus.LEFT,
                                    EntryStatus.CANCELLED}),
    EntryStatus.ACCEPTED: frozenset(),
    EntryStatus.OFFER_EXPIRED: frozenset(),
    EntryStatus.LEFT: frozenset(),
    EntryStatus.CANCELLED: frozenset(),
}

LISTED = frozenset({EntryStatus.WAITING, EntryStatus.OFFERED})  # live: on the list, or holding an offer


@dataclass(frozen=True, slots=True)
class Entry(Recorded):
    entry_id: str
    rider_id: str
    first_leg: int
    last_leg: int
    seats_wanted: int  # the party size: an offer is for all of them or none
    join_order: int  # 1 for the trip's first entry ever, and so on: offers go in this order
    position: int  # its place among the trip's waiting entries when it joined (1 = next)
    transitions: tuple[Transition, ...]

    @property
    def status(self) -> EntryStatus:
        return self.transitions[-1].target  # type: ignore[return-value]

    def view(self, version: int | None = None) -> "EntryView":
        view = EntryView()
        for move in self.transitions[: version or self.version]:
            view.apply(move)
        return view


@dataclass(slots=True)
class EntryView:
    """The mutable facts of an entry as of one version."""

    status: EntryStatus = EntryStatus.NEW
    version: int = 0
    joined_at: int = 0
    updated_at: int = 0
    offered_at: int | None = None
    offer_expires_at: int | None = None
    seats: tuple[int, ...] = ()
    booking_id: str | None = None

    def apply(self, move: Transition) -> None:
        self.status = move.target  # type: ignore[assignment]
        self.version += 1
        self.updated_at = move.at
        match move.target:
            case EntryStatus.WAITING:
                self.joined_at = move.at
            case EntryStatus.OFFERED:
                self.offered_at = move.at
                self.offer_expires_at = move.data["expires_at"]
                self.seats = tuple(move.data["seats"])
            case EntryStatus.ACCEPTED:
                self.booking_id = move.data["booking_id"]


def can_move_entry(source: EntryStatus, target: EntryStatus) -> bool:
    return target in ENTRY_ALLOWED[source]


def holds_seats(status: EntryStatus) -> bool:
    return status is EntryStatus.OFFERED
