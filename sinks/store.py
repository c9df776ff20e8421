"""Writing a batch to Postgres: one transaction for its rows and its offsets.

Rows are COPYed into temporary tables, then merged with one statement per table: far
fewer round trips than a statement per row. The merge is what makes the sink
order-independent and replay-safe:
- a booking or trip row only moves forward (`WHERE stored.version < incoming.version`),
- a history row is keyed by (event id, position) and inserted at most once,
so applying any set of events, in any order, any number of times, ends in the same rows.

Rows are merged in key order, so that two sinks (replicas owning other partitions, or a
zombie during a rebalance) touching the same bookings lock them in the same order and
wait for each other instead of deadlocking.
"""

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from sinks.events import HISTORY_COLUMNS, TRIP_COLUMNS, Batch
from sinks.schema import BOOKING_COLUMNS

# Created once per connection; emptied by every commit, so each batch starts clean.
_STAGING = {
    "bookings": "staged_bookings",
    "booking_history": "staged_history",
    "trips": "staged_trips",
}


def _columns(names: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def _merge_statement(table: str, columns: Sequence[str], key: str) -> sql.Composed:
    """Upsert from the staging table, keeping the stored row unless the staged one is newer."""
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns if c != key
    )
    return sql.SQL(
        "INSERT INTO {table} ({cols}) SELECT {cols} FROM {staged} ORDER BY {key} "
        "ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE {table}.version < EXCLUDED.version"
    ).format(table=sql.Identifier(table), cols=_columns(columns), staged=sql.Identifier(_STAGING[table]),
             key=sql.Identifier(key), updates=updates)


MERGE_BOOKINGS = _merge_statement("bookings", BOOKING_COLUMNS, "id")
MERGE_TRIPS = _merge_statement("trips", TRIP_COLUMNS, "trip_key")
INSERT_HISTORY = sql.SQL(
    "INSERT INTO booking_history ({cols}) SELECT {cols} FROM {staged} ORDER BY event_id, seq ON CONFLICT DO NOTHING"
).format(
    cols=_columns(HISTORY_COLUMNS), staged=sql.Identifier(_STAGING["booking_history"]))
# A booking shows (and grants reads to) its trip's current driver: the trip row, kept by
# trip.updated with its own version guard, is the truth; a booking row's copy is synced
# to it whenever a batch touches the trip or its bookings, whatever arrived first.
# Rows are locked in id order, as the merges do.
SYNC_DRIVERS = """
UPDATE bookings AS b SET driver_id = stale.driver_id
FROM (SELECT booked.id, trip.driver_id
      FROM bookings AS booked JOIN trips AS trip
        ON booked.route_id = trip.route_id AND booked.travel_date = trip.travel_date
      WHERE trip.trip_key = ANY(%s) AND booked.driver_id IS DISTINCT FROM trip.driver_id
      ORDER BY booked.id FOR UPDATE OF booked) AS stale
WHERE b.id = stale.id
"""
UPSERT_OFFSET = (
    "INSERT INTO sink_offsets (topic, partition, next_offset) VALUES (%s, %s, %s) "
    "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()"
)


def connect(database_url: str) -> psycopg.Connection:
    conn = psycopg.connect(database_url, autocommit=False, application_name="openride-sink")
    create_staging_tables(conn)
    return conn


def create_staging_tables(conn: psycopg.Connection) -> None:
    with conn.transaction():
        for table, staged in _STAGING.items():
            conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {staged} (LIKE {table}) ON COMMIT DELETE ROWS").format(
                staged=sql.Identifier(staged), table=sql.Identifier(table)))


def _copy(cur: psycopg.Cursor, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> None:
    statement = sql.SQL("COPY {staged} ({cols}) FROM STDIN").format(
        staged=sql.Identifier(_STAGING[table]), cols=_columns(columns))
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def write_batch(conn: psycopg.Connection, batch: Batch) -> None:
    """All or nothing: the rows of the batch and the offsets after it."""
    with conn.transaction(), conn.cursor() as cur:
        if batch.bookings:
            _copy(cur, "bookings", BOOKING_COLUMNS, batch.bookings.values())
            cur.execute(MERGE_BOOKINGS)
        if batch.history:
            _copy(cur, "booking_history", HISTORY_COLUMNS, batch.history.values())
            cur.execute(INSERT_HISTORY)
        if batch.trips:
            _copy(cur, "trips", TRIP_COLUMNS, batch.trips.values())
            cur.execute(MERGE_TRIPS)
        if batch.trips or batch.bookings:
            cur.execute(SYNC_DRIVERS, (sorted(batch.trip_keys()),))
        cur.executemany(UPSERT_OFFSET, [(topic, partition, offset)
                                        for (topic, partition), offset in sorted(batch.next_offsets.items())])


def ping(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT 1")


def stored_offsets(conn: psycopg.Connection, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The next offset to read for each of the given partitions that has one."""
    wanted = list(partitions)
    if not wanted:
        return {}
    topics = [t for t, _ in wanted]
    numbers = [p for _, p in wanted]
    with conn.transaction():
        rows = conn.execute(
            "SELECT o.topic, o.partition, o.next_offset FROM sink_offsets o "
            "JOIN unnest(%s::text[], %s::int[]) AS w(topic, partition) USING (topic, partition)",
            (topics, numbers),
        ).fetchall()
    return {(topic, partition): offset for topic, partition, offset in rows}
