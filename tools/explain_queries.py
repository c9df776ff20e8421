"""`python -m tools.explain_queries [--trips N] [--output PATH]`: the plan of every read query,
written to docs/query-plans.md.

On a scratch database (created, migrated, dropped at the end) seeded with genuine events
(the pure core decides them, app.wire.outbound renders them, the sink's own parser and
write path store them), it calls every read query of gateway.queries on a connection whose
cursors run `EXPLAIN (ANALYZE, BUFFERS)` on each statement before executing it.

Which functions are read queries is a naming convention, so that a query added to
gateway.queries appears here without a list to update: every public `async def` defined
in that module. Their arguments come from SAMPLES by parameter name (a parameter with a
default keeps it); a new parameter name stops the command with the name to add.
"""

import argparse
import asyncio
import inspect
import logging
import random
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection, AsyncCursor, sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import tuple_row

from app.config import ROOT, get_settings
from app.domain.commands import (
    Actor,
    CancelBooking,
    CheckIn,
    Complete,
    CreateBooking,
    ExpireHolds,
    InitiatePayment,
    JoinWaitlist,
    PaymentFailed,
    PaymentSucceeded,
    PublishTrip,
    RefundDone,
    Role,
)
from app.domain.handle import handle
from app.domain.policy import Policy
from app.domain.state import TripState
from app.domain.trip import Stop, Trip
from app.wire.outbound import lifecycle_events
from gateway import queries
from sinks import store
from sinks.events import Batch, parse_record
from sinks.migrate import migrate

log = logging.getLogger("tools.explain_queries")

OUTPUT = ROOT / "docs" / "query-plans.md"
FIRST_DATE = date(2031, 3, 1)
ROUTES = 30  # each runs every day, from FIRST_DATE on, as many days as the trips need
RIDERS = 3000
STOPS = (Stop("stop-a", 0), Stop("stop-b", 60), Stop("stop-c", 150), Stop("stop-d", 240))
PAYMENTS = Actor("payments", Role.SERVICE)
OPERATOR = Actor("route-service", Role.SERVICE)
MINUTE_MS = 60_000


# -- seeding ----------------------------------------------------------------------------


@dataclass
class Seeder:
    """Drives trips through the core and keeps the records they publish."""

    rng: random.Random
    policy: Policy = field(default_factory=Policy)
    records: list[tuple[str, str, bytes]] = field(default_factory=list)
    commands: int = 0

    def trip(self, route_id: str, travel_date: date, bookings: int) -> None:
        trip = Trip(route_id=route_id, travel_date=travel_date, timezone="Africa/Lagos",
                    departure_time=time(7 + self.rng.randrange(12), 30), capacity=4 * bookings, currency="NGN",
                    stops=STOPS, leg_fares=(250_000, 310_000, 180_000), driver_id=f"driver-{route_id}")
        state = TripState()
        clock = int(datetime.combine(travel_date - timedelta(days=20), time(8, 0), UTC).timestamp() * 1000)
        driver = Actor(trip.driver_id, Role.DRIVER)

        def run(command_of: Callable[[str], Any], after_ms: int = MINUTE_MS) -> Any:
            nonlocal clock
            self.commands += 1
            clock += after_ms
            outcome = handle(state, command_of(f"seed-{self.commands}"), clock, self.policy)
            self.records.extend(lifecycle_events(state, outcome))
            return outcome

        run(lambda cid: PublishTrip(cid, OPERATOR, trip))
        for _ in range(bookings):
            rider = Actor(f"rider-{self.rng.randrange(RIDERS)}", Role.RIDER)
            first = self.rng.randrange(len(STOPS) - 1)
            last = self.rng.randrange(first + 1, len(STOPS))
            created = run(lambda cid: CreateBooking(cid, rider, STOPS[first].stop_id, STOPS[last].stop_id,
                                                    self.rng.randint(1, 4)))
            self.live_through(run, created.booking_id, rider, driver, state)
        if self.rng.random() < 0.3:
            self.sell_out(run, trip, state)
        run(lambda cid: ExpireHolds(cid, OPERATOR), after_ms=self.policy.payment_hold_minutes * MINUTE_MS + 1)

    def sell_out(self, run: Callable[..., Any], trip: Trip, state: TripState) -> None:
        """The trip cut down to the seats in use, and riders joining its waiting list (the
        expiries that follow offer them seats)."""
        in_use = max(leg.bit_length() for leg in state.legs)
        if not in_use:
            return
        run(lambda cid: PublishTrip(cid, OPERATOR, replace(trip, capacity=in_use)))
        for _ in range(self.rng.randint(2, 8)):
            rider = Actor(f"rider-{self.rng.randrange(RIDERS)}", Role.RIDER)
            first = self.rng.randrange(len(STOPS) - 1)
            last = self.rng.randrange(first + 1, len(STOPS))
            run(lambda cid: JoinWaitlist(cid, rider, STOPS[first].stop_id, STOPS[last].stop_id, self.rng.randint(1, 2)))

    def live_through(self, run: Callable[..., Any], booking_id: str, rider: Actor, driver: Actor,
                     state: TripState) -> None:
        """One of the lives a booking has, in rough real-world proportions."""
        fate = self.rng.random()
        if fate < 0.15:
            return  # left on hold: expires
        if fate < 0.25:
            run(lambda cid: CancelBooking(cid, rider, booking_id, "plans changed, sorry"))
            return
        payment = f"pay-{booking_id}"
        if fate < 0.32:
            run(lambda cid: PaymentFailed(cid, PAYMENTS, booking_id, payment))
            return
        total = state.bookings[booking_id].total
        run(lambda cid: InitiatePayment(cid, PAYMENTS, booking_id, payment))
        run(lambda cid: PaymentSucceeded(cid, PAYMENTS, booking_id, payment, total))
        if fate < 0.42:
            run(lambda cid: CancelBooking(cid, rider, booking_id, "plans changed, sorry"))
            owed = state.bookings[booking_id].view().refund_amount
            run(lambda cid: RefundDone(cid, PAYMENTS, booking_id, owed))
        elif fate < 0.62:
            run(lambda cid: CheckIn(cid, driver, booking_id))
            run(lambda cid: Complete(cid, driver, booking_id))


