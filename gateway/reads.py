"""The read side: bookings and trips as the sink keeps them in Postgres (gateway/queries.py).

Reads lag the command path by the sink's batch interval: a booking just created may be
missing here for a moment (the 201 of POST /v1/bookings already carried it)."""

from collections.abc import Awaitable
from datetime import date, datetime
from typing import Any, TypeVar

import psycopg

from gateway.errors import database_unavailable
from gateway import queries

T = TypeVar("T")


class Reads:
    """The read queries, bound to one request's connection. A connection lost mid-query
    is a 503 with Retry-After, like a pool that cannot connect (gateway.deps.get_db)."""

    def __init__(self, connection: psycopg.AsyncConnection):
        self.connection = connection

    async def booking_by_id(self, booking_id: str) -> dict[str, Any] | None:
        return await guarded(queries.booking_by_id(self.connection, booking_id))

    async def booking_by_reference(self, reference: str, rider_id: str | None) -> dict[str, Any] | None:
        return await guarded(queries.booking_by_reference(self.connection, reference, rider_id))

    async def bookings_of_rider(self, rider_id: str, status: str | None, page: int,
                                size: int) -> tuple[list[dict[str, Any]], int]:
        return await guarded(queries.bookings_of_rider(self.connection, rider_id, status, page, size))

    async def upcoming_of_rider(self, rider_id: str, now: datetime) -> list[dict[str, Any]]:
        return await guarded(queries.upcoming_of_rider(self.connection, rider_id, now))

    async def search(self, filters: queries.SearchFilters, page: int, size: int) -> tuple[list[dict[str, Any]], int]:
        return await guarded(queries.search_bookings(self.connection, filters, page, size))

    async def statistics(self, first_day: date, last_day: date) -> dict[str, Any]:
        return await guarded(queries.booking_statistics(self.connection, first_day, last_day))

    async def trip(self, route_id: str, travel_date: date) -> dict[str, Any] | None:
        return await guarded(queries.trip_by_key(self.connection, route_id, travel_date))

    async def manifest(self, route_id: str, travel_date: date) -> list[dict[str, Any]]:
        return await guarded(queries.manifest_bookings(self.connection, route_id, travel_date))

    async def waitlist_of_rider(self, rider_id: str) -> list[dict[str, Any]]:
        return await guarded(queries.waitlist_of_rider(self.connection, rider_id))

    async def waitlist_of_trip(self, route_id: str, travel_date: date) -> list[dict[str, Any]]:
        return await guarded(queries.waitlist_of_trip(self.connection, route_id, travel_date))


async def guarded(query: Awaitable[T]) -> T:
    try:
        return await query
    except psycopg.OperationalError as error:
        raise database_unavailable() from error
