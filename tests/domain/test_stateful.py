"""The booking core against a small reference model, step by step (DESIGN.md §5).

Hypothesis publishes a random trip, then sends random commands (and re-sends old ones
with the same command id). A reference model, written from the rules in DESIGN.md §3
and not from the core's code, predicts every reply code, the seats each new booking
gets, prices, refunds and expiries. After every step the invariants are checked on the
core's own state:

  (1) no oversell, (2) conservation, (3) a duplicate command id gets the original
  outcome and changes nothing, (4) a hold resolves at most once and every move is in
  the table, (8) 0 <= refund <= paid; plus the lowest-free-seat rule.
"""

import copy
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

import hypothesis.strategies as st
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from app.domain import booking as booking_rules
from app.domain.booking import Status
from app.domain.commands import (
    Actor,
    CancelBooking,
    CancelTrip,
    CheckIn,
    Complete,
    CreateBooking,
    ExpireHolds,
    InitiatePayment,
    PaymentFailed,
    PaymentSucceeded,
    PublishTrip,
    RefundDone,
    Role,
)
from app.domain.events import BookingCreated, BookingMoved, RefundRequired
from app.domain.handle import handle
from app.domain.ids import booking_id_for
from app.domain.rejections import Code
from app.domain.state import TripState, availability
from app.domain.trip import Stop, Trip
from tests.domain.support import ADMIN, DAY, DRIVER, HOUR, MINUTE, OTHER_DRIVER, PAYMENTS, POLICY, ROUTES, local_ms

RIDERS = [Actor(f"rider-{i}", Role.RIDER) for i in range(3)]
HOLDING = {Status.HELD, Status.PAYMENT_INITIATED}
SOLD = {Status.PAID, Status.CONFIRMED, Status.CHECKED_IN, Status.COMPLETED}
LIVE = HOLDING | SOLD
CANCELLABLE = {Status.PENDING, Status.HELD, Status.PAYMENT_INITIATED, Status.CONFIRMED, Status.CHECKED_IN}
GOOD_REASONS = ["My plans changed today", "   padded but long enough   ", "y" * 500]
BAD_REASONS = ["too short", "     short      ", "", "x" * 501]

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


def half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


