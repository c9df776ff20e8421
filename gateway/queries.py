"""Read-side queries for the gateway, on the tables the sink writes.

Each takes a `psycopg.AsyncConnection` (from the gateway's pool) and returns bookings in
exactly the shape of the events' snapshot (app.wire.outbound.snapshot): same keys in
the same order, money as "1234.50", instants as "2025-01-31T08:00:00.000Z". Rows are
read as tuples whatever row factory the pool sets, and turned into dicts by the one
mapping in sinks.schema.

Ownership is the caller's business: these return what exists; the gateway answers 404
for a booking that is not the caller's.
"""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row

from app.domain.booking import Status
from app.domain.trip import trip_key
from sinks.schema import (
    ENTRY_SNAPSHOT_COLUMNS,
    SNAPSHOT_COLUMNS,
    render_booking,
    render_entry,
    render_instant,
    render_money,
    render_time,
)

LIVE_STATUSES = ("CONFIRMED", "CHECKED_IN")  # what "upcoming" shows
# Who rides: paid and not cancelled (HELD seats are not passengers yet).
MANIFEST_STATUSES = ("CONFIRMED", "CHECKED_IN", "COMPLETED")
CENT = Decimal("0.01")

_SELECT = sql.SQL("SELECT {cols} FROM bookings").format(cols=sql.SQL(", ").join(map(sql.Identifier, SNAPSHOT_COLUMNS)))


