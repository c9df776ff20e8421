"""The read side: bookings as the sink keeps them in Postgres (sinks/queries.py).

Reads lag the command path by the sink's batch interval: a booking just created may be
missing here for a moment (the 201 of POST /v1/bookings already carried it)."""

from typing import Any

import psycopg

from gateway.errors import unavailable
from sinks import queries


class Reads:
    """The read queries, bound to one request's connection. A connection lost mid-query
    is a 503 with Retry-After, like a pool that cannot connect (gateway.deps.get_db)."""

    def __init__(self, connection: psycopg.AsyncConnection):
        self.connection = connection

    async def booking_by_id(self, booking_id: str) -> dict[str, Any] | None:
        try:
            return await queries.booking_by_id(self.connection, booking_id)
        except psycopg.OperationalError as error:
            raise database_unavailable() from error


def database_unavailable() -> Exception:
    return unavailable("database_unavailable", "The bookings database is unavailable; retry.")
