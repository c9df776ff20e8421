"""From one Kafka record to the rows it contributes, and from many to one batch.

Pure (no I/O), so the parsing rules and the in-batch deduplication are testable alone.
A record that does not fit the contract raises `Invalid`: the sink dead-letters it.
The shapes below are those app.wire.outbound writes (`_booking_event`,
`_refund_required`, TRIP_UPDATED); each record is validated as a whole, from its bytes.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired

import orjson
from pydantic import Field as Constraint
from pydantic import Strict, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from app.domain.trip import TripStatus, trip_key
from app.wire.topics import CONTRACT
from app.wire.commands import SCHEMA_VERSION
from sinks.schema import (
    BOOKING_COLUMNS,
    Day,
    EntrySnapshot,
    EntryStatusName,
    Instant,
    Int4,
    Invalid,
    LocalTime,
    Positive,
    Snapshot,
    StatusName,
    Text,
    entry_values,
    entry_version,
    snapshot_values,
    snapshot_version,
    trip_key_of,
)

# The topics the sink reads, by their contract names: records are parsed by their topic's
# contract name (`parse_record`), whatever the deployment's namespace.
SUBSCRIBED = (*CONTRACT.lifecycle, CONTRACT.trip_updated, *CONTRACT.waitlist)

HISTORY_COLUMNS = ("event_id", "seq", "booking_id", "version", "from_status", "to_status", "reason", "actor",
                   "at", "command_id")
TRIP_COLUMNS = ("trip_key", "route_id", "travel_date", "timezone", "departure_time", "capacity", "currency",
                "stops", "leg_fares", "driver_id", "status", "version", "event_id")
_TRIP_VERSION = TRIP_COLUMNS.index("version")
_BOOKING_TRIP_KEY = BOOKING_COLUMNS.index("trip_key")

# -- the shapes of the records ----------------------------------------------------------

SchemaVersion = Annotated[int, Strict(), Constraint(ge=1, le=SCHEMA_VERSION)]

Transition = TypedDict("Transition", {
    "from": StatusName, "to": StatusName, "reason": Text, "actor": Text, "at": Instant, "commandId": Text,
})

BookingEvent = TypedDict("BookingEvent", {
    "v": SchemaVersion, "type": Text, "eventId": Text, "bookingId": Text, "version": Positive,
    "transitions": Annotated[list[Transition], Constraint(min_length=1)], "booking": Snapshot,
})

RefundRequiredEvent = TypedDict("RefundRequiredEvent", {
    "v": SchemaVersion, "type": Text, "eventId": Text, "bookingId": Text,
    "booking": Snapshot | None,  # null when the booking is unknown
})

Stop = TypedDict("Stop", {"stopId": Text, "offsetMinutes": Int4})

Trip = TypedDict("Trip", {
    "routeId": Text, "travelDate": Day, "timezone": Text, "departureTime": LocalTime, "capacity": Int4,
    "currency": Text, "stops": Annotated[list[Stop], Constraint(min_length=2)],
    "legFares": list[Annotated[int, Strict()]],  # minor units
    "driverId": NotRequired[Text | None],
    "status": NotRequired[Literal[tuple(s.value for s in TripStatus)]],  # type: ignore[valid-type]
})

TripEvent = TypedDict("TripEvent", {
    "v": SchemaVersion, "type": Text, "eventId": Text, "version": Positive, "trip": Trip,
})

EntryTransition = TypedDict("EntryTransition", {
    "from": EntryStatusName, "to": EntryStatusName, "reason": Text, "actor": Text, "at": Instant, "commandId": Text,
})

WaitlistEvent = TypedDict("WaitlistEvent", {
    "v": SchemaVersion, "type": Text, "eventId": Text, "entryId": Text, "version": Positive,
    "transitions": Annotated[list[EntryTransition], Constraint(min_length=1)], "entry": EntrySnapshot,
})

_BOOKING_EVENT = TypeAdapter(BookingEvent)
_WAITLIST_EVENT = TypeAdapter(WaitlistEvent)
_REFUND_REQUIRED = TypeAdapter(RefundRequiredEvent)
_TRIP_EVENT = TypeAdapter(TripEvent)


@dataclass(slots=True)
class Rows:
    """What one record contributes: at most one booking row, its history, at most one trip,
    at most one waiting-list entry."""

    booking: tuple[Any, ...] | None = None
    history: list[tuple[Any, ...]] = field(default_factory=list)
    trip: tuple[Any, ...] | None = None
    entry: tuple[Any, ...] | None = None


# -- one record -------------------------------------------------------------------------


def parse_record(topic: str, value: bytes | None) -> Rows:
    """`topic`: the contract name of the record's topic (app.wire.topics.Topics.event_type)."""
    if value is None:
        raise Invalid("empty value (tombstone)")
    if topic == CONTRACT.trip_updated:
        return trip_rows(validated(_TRIP_EVENT, topic, value))
    if topic == CONTRACT.refund_required:
        return refund_required_rows(validated(_REFUND_REQUIRED, topic, value))
    if topic in CONTRACT.waitlist:
        return waitlist_rows(validated(_WAITLIST_EVENT, topic, value))
    if topic in SUBSCRIBED:
        return booking_event_rows(validated(_BOOKING_EVENT, topic, value))
    raise Invalid(f"unexpected topic {topic}")


