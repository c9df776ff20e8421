"""The booking core against a small reference model, step by step (docs/design.md §13).

Hypothesis publishes a random trip (1 to 1,000 seats), then sends random commands (and
re-sends old ones with the same command id). A reference model, written from the rules
in docs/design.md §4-§9 and not from the core's code,
predicts every reply code, the seats each new booking gets (the lowest free, or the ones
chosen), prices, refunds, expiries, and which waiting-list entries are offered which
seats. After every step the invariants are checked on the core's own state:

  (1) no oversell, with offers counted as holds, (2) conservation, (3) a duplicate
  command id gets the original outcome and changes nothing, (4) a hold resolves at most
  once and every move (of a booking or an entry) is in its table, (8) 0 <= refund <=
  paid; plus the lowest-free-seat rule, and for the waiting list:
  (W1) an offer never skips an earlier fitting entry, (W2) an entry is offered at most
  once at a time, (W3) a walk-in never gets a seat a fitting waiting entry was due, and
  (W4) after every command no open waiting entry fits in the free seats.
  (W1-W4 are docs/design.md I9-I12.) W1 and W3 follow from the model predicting every offer, in order, and every seat a
  walk-in gets; W2 and W4 are checked on the state.
"""

import copy
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta

import hypothesis.strategies as st
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from app.domain import booking as booking_rules
from app.domain.booking import Status
from app.domain.commands import (
    AcceptOffer,
    Actor,
    CancelBooking,
    CancelTrip,
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
    QuerySeatMap,
    RefundDone,
    Role,
)
from app.domain.events import BookingCreated, BookingMoved, EntryJoined, EntryMoved, RefundRequired
from app.domain.handle import handle
from app.domain.ids import booking_id_for, entry_id_for
from app.domain.rejections import Code
from app.domain.state import TripState, availability, seat_map
from app.domain.trip import Stop, Trip
from app.domain.waitlist import ENTRY_ALLOWED, EntryStatus
from bench.invariants import before_command, waitlist_problems
from tests.support.core import ADMIN, DAY, DRIVER, HOUR, MINUTE, OTHER_DRIVER, PAYMENTS, POLICY, ROUTES, local_ms

RIDERS = [Actor(f"rider-{i}", Role.RIDER) for i in range(3)]
HOLDING = {Status.HELD, Status.PAYMENT_INITIATED}
SOLD = {Status.PAID, Status.CONFIRMED, Status.CHECKED_IN, Status.COMPLETED}
LIVE = HOLDING | SOLD
CANCELLABLE = {Status.PENDING, Status.HELD, Status.PAYMENT_INITIATED, Status.CONFIRMED, Status.CHECKED_IN}
GOOD_REASONS = ["My plans changed today", "   padded but long enough   ", "y" * 500]
BAD_REASONS = ["too short", "     short      ", "", "x" * 501]

W = EntryStatus
LISTED = {W.WAITING, W.OFFERED}

# Days around the UK clock changes of 2030, and two ordinary ones.
TRAVEL_DATES = [date(2030, 3, 31), date(2030, 10, 27), date(2030, 6, 15), date(2030, 1, 10)]
ZONES = ["UTC", "Europe/London", "Africa/Lagos", "America/New_York", "Australia/Sydney"]


def utc_date(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


@dataclass
class Model:
    """What the reference model knows of one booking."""

    booking_id: str
    rider: str
    first: int  # first leg
    last: int  # last leg
    seats: tuple[int, ...]
    total: int
    status: Status
    version: int
    expires_at: int | None
    paid: int = 0
    refund: int = 0
    paid_with: str | None = None  # the payment id that confirmed it
    confirmed_version: int | None = None


@dataclass
class EntryModel:
    """What the reference model knows of one waiting-list entry."""

    entry_id: str
    rider: str
    first: int
    last: int
    seats: int  # the party size
    join_order: int
    position: int
    status: EntryStatus = EntryStatus.WAITING
    version: int = 1
    offered: tuple[int, ...] = ()
    expires_at: int | None = None
    booking_id: str | None = None


@dataclass
class Expect:
    """What a command's events must hold besides its own moves: the holds and offers that
    expire first, and every offer made, in the order made."""

    expired_holds: set[str]
    expired_offers: set[str]
    offers: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)


def pick_from(items: dict, data, likely, label: str):
    fitting = sorted(k for k, item in items.items() if likely(item))
    pool = fitting if fitting and data.draw(st.integers(0, 3), label="fitting") else sorted(items)
    return items[data.draw(st.sampled_from(pool), label=label)]


def half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


