"""Genuine events for the sink and gateway tests: trips driven through the real core
(app.domain.handle.handle) and rendered by app.wire.outbound.lifecycle_events, the
same path the worker takes. Nothing here writes event JSON by hand."""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

import orjson

from app.domain.commands import (
    AcceptOffer,
    Actor,
    CancelBooking,
    CheckIn,
    Complete,
    CreateBooking,
    ExpireHolds,
    InitiatePayment,
    JoinWaitlist,
    LeaveWaitlist,
    PaymentFailed,
    PaymentSucceeded,
    PublishTrip,
    RefundDone,
    Role,
)
from app.domain.handle import Outcome, handle
from app.domain.policy import Policy
from app.domain.state import TripState
from app.domain.trip import Stop, Trip
from app.wire.topics import CONTRACT
from app.wire.outbound import entry_snapshot, lifecycle_events, snapshot

# Fixed times keep the events deterministic; the sink never compares them with the clock.
# A trip's log starts two days before it runs (the core publishes only trips due soon).
START = datetime(2031, 3, 10, 8, 0, tzinfo=UTC)
TRAVEL_DATE = date(2031, 3, 12)
LEAD = TRAVEL_DATE - START.date()
PAYMENTS = Actor("payments", Role.SERVICE)
ADMIN = Actor("ops", Role.ADMIN)
MINUTE_MS = 60_000


def unique_prefix(name: str) -> str:
    """Route ids unique to this run: the topics are shared with other engineers."""
    return f"sinktest-{name}-{uuid.uuid4().hex[:10]}"


@dataclass
class TripLog:
    """One trip driven through the real core, keeping every record it published."""

    route_id: str
    travel_date: date = TRAVEL_DATE
    capacity: int = 48
    now: int | None = None  # epoch ms; by default LEAD before the travel date, at START's time of day
    state: TripState = field(default_factory=TripState)
    policy: Policy = field(default_factory=Policy)
    records: list[tuple[str, str, bytes]] = field(default_factory=list)
    driver: Actor = field(init=False)
    _commands: int = 0

    def __post_init__(self) -> None:
        if self.now is None:
            self.now = int(datetime.combine(self.travel_date - LEAD, START.timetz()).timestamp() * 1000)
        self.driver = Actor(f"driver-{self.route_id}", Role.DRIVER)
        self.run(PublishTrip(self.command_id(), ADMIN, self.trip()))

    def trip(self) -> Trip:
        return Trip(
            route_id=self.route_id, travel_date=self.travel_date, timezone="Africa/Lagos",
            departure_time=time(9, 30), capacity=self.capacity, currency="NGN",
            stops=(Stop("lagos", 0), Stop("ibadan", 90), Stop("ilorin", 240)),
            leg_fares=(350_050, 420_025), driver_id=self.driver.user_id,
        )

    def command_id(self) -> str:
        self._commands += 1
        return f"{self.route_id}-c{self._commands}"

    def run(self, command, after_ms: int = 1000) -> Outcome:
        self.now += after_ms
        outcome = handle(self.state, command, self.now, self.policy)
        self.records.extend(lifecycle_events(self.state, outcome))
        return outcome

    # -- what riders, payments and drivers do -------------------------------------------

    def book(self, rider: str, seats: int = 1, to_stop: str = "ilorin") -> str:
        outcome = self.run(CreateBooking(self.command_id(), Actor(rider, Role.RIDER), "lagos", to_stop, seats))
        assert outcome.accepted, outcome.code
        return outcome.booking_id

    def pay(self, booking_id: str) -> None:
        booking = self.state.bookings[booking_id]
        payment_id = f"pay-{booking_id}"
        self.accept(InitiatePayment(self.command_id(), PAYMENTS, booking_id, payment_id))
        self.accept(PaymentSucceeded(self.command_id(), PAYMENTS, booking_id, payment_id, booking.total))

    def fail_payment(self, booking_id: str) -> None:
        self.accept(PaymentFailed(self.command_id(), PAYMENTS, booking_id, f"failed-{booking_id}"))

    def cancel(self, booking_id: str) -> None:
        rider = Actor(self.state.bookings[booking_id].rider_id, Role.RIDER)
        self.accept(CancelBooking(self.command_id(), rider, booking_id, "plans changed, sorry"))

    def refund(self, booking_id: str) -> None:
        owed = self.state.bookings[booking_id].view().refund_amount
        self.accept(RefundDone(self.command_id(), PAYMENTS, booking_id, owed))

    def check_in(self, booking_id: str) -> None:
        self.accept(CheckIn(self.command_id(), self.driver, booking_id))

    def complete(self, booking_id: str) -> None:
        self.accept(Complete(self.command_id(), self.driver, booking_id))

    def expire_holds(self) -> None:
        self.accept(ExpireHolds(self.command_id(), ADMIN), after_ms=self.policy.payment_hold_minutes * MINUTE_MS + 1)

    def reassign(self, driver_id: str) -> None:
        """The route service gives the trip to another driver."""
        self.driver = Actor(driver_id, Role.DRIVER)
        self.accept(PublishTrip(self.command_id(), ADMIN, self.trip()))

    def late_payment(self, booking_id: str) -> None:
        """A payment after the hold ran out: rejected, with a refund_required event."""
        total = self.state.bookings[booking_id].total
        outcome = self.run(PaymentSucceeded(self.command_id(), PAYMENTS, booking_id, f"late-{booking_id}", total))
        assert not outcome.accepted

    def join(self, rider: str, seats: int = 1, to_stop: str = "ilorin") -> str:
        outcome = self.run(JoinWaitlist(self.command_id(), Actor(rider, Role.RIDER), "lagos", to_stop, seats))
        assert outcome.accepted, outcome.code
        return outcome.entry_id

    def leave(self, entry_id: str) -> None:
        rider = Actor(self.state.entries[entry_id].rider_id, Role.RIDER)
        self.accept(LeaveWaitlist(self.command_id(), rider, entry_id))

    def take_offer(self, entry_id: str) -> str:
        rider = Actor(self.state.entries[entry_id].rider_id, Role.RIDER)
        outcome = self.run(AcceptOffer(self.command_id(), rider, entry_id))
        assert outcome.accepted, outcome.code
        return outcome.booking_id

    def accept(self, command, after_ms: int = 1000) -> None:
        outcome = self.run(command, after_ms)
        assert outcome.accepted, (command, outcome.code)

    # -- what the sink should end with --------------------------------------------------

    def final_snapshots(self) -> dict[str, dict]:
        """Every booking as the processor holds it now."""
        assert self.state.trip is not None
        return {bid: snapshot(self.state.trip, b) for bid, b in self.state.bookings.items()}

    def final_entries(self) -> dict[str, dict]:
        """Every waiting-list entry as the processor holds it now."""
        assert self.state.trip is not None
        return {eid: entry_snapshot(self.state.trip, e) for eid, e in self.state.entries.items()}


