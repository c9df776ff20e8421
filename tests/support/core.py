"""Builders shared by the tests of the core and of its tables: trips, actors, and a few time helpers."""

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from app.domain.booking import Booking
from app.domain.commands import Actor, CreateBooking, JoinWaitlist, PaymentSucceeded, PublishTrip, Role
from app.domain.handle import Outcome, handle
from app.domain.policy import Policy
from app.domain.state import TripState
from app.domain.trip import Stop, Trip
from app.domain.waitlist import Entry

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

POLICY = Policy()

DRIVER = Actor("driver-1", Role.DRIVER)
OTHER_DRIVER = Actor("driver-2", Role.DRIVER)
RIDER = Actor("rider-1", Role.RIDER)
OTHER_RIDER = Actor("rider-2", Role.RIDER)
THIRD_RIDER = Actor("rider-3", Role.RIDER)
ADMIN = Actor("admin-1", Role.ADMIN)
PAYMENTS = Actor("payments", Role.SERVICE)
ROUTES = Actor("route-service", Role.SERVICE)


def make_trip(
    stops: int = 4,
    capacity: int = 10,
    *,
    fares: tuple[int, ...] | None = None,
    offsets: tuple[int, ...] | None = None,
    travel_date: date = date(2030, 6, 15),
    departure: time = time(8, 0),
    timezone: str = "Africa/Lagos",
    route_id: str = "R-LOS-IBD",
) -> Trip:
    offsets = offsets if offsets is not None else tuple(30 * i for i in range(stops))
    return Trip(
        route_id=route_id,
        travel_date=travel_date,
        timezone=timezone,
        departure_time=departure,
        capacity=capacity,
        currency="NGN",
        stops=tuple(Stop(f"S{i}", offsets[i]) for i in range(stops)),
        leg_fares=fares if fares is not None else tuple([1000] * (stops - 1)),
        driver_id=DRIVER.user_id,
    )


def local_ms(day: date, at: time, timezone: str) -> int:
    """Epoch ms of a local wall-clock time, computed here independently of the core."""
    return int(datetime.combine(day, at, ZoneInfo(timezone)).timestamp() * 1000)


def published(trip: Trip, policy: Policy = POLICY) -> TripState:
    """The trip as the route service publishes it, a month before it runs."""
    state = TripState()
    outcome = handle(state, PublishTrip("publish", ROUTES, trip), trip.departure_ms(0) - 30 * DAY, policy)
    assert outcome.accepted, outcome.code
    return state


class Script:
    """A trip state plus a command counter: tests read as a sequence of actions."""

    def __init__(self, trip: Trip | None = None, now: int | None = None, policy: Policy = POLICY):
        self.trip = trip or make_trip()
        self.policy = policy
        self.state = published(self.trip, policy)
        self.now = now if now is not None else self.trip.departure_ms(0) - 3 * DAY
        self._count = 0

    def next_id(self) -> str:
        self._count += 1
        return f"cmd-{self._count}"

    def run(self, command) -> Outcome:
        return handle(self.state, command, self.now, self.policy)

    def create(self, origin: int = 0, destination: int = 1, seats: int = 1, rider: Actor = RIDER) -> Booking:
        outcome = self.run(CreateBooking(self.next_id(), rider, f"S{origin}", f"S{destination}", seats))
        assert outcome.accepted, outcome.code
        return self.state.bookings[outcome.booking_id]

    def pay(self, booking: Booking, payment_id: str | None = None) -> Outcome:
        outcome = self.run(PaymentSucceeded(self.next_id(), PAYMENTS, booking.booking_id,
                                            payment_id or f"pay-{booking.booking_id}", booking.total))
        assert outcome.accepted, outcome.code
        return outcome

    def booking(self, booking_id: str) -> Booking:
        return self.state.bookings[booking_id]

    def join(self, origin: int = 0, destination: int = 1, seats: int = 1, rider: Actor = RIDER) -> Entry:
        outcome = self.run(JoinWaitlist(self.next_id(), rider, f"S{origin}", f"S{destination}", seats))
        assert outcome.accepted, outcome.code
        return self.state.entries[outcome.entry_id]

    def entry(self, entry_id: str) -> Entry:
        return self.state.entries[entry_id]