class BookingMachine(RuleBasedStateMachine):
    # A short list, so that a full one is met too.
    policy = replace(POLICY, waitlist_entries_max=4)

    # -- set-up ---------------------------------------------------------------------

    @initialize(data=st.data())
    def publish_trip(self, data):
        stops = data.draw(st.integers(2, 10), label="stops")
        gaps = data.draw(st.lists(st.integers(1, 240), min_size=stops - 1, max_size=stops - 1), label="gaps")
        offsets = [0]
        for gap in gaps:
            offsets.append(offsets[-1] + gap)
        self.trip = Trip(
            route_id=data.draw(st.sampled_from(["R1", "LOS-IBD", "route.with.dots"]), label="route"),
            travel_date=data.draw(st.sampled_from(TRAVEL_DATES), label="date"),
            timezone=data.draw(st.sampled_from(ZONES), label="zone"),
            departure_time=time(data.draw(st.integers(0, 23), label="hour"), data.draw(st.sampled_from([0, 30]))),
            # Mostly small, so that trips sell out and waiting lists form; some past 64 bits.
            capacity=data.draw(st.one_of(st.integers(1, 4), st.integers(1, 8), st.integers(1, 50),
                                         st.sampled_from([63, 64, 65, 1000])), label="capacity"),
            currency="NGN",
            stops=tuple(Stop(f"S{i}", offsets[i]) for i in range(stops)),
            leg_fares=tuple(data.draw(st.lists(st.integers(1, 100_000), min_size=stops - 1, max_size=stops - 1),
                                      label="fares")),
            driver_id=DRIVER.user_id,
        )
        self.departure0 = local_ms(self.trip.travel_date, self.trip.departure_time, self.trip.timezone)
        self.now = self.departure0 - data.draw(st.integers(0, 3 * DAY), label="lead")
        self.start_core()
        self.count = 0
        self.history: list[tuple[object, object, int]] = []  # (command, outcome, time) of every new command
        self.model: dict[str, Model] = {}
        self.entries: dict[str, EntryModel] = {}
        self.trip_cancelled = False
        self.trip_version = 0
        outcome = self.send(PublishTrip(self.new_id(), ROUTES, self.trip), self.before())
        assert outcome.accepted and outcome.trip_version == 1
        self.trip_version = 1
        for _ in range(data.draw(st.integers(0, 6), label="first bookings")):
            self.book(data, data.draw(st.sampled_from(RIDERS)), data.draw(st.integers(1, 4)))

    # -- plumbing -------------------------------------------------------------------

    def start_core(self) -> None:
        self.state = TripState()

    def run(self, command):
        """The core's outcome; afterwards `self.state` is the trip's whole state."""
        return handle(self.state, command, self.now, self.policy)

    def new_id(self) -> str:
        self.count += 1
        return f"cmd-{self.count}"

    def departure(self, stop: int) -> int:
        return self.departure0 + self.trip.stops[stop].offset_minutes * MINUTE

    def closes(self, stop: int) -> int:
        return self.departure(stop) - 15 * MINUTE

    def before(self) -> Expect:
        """The model's side of what happens before any new command is decided: holds and
        offers due by now end, and the seats they free are offered to the waiting list."""
        expired_holds, expired_offers = set(), set()
        for b in self.model.values():
            if b.status in HOLDING and b.expires_at <= self.now:
                b.status, b.version = Status.EXPIRED, b.version + 1
                expired_holds.add(b.booking_id)
        for e in self.entries.values():
            if e.status is W.OFFERED and e.expires_at <= self.now:
                e.status, e.version = W.OFFER_EXPIRED, e.version + 1
                expired_offers.add(e.entry_id)
        return Expect(expired_holds, expired_offers, self.offer_free_seats())

    def offer_free_seats(self) -> list[tuple[str, tuple[int, ...]]]:
        """Free seats go to the waiting entries, oldest first: to each whose whole party
        fits on every leg of its journey before its pickup's booking closes, the lowest
        such seats, for 15 minutes (at most until that close)."""
        if self.trip_cancelled:
            return []
        made = []
        for e in sorted((e for e in self.entries.values() if e.status is W.WAITING), key=lambda e: e.join_order):
            if self.now >= self.closes(e.first):
                continue
            seats = self.lowest_free(e.first, e.last, e.seats)
            if seats is not None:
                e.status, e.version, e.offered = W.OFFERED, e.version + 1, seats
                e.expires_at = min(self.now + 15 * MINUTE, self.closes(e.first))
                made.append((e.entry_id, seats))
        return made

    def send(self, command, expect: Expect):
        """The command to the core; the model has applied its own decision already, and
        offers the seats that decision freed (W1, W3: every offer, in order). The chaos
        checker's own audit of the waiting list's order (bench.invariants) must find
        nothing wrong with what the core did either."""
        before = before_command(self.state)
        outcome = self.run(command)
        if before is not None:
            problems = waitlist_problems(before, outcome.events, self.now, self.policy)
            assert not +problems, problems
        expect.offers += self.offer_free_seats()
        expired = {e.booking_id for e in outcome.events
                   if isinstance(e, BookingMoved) and e.moves[-1].target is Status.EXPIRED}
        assert expired == expect.expired_holds, "the holds due, and only those, expire first"
        ended = {e.entry_id for e in outcome.events if isinstance(e, EntryMoved) and e.moves[-1].target is W.OFFER_EXPIRED}
        assert ended == expect.expired_offers, "the offers due, and only those, expire first"
        offers = [(e.entry_id, tuple(e.moves[-1].data["seats"])) for e in outcome.events
                  if isinstance(e, EntryMoved) and e.moves[-1].target is W.OFFERED]
        assert offers == expect.offers, "free seats are offered to the fitting entries, in join order, before walk-ins"
        self.history.append((command, outcome, self.now))
        event(f"{type(command).__name__}: {outcome.code or 'accepted'}")  # see --hypothesis-show-statistics
        if offers:
            event("offers made")
        return outcome

    def pick(self, data, likely=lambda b: True) -> Model:
        """Any booking; but mostly one for which `likely` holds (a booking the command can
        apply to), so that long lifecycles are reached as well as the refusals."""
        return pick_from(self.model, data, likely, "booking")

    def expect(self, outcome, code: Code | None, b: Model | None = None) -> None:
        assert outcome.code == code, f"expected {code}, core said {outcome.code}"
        if code is None and b is not None:
            assert outcome.booking_id == b.booking_id and outcome.version == b.version

    def pick_entry(self, data, likely=lambda e: True) -> EntryModel:
        return pick_from(self.entries, data, likely, "entry")

    def taken(self) -> list[tuple[int, int, tuple[int, ...]]]:
        """(first leg, last leg, seats) of what holds seats: live bookings and offers."""
        return [(b.first, b.last, b.seats) for b in self.model.values() if b.status in LIVE] + \
            [(e.first, e.last, e.offered) for e in self.entries.values() if e.status is W.OFFERED]

    def free_seats(self, first: int, last: int) -> list[int]:
        taken = {seat for f, la, seats in self.taken() if f <= last and first <= la for seat in seats}
        return [seat for seat in range(1, self.trip.capacity + 1) if seat not in taken]

    def lowest_free(self, first: int, last: int, count: int) -> tuple[int, ...] | None:
        free = self.free_seats(first, last)
        return tuple(free[:count]) if len(free) >= count else None

    def price(self, first: int, last: int, seats: int) -> int:
        """Demand counts the seats paid for, not those held."""
        sold = [b for b in self.model.values() if b.status in SOLD]
        fullest = max(sum(len(b.seats) for b in sold if b.first <= leg <= b.last) for leg in range(first, last + 1))
        cap = self.trip.capacity
        percent = 125 if 10 * fullest >= 8 * cap else 110 if 2 * fullest >= cap else 100
        per_seat = half_up(sum(self.trip.leg_fares[first:last + 1]) * percent, 100)
        fare = per_seat * seats
        return fare + half_up(fare * 5, 100)

    def held_by(self, rider: str) -> int:
        """Seats the rider holds unpaid, and those their live entries ask for."""
        return sum(len(b.seats) for b in self.model.values() if b.rider == rider and b.status in HOLDING) + \
            sum(e.seats for e in self.entries.values() if e.rider == rider and e.status in LISTED)

    def rider_refund(self, b: Model) -> int:
        hours = (self.departure(b.first) - self.now) // HOUR
        return b.paid if hours >= 24 else half_up(b.paid, 2) if hours >= 6 else 0

    # -- commands -------------------------------------------------------------------

    @rule(data=st.data(), rider=st.sampled_from(RIDERS), seats=st.integers(1, 5))
    def book(self, data, rider, seats):
        origin = data.draw(st.integers(0, len(self.trip.stops) - 2), label="origin")
        destination = data.draw(st.integers(origin + 1, len(self.trip.stops) - 1), label="destination")
        self.create(rider, origin, destination, seats)

    @rule(rider=st.sampled_from(RIDERS), origin=st.integers(0, 10), destination=st.integers(0, 10))
    def book_with_any_stops(self, rider, origin, destination):
        self.create(rider, origin, destination, 1)

    @rule(data=st.data(), rider=st.sampled_from(RIDERS), seats=st.integers(1, 4))
    def book_chosen_seats(self, data, rider, seats):
        """Seat choice: mostly seats free on the journey, sometimes taken, repeated or out
        of range ones."""
        origin = data.draw(st.integers(0, len(self.trip.stops) - 2), label="origin")
        destination = data.draw(st.integers(origin + 1, len(self.trip.stops) - 1), label="destination")
        capacity = self.trip.capacity
        free = self.free_seats(origin, destination - 1)
        candidates = st.sampled_from(free) if free and data.draw(st.integers(0, 3), label="free ones") else \
            st.integers(1, capacity + 1) | st.sampled_from([0, capacity, capacity + 1])
        chosen = data.draw(st.lists(candidates, min_size=seats, max_size=seats), label="seats")
        self.create(rider, origin, destination, seats, tuple(chosen))

    def create(self, rider, origin, destination, seats, chosen: tuple[int, ...] | None = None):
        stops = len(self.trip.stops)
        command = CreateBooking(self.new_id(), rider, f"S{origin}", f"S{destination}", seats, seat_numbers=chosen)
        expect = self.before()
        first, last = origin, destination - 1
        granted = None
        if self.trip_cancelled:
            code = Code.TRIP_CANCELLED
        elif seats > self.policy.max_seats_per_booking:
            code = Code.TOO_MANY_SEATS
        elif self.held_by(rider.user_id) + seats > self.policy.hold_limit_seats_per_trip:
            code = Code.HOLD_LIMIT_REACHED
        elif not (origin < destination < stops):
            code = Code.INVALID_STOPS
        elif self.now > self.closes(origin):
            code = Code.BOOKING_CLOSED
        elif chosen is not None and (len(set(chosen)) != seats or not all(1 <= s <= self.trip.capacity for s in chosen)):
            code = Code.INVALID_SEATS
        elif chosen is not None and not set(chosen) <= set(self.free_seats(first, last)):
            code = Code.SEAT_UNAVAILABLE
        elif (granted := tuple(sorted(chosen)) if chosen else self.lowest_free(first, last, seats)) is None:
            code = Code.SEATS_UNAVAILABLE
        else:
            code = None
            total = self.price(first, last, seats)
        outcome = self.send(command, expect)
        self.expect(outcome, code)
        if code is None:
            booking = self.state.bookings[outcome.booking_id]
            assert outcome.booking_id == booking_id_for(self.trip.route_id, self.trip.travel_date,
                                                        command.command_id)
            assert booking.seats == granted, "a booking gets the seats chosen, or the lowest free on all its legs"
            assert booking.total == total
            assert isinstance(outcome.events[-1], BookingCreated)
            self.model[booking.booking_id] = Model(booking.booking_id, rider.user_id, first, last, granted, total,
                                                   Status.HELD, 1, self.now + 10 * MINUTE)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), by_owner=st.booleans(), payment_id=st.sampled_from([None, "init-pay"]))
    def initiate_payment(self, data, by_owner, payment_id):
        b = self.pick(data, lambda b: b.status is Status.HELD)
        actor = next(r for r in RIDERS if (r.user_id == b.rider) == by_owner)
        command = InitiatePayment(self.new_id(), actor, b.booking_id, payment_id)
        expect = self.before()
        if not by_owner:
            code = Code.NOT_OWNER
        elif b.status is Status.HELD:
            code = None
            b.status, b.version, b.expires_at = Status.PAYMENT_INITIATED, b.version + 1, self.now + 15 * MINUTE
        else:
            code = Code.HOLD_EXPIRED if b.status is Status.EXPIRED else Code.INVALID_TRANSITION
        self.expect(self.send(command, expect), code, b)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), right_amount=st.sampled_from([True, True, False]), same_payment=st.booleans())
    def payment_succeeded(self, data, right_amount, same_payment):
        b = self.pick(data, lambda b: (b.paid_with is not None) if same_payment else b.status in HOLDING)
        amount = b.total if right_amount else b.total + data.draw(st.sampled_from([-1, 1, b.total]))
        if same_payment and b.paid_with:
            # Confirming again with the payment that confirmed it: the same result, no change.
            command = PaymentSucceeded(self.new_id(), PAYMENTS, b.booking_id, b.paid_with, amount)
            outcome = self.send(command, Expect(set(), set()))
            assert outcome.code is None and outcome.events == ()
            assert (outcome.booking_id, outcome.version) == (b.booking_id, b.confirmed_version)
            return
        command = PaymentSucceeded(self.new_id(), PAYMENTS, b.booking_id, f"pay-{self.count}", amount)
        expect = self.before()
        if b.status is Status.EXPIRED:
            code = Code.HOLD_EXPIRED
        elif b.status not in HOLDING:
            code = Code.INVALID_TRANSITION
        elif amount != b.total:
            code = Code.AMOUNT_MISMATCH
        else:
            code = None
            b.status, b.version, b.expires_at = Status.CONFIRMED, b.version + 2, None
            b.paid, b.paid_with, b.confirmed_version = amount, command.payment_id, b.version
        outcome = self.send(command, expect)
        self.expect(outcome, code, b)
        if code is not None:
            refund = outcome.events[-1]
            assert isinstance(refund, RefundRequired), "a refused payment must be returned"
            assert (refund.booking_id, refund.payment_id, refund.amount) == (b.booking_id, command.payment_id, amount)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def payment_failed(self, data):
        b = self.pick(data, lambda b: b.status in HOLDING)
        command = PaymentFailed(self.new_id(), PAYMENTS, b.booking_id, f"pay-{self.count}")
        expect = self.before()
        code = None if b.status in HOLDING else Code.INVALID_TRANSITION
        if code is None:
            b.version += 1  # recorded as a fact; the seats stay held
        self.expect(self.send(command, expect), code, b)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), by_owner=st.booleans(), good_reason=st.booleans())
    def rider_cancel(self, data, by_owner, good_reason):
        b = self.pick(data, lambda b: b.status in CANCELLABLE)
        actor = next(r for r in RIDERS if (r.user_id == b.rider) == by_owner)
        reason = data.draw(st.sampled_from(GOOD_REASONS if good_reason else BAD_REASONS), label="reason")
        command = CancelBooking(self.new_id(), actor, b.booking_id, reason)
        expect = self.before()
        if not by_owner:
            code = Code.NOT_OWNER
        elif not good_reason:
            code = Code.INVALID_REASON
        elif b.status not in CANCELLABLE:
            code = Code.INVALID_TRANSITION
        else:
            code = None
            b.status, b.version, b.refund, b.expires_at = Status.CANCELLED, b.version + 1, self.rider_refund(b), None
        self.expect(self.send(command, expect), code, b)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), good_reason=st.booleans())
    def admin_force_cancel(self, data, good_reason):
        b = self.pick(data, lambda b: b.status in CANCELLABLE)
        reason = data.draw(st.sampled_from(GOOD_REASONS if good_reason else BAD_REASONS), label="reason")
        command = CancelBooking(self.new_id(), ADMIN, b.booking_id, reason)
        expect = self.before()
        if not good_reason:
            code = Code.INVALID_REASON
        elif b.status not in CANCELLABLE:
            code = Code.INVALID_TRANSITION
        else:
            code = None
            b.status, b.version, b.refund, b.expires_at = Status.CANCELLED, b.version + 1, b.paid, None
        self.expect(self.send(command, expect), code, b)

    @precondition(lambda self: self.model)
    @precondition(lambda self: self.model)
    @rule(data=st.data(), complete=st.booleans(), by_trip_driver=st.booleans())
    def check_in_or_complete_any(self, data, complete, by_trip_driver):
        self.driver_move(self.pick(data), complete, by_trip_driver)

    @precondition(lambda self: any(b.status is Status.CONFIRMED for b in self.model.values()))
    @rule(data=st.data())
    def driver_checks_in_a_rider(self, data):
        self.driver_move(self.pick(data, lambda b: b.status is Status.CONFIRMED), complete=False, by_trip_driver=True)

    @precondition(lambda self: any(b.status is Status.CHECKED_IN for b in self.model.values()))
    @rule(data=st.data())
    def driver_completes_a_ride(self, data):
        self.driver_move(self.pick(data, lambda b: b.status is Status.CHECKED_IN), complete=True, by_trip_driver=True)

    def driver_move(self, b: Model, complete: bool, by_trip_driver: bool):
        kind, source, target = (Complete, Status.CHECKED_IN, Status.COMPLETED) if complete else \
            (CheckIn, Status.CONFIRMED, Status.CHECKED_IN)
        command = kind(self.new_id(), DRIVER if by_trip_driver else OTHER_DRIVER, b.booking_id)
        expect = self.before()
        if not by_trip_driver:
            code = Code.BOOKING_NOT_FOUND  # as for an unknown id: another driver learns nothing
        elif b.status is not source:
            code = Code.INVALID_TRANSITION
        else:
            code = None
            b.status, b.version = target, b.version + 1
        self.expect(self.send(command, expect), code, b)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), which=st.sampled_from(["owed", "half", "zero", "over"]))
    def refund_done(self, data, which):
        b = self.pick(data, lambda b: b.status is Status.CONFIRMED or (b.status is Status.CANCELLED and b.refund))
        owed = b.refund if b.status is Status.CANCELLED else b.paid
        amount = {"owed": owed, "half": owed // 2, "zero": 0, "over": owed + 1}[which]
        command = RefundDone(self.new_id(), PAYMENTS, b.booking_id, amount)
        expect = self.before()
        if not (b.status in (Status.PAID, Status.CONFIRMED) or (b.status is Status.CANCELLED and b.refund)):
            code = Code.INVALID_TRANSITION
        elif not 0 < amount <= owed or (b.status is Status.CANCELLED and amount != owed):
            code = Code.AMOUNT_MISMATCH
        else:
            code = None
            b.status, b.version, b.refund = Status.REFUNDED, b.version + 1, amount
        self.expect(self.send(command, expect), code, b)

    @precondition(lambda self: len(self.model) >= 2)  # late enough for the rest to matter
    @rule(by_trip_driver=st.booleans())
    def cancel_trip(self, by_trip_driver):
        command = CancelTrip(self.new_id(), DRIVER if by_trip_driver else OTHER_DRIVER, "Vehicle broke down")
        expect = self.before()
        if not by_trip_driver:
            code = Code.FORBIDDEN
        elif self.trip_cancelled:
            code = Code.TRIP_CANCELLED
        else:
            code = None
            self.trip_cancelled = True
            for b in self.model.values():
                if b.status in CANCELLABLE:  # the driver cancelled: everything paid goes back
                    b.status, b.version, b.refund, b.expires_at = Status.CANCELLED, b.version + 1, b.paid, None
            for e in self.entries.values():
                if e.status in LISTED:  # and the waiting list ends
                    e.status, e.version = W.CANCELLED, e.version + 1
        outcome = self.send(command, expect)
        self.expect(outcome, code)
        if code is None:
            self.trip_version += 1

    @rule(by=st.sampled_from([DRIVER, OTHER_DRIVER, ROUTES]),
          change=st.sampled_from(["none", "fares", "currency", "timezone", "departure", "more seats", "fewer seats",
                                  "too many seats"]))
    def republish_trip(self, by, change):
        """Who may update a trip, what stays fixed once it has bookings or a waiting list,
        how far capacity may shrink, and reopening. More seats go to the waiting list first."""
        capacity = self.trip.capacity
        changed = {
            "none": {},
            "fares": {"leg_fares": tuple(fare + 100 for fare in self.trip.leg_fares)},
            "currency": {"currency": "USD" if self.trip.currency == "NGN" else "NGN"},
            "timezone": {"timezone": "UTC" if self.trip.timezone != "UTC" else "Africa/Lagos"},
            "departure": {"departure_time": time((self.trip.departure_time.hour + 1) % 24, 0)},
            "more seats": {"capacity": min(capacity + 2, self.policy.trip_capacity_max)},
            "fewer seats": {"capacity": max(capacity - 1, 1)},
            "too many seats": {"capacity": self.policy.trip_capacity_max + 1},
        }[change]
        update = replace(self.trip, **changed)
        command = PublishTrip(self.new_id(), by, update)
        expect = self.before()
        in_use = max((seat for _, _, seats in self.taken() for seat in seats), default=0)
        if by is OTHER_DRIVER:
            code = Code.FORBIDDEN
        elif self.trip_cancelled and by is DRIVER:
            code = Code.TRIP_CANCELLED
        elif self.trip.travel_date < utc_date(self.now) - timedelta(days=self.policy.trip_days_behind_max):
            code = Code.TRAVEL_DATE_OUT_OF_RANGE  # the clock has run past the trip
        elif update.capacity > self.policy.trip_capacity_max:
            code = Code.CAPACITY_OUT_OF_RANGE
        elif (self.model or self.entries) and (change in ("currency", "timezone", "departure")
                                               or update.capacity < in_use):
            code = Code.TRIP_UPDATE_CONFLICT
        else:
            code = None
            self.trip_version += 1
            self.trip, self.trip_cancelled = update, False
            self.departure0 = local_ms(self.trip.travel_date, self.trip.departure_time, self.trip.timezone)
        outcome = self.send(command, expect)
        self.expect(outcome, code)
        if code is None:
            assert outcome.trip_version == self.trip_version

    @rule(which=st.sampled_from(["pay", "cancel", "check-in"]))
    def command_on_unknown_booking(self, which):
        unknown = booking_id_for(self.trip.route_id, self.trip.travel_date, "never-sent")
        command = {
            "pay": PaymentSucceeded(self.new_id(), PAYMENTS, unknown, "pay-x", 100),
            "cancel": CancelBooking(self.new_id(), RIDERS[0], unknown, GOOD_REASONS[0]),
            "check-in": CheckIn(self.new_id(), DRIVER, unknown),
        }[which]
        outcome = self.send(command, self.before())
        self.expect(outcome, Code.BOOKING_NOT_FOUND)
        assert any(isinstance(e, RefundRequired) for e in outcome.events) == (which == "pay")

    # -- the waiting list -------------------------------------------------------------

    @rule(data=st.data(), rider=st.sampled_from(RIDERS), seats=st.integers(1, 5))
    def join_waitlist(self, data, rider, seats):
        origin = data.draw(st.integers(0, len(self.trip.stops) - 2), label="origin")
        destination = data.draw(st.integers(origin + 1, len(self.trip.stops) - 1), label="destination")
        self.join(rider, origin, destination, seats)

    @rule(data=st.data(), rider=st.sampled_from(RIDERS), seats=st.integers(1, 3))
    def join_where_sold_out(self, data, rider, seats):
        count = len(self.trip.stops)
        full = [(o, d) for o in range(count - 1) for d in range(o + 1, count) if self.lowest_free(o, d - 1, seats) is None]
        if full:
            self.join(rider, *data.draw(st.sampled_from(full), label="sold-out journey"), seats)

    @rule(data=st.data(), who=st.sampled_from([DRIVER, ADMIN, PAYMENTS]))
    def join_waitlist_not_as_a_rider(self, data, who):
        self.join(who, 0, 1, 1)

    def join(self, actor, origin, destination, seats):
        command = JoinWaitlist(self.new_id(), actor, f"S{origin}", f"S{destination}", seats)
        expect = self.before()
        first, last = origin, destination - 1
        listed = [e for e in self.entries.values() if e.status in LISTED]
        if self.trip_cancelled:
            code = Code.TRIP_CANCELLED
        elif actor.role is not Role.RIDER:
            code = Code.FORBIDDEN
        elif seats > min(self.policy.max_seats_per_booking, self.trip.capacity):
            code = Code.TOO_MANY_SEATS
        elif self.now > self.closes(origin):
            code = Code.BOOKING_CLOSED
        elif self.lowest_free(first, last, seats) is not None:
            code = Code.SEATS_AVAILABLE
        elif self.held_by(actor.user_id) + seats > self.policy.hold_limit_seats_per_trip:
            code = Code.HOLD_LIMIT_REACHED
        elif len(listed) >= self.policy.waitlist_entries_max:
            code = Code.WAITLIST_FULL
        else:
            code = None
            entry_id = entry_id_for(self.trip.route_id, self.trip.travel_date, command.command_id)
            self.entries[entry_id] = EntryModel(entry_id, actor.user_id, first, last, seats, len(self.entries) + 1,
                                                sum(e.status is W.WAITING for e in listed) + 1)
        outcome = self.send(command, expect)
        assert outcome.code == code, f"expected {code}, core said {outcome.code}"
        if code is None:
            assert (outcome.entry_id, outcome.entry_version) == (entry_id, 1)
            assert isinstance(outcome.events[-1], EntryJoined)

    @precondition(lambda self: self.entries)
    @rule(data=st.data(), by_owner=st.booleans())
    def leave_waitlist(self, data, by_owner):
        e = self.pick_entry(data, lambda e: e.status in LISTED)
        actor = next(r for r in RIDERS if (r.user_id == e.rider) == by_owner)
        command = LeaveWaitlist(self.new_id(), actor, e.entry_id)
        expect = self.before()
        if not by_owner:
            code = Code.ENTRY_NOT_FOUND
        elif e.status not in LISTED:
            code = Code.INVALID_TRANSITION
        else:
            code = None
            e.status, e.version = W.LEFT, e.version + 1  # an offer's seats go to the next fitting entry
        self.expect_entry(self.send(command, expect), code, e)

    @precondition(lambda self: self.entries)
    @rule(data=st.data(), by_owner=st.sampled_from([True, True, True, False]))
    def accept_offer(self, data, by_owner):
        self.accept(self.pick_entry(data, lambda e: e.status is W.OFFERED), by_owner)

    @precondition(lambda self: any(e.status is W.OFFERED for e in self.entries.values()))
    @rule(data=st.data())
    def rider_accepts_an_offer(self, data):
        self.accept(self.pick_entry(data, lambda e: e.status is W.OFFERED), by_owner=True)

    def accept(self, e: EntryModel, by_owner: bool):
        actor = next(r for r in RIDERS if (r.user_id == e.rider) == by_owner)
        command = AcceptOffer(self.new_id(), actor, e.entry_id)
        expect = self.before()
        if not by_owner:
            code = Code.ENTRY_NOT_FOUND
        elif e.status is not W.OFFERED:
            code = {W.CANCELLED: Code.TRIP_CANCELLED, W.OFFER_EXPIRED: Code.OFFER_EXPIRED}.get(
                e.status, Code.INVALID_TRANSITION)
        else:
            code = None
            booking_id = booking_id_for(self.trip.route_id, self.trip.travel_date, command.command_id)
            total = self.price(e.first, e.last, e.seats)
            e.status, e.version, e.booking_id = W.ACCEPTED, e.version + 1, booking_id
            self.model[booking_id] = Model(booking_id, e.rider, e.first, e.last, e.offered, total, Status.HELD, 1,
                                           self.now + 10 * MINUTE)
        outcome = self.send(command, expect)
        self.expect_entry(outcome, code, e)
        if code is None:
            assert (outcome.booking_id, outcome.version) == (booking_id, 1)
            booking = self.state.bookings[booking_id]
            assert booking.seats == e.offered and booking.total == total, "the offered seats, priced as a booking"
            own = [type(ev).__name__ for ev in outcome.events if isinstance(ev, (BookingCreated, EntryMoved))
                   and (ev.booking.transitions[0] if isinstance(ev, BookingCreated) else ev.moves[0]).command_id
                   == command.command_id]
            assert own == ["BookingCreated", "EntryMoved"], "the seats pass to the booking, never free between"

    @rule(data=st.data(), stops=st.sampled_from(["journey", "any"]))
    def query_seat_map(self, data, stops):
        count = len(self.trip.stops)
        if stops == "journey":
            origin = data.draw(st.integers(0, count - 2), label="origin")
            destination = data.draw(st.integers(origin + 1, count - 1), label="destination")
        else:
            origin, destination = data.draw(st.integers(0, 10)), data.draw(st.integers(0, 10))
        command = QuerySeatMap(self.new_id(), RIDERS[0], f"S{origin}", f"S{destination}")
        outcome = self.send(command, self.before())
        if not origin < destination < count:
            self.expect(outcome, Code.INVALID_STOPS)
            return
        self.expect(outcome, None)
        free = set(self.free_seats(origin, destination - 1))
        assert seat_map(self.state, origin, destination - 1) == \
            [seat in free for seat in range(1, self.trip.capacity + 1)]

    @rule(which=st.sampled_from(["leave", "accept"]))
    def command_on_unknown_entry(self, which):
        unknown = entry_id_for(self.trip.route_id, self.trip.travel_date, "never-sent")
        kind = LeaveWaitlist if which == "leave" else AcceptOffer
        outcome = self.send(kind(self.new_id(), RIDERS[0], unknown), self.before())
        self.expect(outcome, Code.ENTRY_NOT_FOUND)
        assert outcome.entry_id == unknown

    def expect_entry(self, outcome, code: Code | None, e: EntryModel) -> None:
        assert outcome.code == code, f"expected {code}, core said {outcome.code}"
        assert outcome.entry_id == e.entry_id
        if code is None:
            assert outcome.entry_version == e.version

    @rule()
    def tick(self):
        outcome = self.send(ExpireHolds(self.new_id(), Actor("ticker", Role.SERVICE)), self.before())
        self.expect(outcome, None)

    @rule(step=st.one_of(st.integers(0, 5 * MINUTE), st.integers(0, 20 * MINUTE), st.integers(0, 30 * HOUR)))
    def time_passes(self, step):
        self.now += step

    @rule(data=st.data(), nudge=st.sampled_from([-1, 0, 1]))
    def time_reaches_a_deadline(self, data, nudge):
        """Jump to (a millisecond around) a moment where a rule flips: a hold's or an
        offer's expiry, a stop's booking close, or 24 h / 6 h before a departure (the
        refund bands)."""
        deadlines = {self.departure(stop) - 15 * MINUTE for stop in range(len(self.trip.stops))}
        for b in self.model.values():
            deadlines |= {b.expires_at} if b.status in HOLDING else set()
            deadlines |= {self.departure(b.first) - 24 * HOUR, self.departure(b.first) - 6 * HOUR}
        deadlines |= {e.expires_at for e in self.entries.values() if e.status is W.OFFERED}
        ahead = sorted(d + nudge for d in deadlines if d + nudge >= self.now)
        if ahead:
            self.now = data.draw(st.sampled_from(ahead[:6]), label="deadline")

    @precondition(lambda self: self.history)
    @rule(data=st.data())
    def duplicate(self, data):
        """(3) Re-sending a command id gets the original outcome and changes nothing (within
        the retention window of remembered outcomes: tests/domain/test_trip_state.py)."""
        # A tick or a query that changed nothing leaves nothing to be recognised by.
        recent = self.now - self.policy.outcome_retention_ms
        candidates = [(c, o) for c, o, at in self.history
                      if at > recent and not (o.accepted and not o.events and o.booking_id is None
                                              and o.entry_id is None and o.trip_version is None)]
        if not candidates:
            return
        command, original = data.draw(st.sampled_from(candidates), label="duplicate of")
        before = copy.deepcopy(self.state)
        outcome = self.run(command)
        assert outcome.duplicate
        assert replace(outcome, duplicate=False) == replace(original, duplicate=False)
        assert self.state == before

    # -- invariants -----------------------------------------------------------------

    @invariant()
    def core_agrees_with_model(self):
        assert set(self.state.bookings) == set(self.model)
        for booking_id, b in self.model.items():
            core = self.state.bookings[booking_id]
            view = core.view()
            assert (core.status, core.version, core.seats) == (b.status, b.version, b.seats)
            assert (view.amount_paid, view.refund_amount, view.expires_at) == (b.paid, b.refund, b.expires_at)
        assert set(self.state.entries) == set(self.entries)
        for entry_id, e in self.entries.items():
            core = self.state.entries[entry_id]
            view = core.view()
            assert (core.status, core.version, core.join_order, core.position) == \
                (e.status, e.version, e.join_order, e.position)
            assert (view.seats, view.offer_expires_at, view.booking_id) == (e.offered, e.expires_at, e.booking_id)

    def seats_on_legs(self) -> list[list[int]]:
        """Per leg, the seat numbers held or sold there: live bookings' and live offers'."""
        live = [(b.first_leg, b.last_leg, b.seats) for b in self.state.bookings.values()
                if booking_rules.occupies_seats(b.status)]
        live += [(e.first_leg, e.last_leg, e.view().seats) for e in self.state.entries.values()
                 if e.status is W.OFFERED]
        return [[s for first, last, seats in live if first <= leg <= last for s in seats]
                for leg in range(len(self.trip.stops) - 1)]

    @invariant()
    def no_oversell(self):
        """(1) held + sold <= capacity on every leg, an offer's seats counted as held; no
        seat twice on one leg."""
        capacity = self.trip.capacity
        for leg in availability(self.state):
            assert leg.held + leg.sold <= capacity
        for leg, seats in enumerate(self.seats_on_legs()):
            assert len(seats) == len(set(seats)), f"seat given twice on leg {leg}"
            assert all(1 <= s <= capacity for s in seats)

    @invariant()
    def conservation(self):
        """(2) free + held + sold = capacity, and each leg's bitmask is exactly the seats
        of the live bookings and offers on it."""
        for leg in availability(self.state):
            assert leg.free + leg.held + leg.sold == self.trip.capacity
        for mask, seats in zip(self.state.legs, self.seats_on_legs(), strict=True):
            assert mask == sum(1 << (s - 1) for s in set(seats))

    @invariant()
    def holds_resolve_once_along_the_table(self):
        """(4) every move is in the table (or a fact with source == target), the chain is
        unbroken, and a hold ends at most once. (W2) An entry is offered at most once at a
        time: no move from OFFERED to OFFERED, and none back to WAITING."""
        for b in self.state.bookings.values():
            moves = b.transitions
            assert (moves[0].source, moves[0].target) == (Status.PENDING, Status.HELD)
            for before, move in zip(moves, moves[1:]):
                assert move.source is before.target
                assert booking_rules.can_move(move.source, move.target) or (
                    move.source is move.target and move.reason == "payment_failed")
            assert sum(m.target is Status.EXPIRED for m in moves) <= 1
            ends_of_hold = [m for m in moves if m.source in HOLDING and m.target not in HOLDING]
            assert len(ends_of_hold) <= 1
        for e in self.state.entries.values():
            moves = e.transitions
            assert (moves[0].source, moves[0].target) == (W.NEW, W.WAITING)
            for before, move in zip(moves, moves[1:]):
                assert move.source is before.target and move.target in ENTRY_ALLOWED[move.source]
            assert sum(m.target is W.OFFERED for m in moves) <= 1

    @invariant()
    def no_waiting_entry_fits(self):
        """(W4) Free seats never sit unoffered while a waiting entry they fit is open: so a
        walk-in can only ever take seats nobody on the list could use (W3)."""
        capacity = self.trip.capacity
        for e in self.state.entries.values():
            if e.status is not W.WAITING or self.now >= self.closes(e.first_leg):
                continue
            taken = 0
            for leg in range(e.first_leg, e.last_leg + 1):
                taken |= self.state.legs[leg]
            assert capacity - (taken & ((1 << capacity) - 1)).bit_count() < e.seats_wanted, \
                f"{e.entry_id} fits in the free seats and was not offered them"

    @invariant()
    def refunds_within_what_was_paid(self):
        """(8) 0 <= refund <= paid."""
        for b in self.state.bookings.values():
            view = b.view()
            assert 0 <= view.refund_amount <= view.amount_paid


BookingMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBookingMachine = BookingMachine.TestCase