def days_for(trips: int) -> int:
    return -(-trips // ROUTES)


def now_for(trips: int) -> datetime:
    """Half the seeded trips have departed by then: "upcoming" has both kinds to tell apart."""
    return datetime.combine(FIRST_DATE + timedelta(days=days_for(trips) // 2), time(12, 0), UTC)


def seed(database_url: str, trips: int, seed_value: int = 7) -> int:
    """Writes the events of `trips` trips (routes x dates); returns the record count."""
    seeder = Seeder(random.Random(seed_value))
    for n in range(trips):
        seeder.trip(f"route-{n % ROUTES:02d}", FIRST_DATE + timedelta(days=n // ROUTES),
                    bookings=seeder.rng.randint(5, 25))
    with store.connect(database_url) as conn:
        for start in range(0, len(seeder.records), 5000):
            batch = Batch()
            for topic, _, value in seeder.records[start:start + 5000]:
                batch.add(parse_record(topic, value))
            store.write_batch(conn, batch)
        conn.execute("ANALYZE")
        conn.commit()
    return len(seeder.records)


# -- sample arguments -------------------------------------------------------------------


def samples(conn: psycopg.Connection, now: datetime) -> dict[str, Any]:
    """Argument values by parameter name, taken from the seeded rows so queries find data:
    the rider with the most confirmed bookings still to depart, of those on a waiting list
    if any is (a small seed may have none that is both); one of their bookings; the trip
    of their first waiting-list entry, else the first trip with a waiting list."""
    rider_id, = conn.execute("SELECT rider_id FROM bookings WHERE status = 'CONFIRMED' AND departure_at > %s "
                             "GROUP BY rider_id "
                             "ORDER BY rider_id IN (SELECT rider_id FROM waitlist_entries) DESC, count(*) DESC, "
                             "rider_id LIMIT 1", (now,)).fetchone()
    booking_id, reference, stop_id = conn.execute(
        "SELECT id, booking_reference, origin_stop_id FROM bookings WHERE rider_id = %s ORDER BY id LIMIT 1",
        (rider_id,)).fetchone()
    route_id, travel_date = conn.execute("SELECT route_id, travel_date FROM waitlist_entries "
                                         "ORDER BY rider_id = %s DESC, id LIMIT 1", (rider_id,)).fetchone()
    return {
        "booking_id": booking_id, "reference": reference, "rider_id": rider_id, "route_id": route_id,
        "travel_date": travel_date, "stop_id": stop_id, "status": "CONFIRMED", "page": 0, "size": 20,
        "now": now, "date_from": now.date() - timedelta(days=7), "date_to": now.date(),
        "start": now - timedelta(days=7), "end": now,
        "first_day": now.date() - timedelta(days=30), "last_day": now.date() + timedelta(days=30),
        # An admin's typical search: one route's confirmed bookings over a month of travel.
        "filters": queries.SearchFilters(statuses=("CONFIRMED",), route_id=route_id,
                                         travel_date_from=travel_date - timedelta(days=15),
                                         travel_date_to=travel_date + timedelta(days=15)),
    }


# -- discovery and EXPLAIN --------------------------------------------------------------


def read_queries() -> list[Callable[..., Awaitable[Any]]]:
    """The convention: every public coroutine function defined in gateway.queries."""
    return [function for name, function in inspect.getmembers(queries, inspect.iscoroutinefunction)
            if not name.startswith("_") and function.__module__ == queries.__name__]


def arguments_for(function: Callable[..., Any], values: dict[str, Any]) -> dict[str, Any]:
    chosen = {}
    for name, parameter in list(inspect.signature(function).parameters.items())[1:]:  # after the connection
        if parameter.default is not inspect.Parameter.empty:
            continue
        if name not in values:
            raise SystemExit(f"tools.explain_queries: no sample value for parameter {name!r} of queries.{function.__name__}; "
                             "add one to tools.explain_queries.samples()")
        chosen[name] = values[name]
    return chosen


@dataclass(frozen=True, slots=True)
class Statement:
    text: str
    params: tuple[Any, ...]
    plan: str


def explaining_cursor(captured: list[Statement]) -> type[AsyncCursor]:
    """A cursor that EXPLAINs each statement, then runs it for real so the query function
    gets its rows and goes on to its next statement."""

    class ExplainingCursor(AsyncCursor):
        async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            composed = query if isinstance(query, sql.Composable) else sql.SQL(query)
            async with AsyncCursor(self.connection, row_factory=tuple_row) as plain:
                await plain.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + composed, params)
                plan = "\n".join(row[0] for row in await plain.fetchall())
            captured.append(Statement(composed.as_string(self.connection), tuple(params or ()), plan))
            return await super().execute(query, params, **kwargs)

    return ExplainingCursor


async def explain_all(database_url: str, values: dict[str, Any]) -> list[tuple[Callable[..., Any], dict, list]]:
    explained = []
    for function in read_queries():
        captured: list[Statement] = []
        arguments = arguments_for(function, values)
        async with await AsyncConnection.connect(database_url, cursor_factory=explaining_cursor(captured)) as conn:
            await function(conn, **arguments)
        explained.append((function, arguments, captured))
    return explained


# -- the document -----------------------------------------------------------------------


def render(explained: list[tuple[Callable[..., Any], dict, list]], counts: dict[str, int], version: str,
           trips: int) -> str:
    lines = [
        "# Query plans of the read model",
        "",
        "Generated by `python -m tools.explain_queries` (do not edit by hand): every read query of",
        "`gateway/queries.py` run once with `EXPLAIN (ANALYZE, BUFFERS)` on a scratch database",
        f"seeded with the events of {trips:,} trips ({ROUTES} routes over {days_for(trips)} days, {RIDERS:,} riders),",
        "written by the sink's own write path, then `ANALYZE`d. Timings are from the machine",
        "that generated the file; the plan shapes and row counts are what to read.",
        "",
        f"PostgreSQL {version}. Rows: " + ", ".join(f"{table} {count:,}" for table, count in counts.items()) + ".",
        "",
    ]
    for function, arguments, statements in explained:
        summary = (inspect.getdoc(function) or "").split("\n\n")[0].replace("\n", " ")
        shown = ", ".join(f"{name}={value!r}" for name, value in arguments.items())
        lines += [f"## `{function.__name__}`", ""]
        if summary:
            lines += [summary, ""]
        lines += [f"Called with {shown}." if shown else "Called with no arguments.", ""]
        for statement in statements:
            lines += ["```sql", statement.text, "```", "", f"Parameters: {list(statement.params)!r}", "",
                      "```", statement.plan, "```", ""]
    return "\n".join(lines)


def generate(admin_url: str, trips: int, output: Path) -> None:
    name = f"openride_explain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(admin_url, dbname=name)
    try:
        migrate(url)
        records = seed(url, trips)
        log.info("seeded %d events", records)
        with psycopg.connect(url) as conn:
            values = samples(conn, now_for(trips))
            counts = {table: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
                      for table in ("bookings", "booking_history", "trips")}
            version = conn.execute("SHOW server_version").fetchone()[0]
        explained = asyncio.run(explain_all(url, values))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    output.write_text(render(explained, counts, version, trips))
    log.info("wrote the plans of %d queries to %s", len(explained), output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.explain_queries", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None,
                        help="a database of the server to use (a scratch one is created next to it); "
                             "default: settings.database_url (DATABASE_URL)")
    parser.add_argument("--trips", type=int, default=3000, help="trips seeded (about 15 bookings each)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    generate(args.database_url or get_settings().database_url, args.trips, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
