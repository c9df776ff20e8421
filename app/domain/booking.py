"""A booking as its creation facts plus the transitions it went through.

Every field a client sees (status, expiry, payment, refund…) is folded from the
transitions, so the snapshot as of any version can be rebuilt: that is what lets a
duplicate command get the byte-identical reply of the original, and it is the history.
"""

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PENDING = "PENDING"
    HELD = "HELD"
    PAYMENT_INITIATED = "PAYMENT_INITIATED"
    PAID = "PAID"
    CONFIRMED = "CONFIRMED"
    CHECKED_IN = "CHECKED_IN"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"
    EXPIRED = "EXPIRED"


ALLOWED: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.HELD, Status.CANCELLED, Status.EXPIRED}),
    Status.HELD: frozenset({Status.PAYMENT_INITIATED, Status.PAID, Status.CANCELLED, Status.EXPIRED}),
    Status.PAYMENT_INITIATED: frozenset({Status.PAID, Status.CANCELLED, Status.EXPIRED}),
    Status.PAID: frozenset({Status.CONFIRMED, Status.REFUNDED}),
    Status.CONFIRMED: frozenset({Status.CHECKED_IN, Status.CANCELLED, Status.REFUNDED}),
    Status.CHECKED_IN: frozenset({Status.COMPLETED, Status.CANCELLED}),
    Status.CANCELLED: frozenset({Status.REFUNDED}),
    Status.COMPLETED: frozenset(),
    Status.REFUNDED: frozenset(),
    Status.EXPIRED: frozenset(),
}

HOLDING = frozenset({Status.HELD, Status.PAYMENT_INITIATED})
SOLD = frozenset({Status.PAID, Status.CONFIRMED, Status.CHECKED_IN, Status.COMPLETED})
TERMINAL = frozenset({Status.COMPLETED, Status.REFUNDED, Status.EXPIRED})


def can_move(source: Status, target: Status) -> bool:
    return target in ALLOWED[source]


def occupies_seats(status: Status) -> bool:
    return status in HOLDING or status in SOLD


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded move (or, with source == target, one recorded fact such as a failed
    payment). `data` holds what the move sets: expiry, payment id, refund, reason text.
    Waiting-list entries record theirs the same way (statuses are then `EntryStatus`)."""

    source: StrEnum
    target: StrEnum
    reason: str
    actor: str
    at: int  # epoch ms, taken from the log
    command_id: str
    data: dict[str, Any] = field(default_factory=dict)


class Recorded:
    """What a booking and a waiting-list entry share: a history of transitions, from
    which every fact about them as of any version is folded."""

    __slots__ = ()
    transitions: tuple[Transition, ...]

    @property
    def version(self) -> int:
        return len(self.transitions)

    def with_transitions(self, *moves: Transition):
        return replace(self, transitions=self.transitions + moves)  # type: ignore[type-var]

    def command_version(self, command_id: str) -> int | None:
        """The version the given command left it at, if it moved it."""
        found = None
        for index, move in enumerate(self.transitions, start=1):
            if move.command_id == command_id:
                found = index
        return found


@dataclass(frozen=True, slots=True)
class Booking(Recorded):
    booking_id: str
    reference: str
    rider_id: str
    first_leg: int
    last_leg: int
    seats: tuple[int, ...]
    price_per_seat: int
    fare: int
    fee: int
    total: int
    source: str
    transitions: tuple[Transition, ...]
    # The view as of the last transition, folded once when the booking is made: it is
    # read on every command that looks at the booking (status, expiry, refunds owed).
    current: "BookingView" = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "current", fold(self.transitions))

    @property
    def status(self) -> Status:
        return self.current.status

    def view(self, version: int | None = None) -> "BookingView":
        """The booking as of `version` (the latest if None). Shared: do not change it."""
        if not version or version == len(self.transitions):
            return self.current
        return fold(self.transitions[:version])


@dataclass(slots=True)
class BookingView:
    """The mutable facts of a booking as of one version."""

    status: Status = Status.PENDING
    version: int = 0
    created_at: int = 0
    updated_at: int = 0
    expires_at: int | None = None
    confirmed_at: int | None = None
    cancelled_at: int | None = None
    cancellation_reason: str | None = None
    payment_id: str | None = None
    payment_status: str = "PENDING"
    amount_paid: int = 0
    refund_amount: int = 0
    refund_status: str = "NONE"


def fold(transitions: tuple[Transition, ...]) -> BookingView:
    view = BookingView()
    for move in transitions:
        _apply(view, move)
    return view


def _apply(view: BookingView, move: Transition) -> None:
    view.status = move.target
    view.version += 1
    view.updated_at = move.at
    data = move.data
    if "expires_at" in data:
        view.expires_at = data["expires_at"]
    if "payment_id" in data:
        view.payment_id = data["payment_id"]
    if "payment_status" in data:
        view.payment_status = data["payment_status"]
    match move.target:
        case Status.HELD if move.source == Status.PENDING:
            view.created_at = move.at
        case Status.PAID:
            view.amount_paid = data["amount"]
            view.expires_at = None
        case Status.CONFIRMED:
            view.confirmed_at = move.at
        case Status.CANCELLED:
            view.cancelled_at = move.at
            view.cancellation_reason = data.get("reason_text")
            view.refund_amount = data.get("refund", 0)
            view.refund_status = "PENDING" if view.refund_amount else "NONE"
            view.expires_at = None
        case Status.REFUNDED:
            view.refund_amount = data.get("refund", view.refund_amount)
            view.refund_status = "PROCESSED"
            view.payment_status = "REFUNDED"
        case Status.EXPIRED:
            view.expires_at = move.at if view.expires_at is None else view.expires_at