async def _fetch_all(conn: AsyncConnection, query: sql.Composable, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def _bookings(conn: AsyncConnection, where_and_order: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    rows = await _fetch_all(conn, _SELECT + sql.SQL(" " + where_and_order), params)
    return [render_booking(row) for row in rows]


async def booking_by_id(conn: AsyncConnection, booking_id: str) -> dict[str, Any] | None:
    found = await _bookings(conn, "WHERE id = %s", (booking_id,))
    return found[0] if found else None


async def booking_by_reference(conn: AsyncConnection, reference: str,
                               rider_id: str | None = None) -> dict[str, Any] | None:
    """References are not guaranteed unique (see migrations/0001_init.sql): give the
    rider's own match when a rider is named, else the newest."""
    if rider_id is None:
        found = await _bookings(conn, "WHERE booking_reference = %s ORDER BY created_at DESC, id DESC LIMIT 1",
                                (reference,))
    else:
        found = await _bookings(
            conn, "WHERE booking_reference = %s AND rider_id = %s ORDER BY created_at DESC, id DESC LIMIT 1",
            (reference, rider_id))
    return found[0] if found else None


async def bookings_of_rider(conn: AsyncConnection, rider_id: str, status: str | None, page: int,
                            size: int) -> tuple[list[dict[str, Any]], int]:
    """One page (numbered from 0, as Spring's pages were) of the rider's bookings, newest
    first, optionally of one status; and how many there are in all."""
    if page < 0 or size < 1:
        raise ValueError("page must be >= 0 and size >= 1")
    status_filter = "" if status is None else " AND status = %s"
    params: tuple[Any, ...] = (rider_id,) if status is None else (rider_id, status)
    rows = await _bookings(conn, f"WHERE rider_id = %s{status_filter} ORDER BY created_at DESC, id DESC "
                                 "LIMIT %s OFFSET %s", (*params, size, page * size))
    counted = await _fetch_all(conn, sql.SQL(f"SELECT count(*) FROM bookings WHERE rider_id = %s{status_filter}"),
                               params)
    return rows, counted[0][0]


async def upcoming_of_rider(conn: AsyncConnection, rider_id: str, now: datetime,
                            limit: int = 100) -> list[dict[str, Any]]:
    """Confirmed or checked-in bookings whose departure from the pickup stop is after
    `now` (an aware datetime), soonest first."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return await _bookings(conn, "WHERE rider_id = %s AND status = ANY(%s) AND departure_at > %s "
                                 "ORDER BY departure_at, id LIMIT %s",
                           (rider_id, list(LIVE_STATUSES), now, limit))


async def history(conn: AsyncConnection, booking_id: str) -> list[dict[str, Any]]:
    """Every recorded move of the booking, oldest first, in the events' transition shape
    plus the version each move produced."""
    rows = await _fetch_all(conn, sql.SQL(
        "SELECT version, from_status, to_status, reason, actor, at, command_id FROM booking_history "
        "WHERE booking_id = %s ORDER BY version, seq"), (booking_id,))
    return [
        {"version": version, "from": source, "to": target, "reason": reason, "actor": actor,
         "at": render_instant(at), "commandId": command_id}
        for version, source, target, reason, actor, at, command_id in rows
    ]


# -- admin search -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Every filter is optional; those given are ANDed. Dates are travel dates, inclusive."""

    statuses: tuple[str, ...] = ()
    route_id: str | None = None
    travel_date_from: date | None = None
    travel_date_to: date | None = None
    rider_id: str | None = None
    driver_id: str | None = None
    reference: str | None = None

    def where(self) -> tuple[sql.Composable, tuple[Any, ...]]:
        conditions: list[sql.Composable] = []
        params: list[Any] = []
        for column, operator, value in (
            ("status", "= ANY(%s)", list(self.statuses) if self.statuses else None),
            ("route_id", "= %s", self.route_id),
            ("travel_date", ">= %s", self.travel_date_from),
            ("travel_date", "<= %s", self.travel_date_to),
            ("rider_id", "= %s", self.rider_id),
            ("driver_id", "= %s", self.driver_id),
            ("booking_reference", "= %s", self.reference),
        ):
            if value is not None:
                conditions.append(sql.SQL("{} " + operator).format(sql.Identifier(column)))
                params.append(value)
        if not conditions:
            return sql.SQL(""), ()
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions), tuple(params)


async def search_bookings(conn: AsyncConnection, filters: SearchFilters, page: int,
                          size: int) -> tuple[list[dict[str, Any]], int]:
    """One page (from 0) of the bookings matching the filters, newest first, and how many
    match in all."""
    if page < 0 or size < 1:
        raise ValueError("page must be >= 0 and size >= 1")
    where, params = filters.where()
    rows = await _fetch_all(conn, _SELECT + where + sql.SQL(" ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s"),
                            (*params, size, page * size))
    counted = await _fetch_all(conn, sql.SQL("SELECT count(*) FROM bookings") + where, params)
    return [render_booking(row) for row in rows], counted[0][0]


# -- statistics -------------------------------------------------------------------------


async def booking_statistics(conn: AsyncConnection, first_day: date, last_day: date) -> dict[str, Any]:
    """Bookings travelling from `first_day` to `last_day` (inclusive): how many in each
    status, how many distinct riders and drivers, and money per currency.

    Money: `gross` is what was paid (every booking that reached CONFIRMED, whatever came
    after), `refunded` what went back (REFUNDED bookings), `refundsPending` what is owed
    to cancelled bookings and not returned yet, `net` = gross - refunded, and
    `averageValue` = gross / paid bookings (2 places, half up)."""
    if last_day < first_day:
        raise ValueError("last_day must not be before first_day")
    in_range = (first_day, last_day)
    by_status = dict(await _fetch_all(conn, sql.SQL(
        "SELECT status, count(*) FROM bookings WHERE travel_date BETWEEN %s AND %s GROUP BY status"), in_range))
    people = await _fetch_all(conn, sql.SQL(
        "SELECT count(DISTINCT rider_id), count(DISTINCT driver_id) FROM bookings "
        "WHERE travel_date BETWEEN %s AND %s"), in_range)
    money = await _fetch_all(conn, sql.SQL(
        "SELECT currency, count(*) FILTER (WHERE confirmed_at IS NOT NULL), "
        "coalesce(sum(total_price) FILTER (WHERE confirmed_at IS NOT NULL), 0), "
        "coalesce(sum(refund_amount) FILTER (WHERE status = 'REFUNDED'), 0), "
        "coalesce(sum(refund_amount) FILTER (WHERE status = 'CANCELLED'), 0) "
        "FROM bookings WHERE travel_date BETWEEN %s AND %s GROUP BY currency ORDER BY currency"), in_range)
    riders, drivers = people[0]
    return {
        "from": first_day.isoformat(),
        "to": last_day.isoformat(),
        "totalBookings": sum(by_status.values()),
        "byStatus": {status.value: by_status.get(status.value, 0) for status in Status},
        "uniqueRiders": riders,
        "uniqueDrivers": drivers,
        "revenue": [_revenue(*row) for row in money],
    }


def _revenue(currency: str, paid: int, gross: Decimal, refunded: Decimal, pending: Decimal) -> dict[str, Any]:
    average = (gross / paid).quantize(CENT, rounding=ROUND_HALF_UP) if paid else Decimal(0)
    return {"currency": currency, "paidBookings": paid, "gross": render_money(gross),
            "refunded": render_money(refunded), "refundsPending": render_money(pending),
            "net": render_money(gross - refunded), "averageValue": render_money(average)}


# -- trips and their passengers ---------------------------------------------------------


async def trip_by_key(conn: AsyncConnection, route_id: str, travel_date: date) -> dict[str, Any] | None:
    """The trip as the processor last published it (trip.updated), money in minor units
    as on the topic."""
    rows = await _fetch_all(conn, sql.SQL(
        "SELECT route_id, travel_date, timezone, departure_time, capacity, currency, stops, leg_fares, "
        "driver_id, status, version FROM trips WHERE route_id = %s AND travel_date = %s"), (route_id, travel_date))
    if not rows:
        return None
    route, day, zone, departs, capacity, currency, stops, fares, driver, status, version = rows[0]
    return {"routeId": route, "travelDate": day.isoformat(), "timezone": zone, "departureTime": render_time(departs),
            "capacity": capacity, "currency": currency, "stops": stops, "legFares": fares, "driverId": driver,
            "status": status, "version": version}


async def manifest_bookings(conn: AsyncConnection, route_id: str, travel_date: date) -> list[dict[str, Any]]:
    """The trip's passengers (paid, not cancelled), by departure from their pickup stop,
    then seat."""
    return await _bookings(conn, "WHERE route_id = %s AND travel_date = %s AND status = ANY(%s) "
                                 "ORDER BY departure_at, seat_numbers[1], id",
                           (route_id, travel_date, list(MANIFEST_STATUSES)))


# -- waiting lists ----------------------------------------------------------------------

# An entry as its snapshot, but with the current position of a waiting one: 1 + the
# entries of its trip still waiting that joined before it.
_CURRENT_POSITION = sql.SQL(
    "CASE WHEN e.status = 'WAITING' THEN 1 + (SELECT count(*) FROM waitlist_entries ahead "
    "WHERE ahead.trip_key = e.trip_key AND ahead.status = 'WAITING' AND ahead.join_order < e.join_order) END")
_ENTRY_SELECT = sql.SQL("SELECT {cols} FROM waitlist_entries e").format(cols=sql.SQL(", ").join(
    _CURRENT_POSITION if column == "position" else sql.Identifier("e", column) for column in ENTRY_SNAPSHOT_COLUMNS))


async def _entries(conn: AsyncConnection, where_and_order: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    rows = await _fetch_all(conn, _ENTRY_SELECT + sql.SQL(" " + where_and_order), params)
    return [render_entry(row) for row in rows]


async def waitlist_of_rider(conn: AsyncConnection, rider_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """The rider's waiting-list entries on every trip, newest first, each waiting one with
    its current place in its trip's queue."""
    return await _entries(conn, "WHERE e.rider_id = %s ORDER BY e.joined_at DESC, e.id DESC LIMIT %s", (rider_id, limit))


async def waitlist_of_trip(conn: AsyncConnection, route_id: str, travel_date: date) -> list[dict[str, Any]]:
    """A trip's waiting list, every entry it ever had, in join order (the order offers
    go in), each waiting one with its current place in the queue."""
    return await _entries(conn, "WHERE e.trip_key = %s ORDER BY e.join_order", (trip_key(route_id, travel_date),))