def validated(adapter: TypeAdapter, topic: str, value: bytes) -> dict[str, Any]:
    try:
        event = adapter.validate_json(value)
    except ValidationError as error:
        raise Invalid(describe(error)) from None
    if event["type"] != topic:
        raise Invalid(f"type {event['type']!r} on topic {topic}")
    return event


def describe(error: ValidationError) -> str:
    """The first problem, as `where: what` (the dead-letter reason)."""
    first = error.errors(include_url=False, include_input=False)[0]
    if first["type"] == "json_invalid":
        return f"not JSON: {first['msg']}"
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def booking_row(snapshot: dict[str, Any], event_id: str, booking_id: str) -> tuple[Any, ...]:
    row = snapshot_values(snapshot)
    if row[0] != booking_id:
        raise Invalid("booking.id differs from bookingId")
    return (*row, trip_key_of(row), event_id)


def booking_event_rows(event: dict[str, Any]) -> Rows:
    event_id, booking_id, version = event["eventId"], event["bookingId"], event["version"]
    row = booking_row(event["booking"], event_id, booking_id)
    if snapshot_version(row) != version:
        raise Invalid("booking.version differs from version")
    return Rows(booking=row, history=history_rows(event["transitions"], event_id, booking_id, version))


def history_rows(transitions: list[dict[str, Any]], event_id: str, booking_id: str,
                 version: int) -> list[tuple[Any, ...]]:
    """The event's transitions end at its version: the last one produced `version`."""
    first_version = version - len(transitions) + 1
    if first_version < 1:
        raise Invalid("transitions: more moves than the version")
    return [(event_id, seq, booking_id, first_version + seq, m["from"], m["to"], m["reason"], m["actor"], m["at"],
             m["commandId"]) for seq, m in enumerate(transitions)]


def refund_required_rows(event: dict[str, Any]) -> Rows:
    """Checked, but it writes nothing: it is a demand to the payments service, not a move,
    and the snapshot it carries (if the booking is known) is one a lifecycle event of the
    same version carries too. Writing it would only make the row's event_id depend on
    which of the two arrived first."""
    if event["booking"] is not None:
        booking_row(event["booking"], event["eventId"], event["bookingId"])
    return Rows()


def waitlist_rows(event: dict[str, Any]) -> Rows:
    """The entry's row as of the event (its moves are in the row's own columns; the
    waiting list keeps no separate history)."""
    snapshot = event["entry"]
    row = entry_values(snapshot)
    if row[0] != event["entryId"]:
        raise Invalid("entry.id differs from entryId")
    if entry_version(row) != event["version"]:
        raise Invalid("entry.version differs from version")
    return Rows(entry=(*row, trip_key(snapshot["routeId"], snapshot["travelDate"]), event["eventId"]))


def trip_rows(event: dict[str, Any]) -> Rows:
    trip = event["trip"]
    return Rows(trip=(
        trip_key(trip["routeId"], trip["travelDate"]),
        trip["routeId"],
        trip["travelDate"],
        trip["timezone"],
        trip["departureTime"],
        trip["capacity"],
        trip["currency"],
        json_text(trip["stops"]),
        json_text(trip["legFares"]),
        trip.get("driverId"),
        trip.get("status", TripStatus.ACTIVE.value),
        event["version"],
        event["eventId"],
    ))


def json_text(value: Any) -> str:
    """jsonb as text: COPY parses it."""
    return orjson.dumps(value).decode()


# -- many records -----------------------------------------------------------------------


@dataclass(slots=True)
class Batch:
    """The rows of many records, reduced to what one transaction must write.

    One statement cannot upsert the same key twice, and only the newest version of a
    booking or trip survives the guard anyway: keep the highest version per key here.
    """

    bookings: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    history: dict[tuple[str, int], tuple[Any, ...]] = field(default_factory=dict)
    trips: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    entries: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(self, rows: Rows) -> None:
        if rows.booking is not None:
            keep_newest(self.bookings, rows.booking, snapshot_version)
        for row in rows.history:
            self.history[(row[0], row[1])] = row
        if rows.trip is not None:
            keep_newest(self.trips, rows.trip, trip_version)
        if rows.entry is not None:
            keep_newest(self.entries, rows.entry, entry_version)

    def trip_keys(self) -> set[str]:
        """The trips whose rows or bookings this batch writes."""
        return {*self.trips, *(row[_BOOKING_TRIP_KEY] for row in self.bookings.values())}

    def advance(self, topic: str, partition: int, offset: int) -> None:
        """Records of a partition come in offset order: the last one seen is the highest."""
        self.next_offsets[(topic, partition)] = offset + 1


def keep_newest(rows: dict[str, tuple[Any, ...]], row: tuple[Any, ...],
                version_of: Callable[[tuple[Any, ...]], int]) -> None:
    """Keyed by the row's first column, the row of the highest version."""
    kept = rows.get(row[0])
    if kept is None or version_of(kept) < version_of(row):
        rows[row[0]] = row


def trip_version(row: tuple[Any, ...]) -> int:
    return row[_TRIP_VERSION]