def every_kind_of_booking(route_id: str) -> TripLog:
    """A trip whose bookings go through every lifecycle topic."""
    log = TripLog(route_id)
    completed = log.book("rider-a", seats=2)
    log.pay(completed)
    log.check_in(completed)
    log.complete(completed)
    refunded = log.book("rider-a")
    log.pay(refunded)
    log.cancel(refunded)
    log.refund(refunded)
    retried = log.book("rider-b", seats=3, to_stop="ibadan")
    log.fail_payment(retried)
    log.pay(retried)
    unpaid_cancel = log.book("rider-b")
    log.cancel(unpaid_cancel)
    expired = log.book("rider-c")
    log.expire_holds()
    log.late_payment(expired)
    return log


def waiting_list(route_id: str) -> TripLog:
    """A sold-out trip of 3 seats with a waiting list in every state an entry can be in:
    offered seats accepted and paid for, an offer left, an offer expired, two waiting."""
    log = TripLog(route_id, capacity=3)
    full = log.book("rider-a", seats=3)
    log.pay(full)
    accepted = log.join("rider-w1")
    left = log.join("rider-w2", to_stop="ibadan")
    log.join("rider-w3")  # its offer expires below
    waiting = [log.join("rider-w4", seats=2), log.join("rider-w5", seats=3)]
    log.cancel(full)  # three seats: offered to w1, w2 and w3 (w4 no longer fits)
    log.pay(log.take_offer(accepted))
    log.leave(left)  # its seat goes to nobody: w4 needs two
    log.expire_holds()  # w3's offer expires: now two seats free, w4 is offered them
    assert {log.state.entries[e].status.value for e in waiting} == {"OFFERED", "WAITING"}
    return log


def many_bookings(route_id: str, bookings: int) -> TripLog:
    """A busy trip: created, paid (two events each) and some checked in and completed."""
    log = TripLog(route_id, capacity=max(4, bookings))
    for n in range(bookings):
        booking_id = log.book(f"rider-{n % 7}")
        log.pay(booking_id)
        if n % 3 == 0:
            log.check_in(booking_id)
            log.complete(booking_id)
    return log


# -- what the event log says ------------------------------------------------------------


def decoded(records: list[tuple[str, str, bytes]]) -> list[tuple[str, dict]]:
    return [(topic, orjson.loads(value)) for topic, _, value in records]


def expected_bookings(records: list[tuple[str, str, bytes]]) -> dict[str, dict]:
    """Per booking, the snapshot of the highest version any event carried."""
    newest: dict[str, dict] = {}
    for _, event in decoded(records):
        booking = event.get("booking")
        if booking and (booking["id"] not in newest or newest[booking["id"]]["version"] < booking["version"]):
            newest[booking["id"]] = booking
    return newest


def expected_history(records: list[tuple[str, str, bytes]]) -> dict[str, list[dict]]:
    """Per booking, every transition any event carried, by the version it produced."""
    moves: dict[str, dict[int, dict]] = {}
    for _, event in decoded(records):
        if "transitions" not in event:
            continue
        first = event["version"] - len(event["transitions"]) + 1
        for offset, move in enumerate(event["transitions"]):
            moves.setdefault(event["bookingId"], {})[first + offset] = {"version": first + offset, **move}
    return {bid: [by_version[v] for v in sorted(by_version)] for bid, by_version in moves.items()}


def booking_records(records: list[tuple[str, str, bytes]]) -> list[tuple[str, str, bytes]]:
    return [r for r in records if r[0] != CONTRACT.trip_updated]


def expected_entries(records: list[tuple[str, str, bytes]]) -> dict[str, dict]:
    """Per waiting-list entry, the snapshot of the highest version any event carried."""
    newest: dict[str, dict] = {}
    for _, event in decoded(records):
        entry = event.get("entry")
        if entry and (entry["id"] not in newest or newest[entry["id"]]["version"] < entry["version"]):
            newest[entry["id"]] = entry
    return newest