class BookingMachine(RuleBasedStateMachine):
    policy = POLICY

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
            capacity=data.draw(st.integers(1, 50), label="capacity"),
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
        self.trip_cancelled = False
        self.trip_version = 0
        outcome = self.send(PublishTrip(self.new_id(), ROUTES, self.trip), expiring=set())
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

    def due_holds(self) -> set[str]:
        """The model's expiry: holds due by now end before any new command is decided."""
        due = set()
        for b in self.model.values():
            if b.status in HOLDING and b.expires_at <= self.now:
                b.status, b.version, due = Status.EXPIRED, b.version + 1, due | {b.booking_id}
        return due

    def send(self, command, expiring: set[str]):
        outcome = self.run(command)
        expired = {e.booking_id for e in outcome.events
                   if isinstance(e, BookingMoved) and e.moves[-1].target is Status.EXPIRED}
        assert expired == expiring, "the holds due, and only those, expire first"
        self.history.append((command, outcome, self.now))
        event(f"{type(command).__name__}: {outcome.code or 'accepted'}")  # see --hypothesis-show-statistics
        return outcome

    def pick(self, data, likely=lambda b: True) -> Model:
        """Any booking; but mostly one for which `likely` holds (a booking the command can
        apply to), so that long lifecycles are reached as well as the refusals."""
        fitting = sorted(k for k, b in self.model.items() if likely(b))
        pool = fitting if fitting and data.draw(st.integers(0, 3), label="fitting") else sorted(self.model)
        return self.model[data.draw(st.sampled_from(pool), label="booking")]

    def expect(self, outcome, code: Code | None, b: Model | None = None) -> None:
        assert outcome.code == code, f"expected {code}, core said {outcome.code}"
        if code is None and b is not None:
            assert outcome.booking_id == b.booking_id and outcome.version == b.version

    def live_seats(self) -> list[Model]:
        return [b for b in self.model.values() if b.status in LIVE]

    def lowest_free(self, first: int, last: int, count: int) -> tuple[int, ...] | None:
        taken = {seat for b in self.live_seats() if b.first <= last and first <= b.last for seat in b.seats}
        free = [seat for seat in range(1, self.trip.capacity + 1) if seat not in taken]
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
        return sum(len(b.seats) for b in self.model.values() if b.rider == rider and b.status in HOLDING)

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

    def create(self, rider, origin, destination, seats):
        stops = len(self.trip.stops)
        command = CreateBooking(self.new_id(), rider, f"S{origin}", f"S{destination}", seats)
        expiring = self.due_holds()
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
        elif self.now > self.departure(origin) - 15 * MINUTE:
            code = Code.BOOKING_CLOSED
        elif (granted := self.lowest_free(first, last, seats)) is None:
            code = Code.SEATS_UNAVAILABLE
        else:
            code = None
            total = self.price(first, last, seats)
        outcome = self.send(command, expiring)
        self.expect(outcome, code)
        if code is None:
            booking = self.state.bookings[outcome.booking_id]
            assert outcome.booking_id == booking_id_for(self.trip.route_id, self.trip.travel_date,
                                                        command.command_id)
            assert booking.seats == granted, "a booking gets the lowest seat numbers free on all its legs"
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
        expiring = self.due_holds()
        if not by_owner:
            code = Code.NOT_OWNER
        elif b.status is Status.HELD:
            code = None
            b.status, b.version, b.expires_at = Status.PAYMENT_INITIATED, b.version + 1, self.now + 15 * MINUTE
        else:
            code = Code.HOLD_EXPIRED if b.status is Status.EXPIRED else Code.INVALID_TRANSITION
        self.expect(self.send(command, expiring), code, b)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), right_amount=st.sampled_from([True, True, False]), same_payment=st.booleans())
    def payment_succeeded(self, data, right_amount, same_payment):
        b = self.pick(data, lambda b: (b.paid_with is not None) if same_payment else b.status in HOLDING)
        amount = b.total if right_amount else b.total + data.draw(st.sampled_from([-1, 1, b.total]))
        if same_payment and b.paid_with:
            # Confirming again with the payment that confirmed it: the same result, no change.
            command = PaymentSucceeded(self.new_id(), PAYMENTS, b.booking_id, b.paid_with, amount)
            outcome = self.send(command, expiring=set())
            assert outcome.code is None and outcome.events == ()
            assert (outcome.booking_id, outcome.version) == (b.booking_id, b.confirmed_version)
            return
        command = PaymentSucceeded(self.new_id(), PAYMENTS, b.booking_id, f"pay-{self.count}", amount)
        expiring = self.due_holds()
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
        outcome = self.send(command, expiring)
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
        expiring = self.due_holds()
        code = None if b.status in HOLDING else Code.INVALID_TRANSITION
        if code is None:
            b.version += 1  # recorded as a fact; the seats stay held
        self.expect(self.send(command, expiring), code, b)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), by_owner=st.booleans(), good_reason=st.booleans())
    def rider_cancel(self, data, by_owner, good_reason):
        b = self.pick(data, lambda b: b.status in CANCELLABLE)
        actor = next(r for r in RIDERS if (r.user_id == b.rider) == by_owner)
        reason = data.draw(st.sampled_from(GOOD_REASONS if good_reason else BAD_REASONS), label="reason")
        command = CancelBooking(self.new_id(), actor, b.booking_id, reason)
        expiring = self.due_holds()
        if not by_owner:
            code = Code.NOT_OWNER
        elif not good_reason:
            code = Code.INVALID_REASON
        elif b.status not in CANCELLABLE:
            code = Code.INVALID_TRANSITION
        else:
            code = None
            b.status, b.version, b.refund, b.expires_at = Status.CANCELLED, b.version + 1, self.rider_refund(b), None
        self.expect(self.send(command, expiring), code, b)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), good_reason=st.booleans())
    def admin_force_cancel(self, data, good_reason):
        b = self.pick(data, lambda b: b.status in CANCELLABLE)
        reason = data.draw(st.sampled_from(GOOD_REASONS if good_reason else BAD_REASONS), label="reason")
        command = CancelBooking(self.new_id(), ADMIN, b.booking_id, reason)
        expiring = self.due_holds()
        if not good_reason:
            code = Code.INVALID_REASON
        elif b.status not in CANCELLABLE:
            code = Code.INVALID_TRANSITION
        else:
            code = None
            b.status, b.version, b.refund, b.expires_at = Status.CANCELLED, b.version + 1, b.paid, None
        self.expect(self.send(command, expiring), code, b)

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
        expiring = self.due_holds()
        if not by_trip_driver:
            code = Code.BOOKING_NOT_FOUND  # as for an unknown id: another driver learns nothing
        elif b.status is not source:
            code = Code.INVALID_TRANSITION
        else:
            code = None
            b.status, b.version = target, b.version + 1
        self.expect(self.send(command, expiring), code, b)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), which=st.sampled_from(["owed", "half", "zero", "over"]))
    def refund_done(self, data, which):
        b = self.pick(data, lambda b: b.status is Status.CONFIRMED or (b.status is Status.CANCELLED and b.refund))
        owed = b.refund if b.status is Status.CANCELLED else b.paid
        amount = {"owed": owed, "half": owed // 2, "zero": 0, "over": owed + 1}[which]
        command = RefundDone(self.new_id(), PAYMENTS, b.booking_id, amount)
        expiring = self.due_holds()
        if not (b.status in (Status.PAID, Status.CONFIRMED) or (b.status is Status.CANCELLED and b.refund)):
            code = Code.INVALID_TRANSITION
        elif not 0 < amount <= owed or (b.status is Status.CANCELLED and amount != owed):
            code = Code.AMOUNT_MISMATCH
        else:
            code = None
            b.status, b.version, b.refund = Status.REFUNDED, b.version + 1, amount
        self.expect(self.send(command, expiring), code, b)

    @precondition(lambda self: len(self.model) >= 2)  # late enough for the rest to matter
    @rule(by_trip_driver=st.booleans())
    def cancel_trip(self, by_trip_driver):
        command = CancelTrip(self.new_id(), DRIVER if by_trip_driver else OTHER_DRIVER, "Vehicle broke down")
        expiring = self.due_holds()
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
        outcome = self.send(command, expiring)
        self.expect(outcome, code)
        if code is None:
            self.trip_version += 1

    @rule(by=st.sampled_from([DRIVER, OTHER_DRIVER, ROUTES]),
          change=st.sampled_from(["none", "fares", "currency", "timezone", "departure"]))
    def republish_trip(self, by, change):
        """Who may update a trip, what stays fixed once it has bookings, and reopening."""
        changed = {
            "none": {},
            "fares": {"leg_fares": tuple(fare + 100 for fare in self.trip.leg_fares)},
            "currency": {"currency": "USD" if self.trip.currency == "NGN" else "NGN"},
            "timezone": {"timezone": "UTC" if self.trip.timezone != "UTC" else "Africa/Lagos"},
            "departure": {"departure_time": time((self.trip.departure_time.hour + 1) % 24, 0)},
        }[change]
        update = replace(self.trip, **changed)
        command = PublishTrip(self.new_id(), by, update)
        expiring = self.due_holds()
        if by is OTHER_DRIVER:
            code = Code.FORBIDDEN
        elif self.trip_cancelled and by is DRIVER:
            code = Code.TRIP_CANCELLED
        elif self.trip.travel_date < utc_date(self.now) - timedelta(days=self.policy.trip_days_behind_max):
            code = Code.TRAVEL_DATE_OUT_OF_RANGE  # the clock has run past the trip
        elif self.model and change in ("currency", "timezone", "departure"):
            code = Code.TRIP_UPDATE_CONFLICT
        else:
            code = None
        outcome = self.send(command, expiring)
        self.expect(outcome, code)
        if code is None:
            self.trip_version += 1
            assert outcome.trip_version == self.trip_version
            self.trip, self.trip_cancelled = update, False
            self.departure0 = local_ms(self.trip.travel_date, self.trip.departure_time, self.trip.timezone)

    @rule(which=st.sampled_from(["pay", "cancel", "check-in"]))
    def command_on_unknown_booking(self, which):
        unknown = booking_id_for(self.trip.route_id, self.trip.travel_date, "never-sent")
        command = {
            "pay": PaymentSucceeded(self.new_id(), PAYMENTS, unknown, "pay-x", 100),
            "cancel": CancelBooking(self.new_id(), RIDERS[0], unknown, GOOD_REASONS[0]),
            "check-in": CheckIn(self.new_id(), DRIVER, unknown),
        }[which]
        outcome = self.send(command, self.due_holds())
        self.expect(outcome, Code.BOOKING_NOT_FOUND)
        assert any(isinstance(e, RefundRequired) for e in outcome.events) == (which == "pay")

    @rule()
    def tick(self):
        outcome = self.send(ExpireHolds(self.new_id(), Actor("ticker", Role.SERVICE)), self.due_holds())
        self.expect(outcome, None)

    @rule(step=st.one_of(st.integers(0, 5 * MINUTE), st.integers(0, 20 * MINUTE), st.integers(0, 30 * HOUR)))
    def time_passes(self, step):
        self.now += step

    @rule(data=st.data(), nudge=st.sampled_from([-1, 0, 1]))
    def time_reaches_a_deadline(self, data, nudge):
        """Jump to (a millisecond around) a moment where a rule flips: a hold's expiry, a
        stop's booking close, or 24 h / 6 h before a departure (the refund bands)."""
        deadlines = {self.departure(stop) - 15 * MINUTE for stop in range(len(self.trip.stops))}
        for b in self.model.values():
            deadlines |= {b.expires_at} if b.status in HOLDING else set()
            deadlines |= {self.departure(b.first) - 24 * HOUR, self.departure(b.first) - 6 * HOUR}
        ahead = sorted(d + nudge for d in deadlines if d + nudge >= self.now)
        if ahead:
            self.now = data.draw(st.sampled_from(ahead[:6]), label="deadline")

    @precondition(lambda self: self.history)
    @rule(data=st.data())
    def duplicate(self, data):
        """(3) Re-sending a command id gets the original outcome and changes nothing (within
        the retention window of remembered outcomes: tests/domain/test_trip_state.py)."""
        recent = self.now - self.policy.outcome_retention_ms
        candidates = [(c, o) for c, o, at in self.history
                      if at > recent and not (isinstance(c, ExpireHolds) and not o.events)]
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

    @invariant()
    def no_oversell(self):
        """(1) held + sold <= capacity on every leg; no seat twice on one leg."""
        capacity = self.trip.capacity
        for leg in availability(self.state):
            assert leg.held + leg.sold <= capacity
        live = [b for b in self.state.bookings.values() if booking_rules.occupies_seats(b.status)]
        for leg in range(len(self.trip.stops) - 1):
            seats = [s for b in live if b.first_leg <= leg <= b.last_leg for s in b.seats]
            assert len(seats) == len(set(seats)), f"seat given twice on leg {leg}"
            assert all(1 <= s <= capacity for s in seats)

    @invariant()
    def conservation(self):
        """(2) free + held + sold = capacity, and each leg's bitmask is exactly the seats
        of the live bookings on it."""
        for leg in availability(self.state):
            assert leg.free + leg.held + leg.sold == self.trip.capacity
        live = [b for b in self.state.bookings.values() if booking_rules.occupies_seats(b.status)]
        for leg, mask in enumerate(self.state.legs):
            seats = {s for b in live if b.first_leg <= leg <= b.last_leg for s in b.seats}
            assert {s for s in range(1, 51) if mask >> (s - 1) & 1} == seats

    @invariant()
    def holds_resolve_once_along_the_table(self):
        """(4) every move is in the table (or a fact with source == target), the chain is
        unbroken, and a hold ends at most once."""
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
