"""Read-side queries for the gateway, on the tables the sink writes.

Each takes a `psycopg.AsyncConnection` (from the gateway's pool) and returns bookings in
exactly the shape of the events' snapshot (app.models.outbound.snapshot): same keys in
the same order, money as "1234.50", instants as "2025-01-31T08:00:00.000Z". Rows are
read as tuples whatever row factory the pool sets, and turned into dicts by the one
mapping in sinks.schema.

Ownership is the caller's business: these return what exists; the gateway answers 404
for a booking that is not the caller's.
"""

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row

from sinks.schema import SNAPSHOT_COLUMNS, render_booking, render_instant

LIVE_STATUSES = ("CONFIRMED", "CHECKED_IN")  # what "upcoming" shows

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
