"""The one mapping between the snapshots of the events (camelCase JSON, defined by
app.wire.contract's BookingSnapshot and EntrySnapshot) and the columns of the `bookings` and
`waitlist_entries` tables.

Each field names its snapshot key, its column and its kind. A kind says how a JSON value
is validated on the way in (a pydantic type: the sink validates whole records in
pydantic's compiled core, which is most of its CPU) and how a column value is rendered
on the way out, so the write side and the read side can never drift apart.

Validation is strict: a value the table could not take (text with NUL, money beyond
numeric(14,2), an integer beyond int4) must be caught here, where it dead-letters one
record, not in Postgres, where it would fail a whole batch.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, AwareDatetime, BaseModel, Strict, StringConstraints
from pydantic.alias_generators import to_snake
from pydantic import Field as Constraint
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from app.domain.booking import Status
from app.domain.money import format_minor
from app.domain.waitlist import EntryStatus
from app.domain.trip import trip_key
from app.wire.contract import BookingSnapshot
from app.wire.contract import EntrySnapshot as EntrySnapshotShape
from app.wire.outbound import iso

INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


class Invalid(ValueError):
    """A record that does not fit the contract; the message names the field."""


def _local_time(moment: time) -> time:
    if moment.tzinfo is not None:
        raise ValueError("expected a local time without offset")
    return moment


# -- how values are validated on the way in ---------------------------------------------

Text = Annotated[str, Strict(), StringConstraints(pattern=r"^[^\x00]*$")]  # Postgres text cannot hold NUL
Int4 = Annotated[int, Strict(), Constraint(ge=INT4_MIN, le=INT4_MAX)]
Positive = Annotated[int, Strict(), Constraint(ge=1, le=INT4_MAX)]
StatusName = Literal[tuple(s.value for s in Status)]  # type: ignore[valid-type]
EntryStatusName = Literal[tuple(s.value for s in EntryStatus)]  # type: ignore[valid-type]
# Kept as the validated string: Postgres parses it into numeric(14,2) exactly.
Money = Annotated[str, Strict(), StringConstraints(pattern=r"^-?\d{1,12}\.\d{2}$")]
Instant = Annotated[AwareDatetime, Strict()]
Day = Annotated[date, Strict()]
LocalTime = Annotated[time, Strict(), AfterValidator(_local_time)]
SeatNumbers = Annotated[list[Int4], Constraint(min_length=1)]
Seats = list[Int4]  # an entry's offered seats: none until an offer


# -- how column values are rendered on the way out --------------------------------------


def epoch_ms(moment: datetime) -> int:
    """Integer arithmetic: float timestamps could be off by one millisecond."""
    return (moment - EPOCH) // ONE_MS


def render_instant(moment: datetime | None) -> str | None:
    return iso(epoch_ms(moment)) if moment is not None else None


def render_money(amount: Decimal) -> str:
    return format_minor(int(amount.scaleb(2)))


def render_time(moment: time) -> str:
    return moment.strftime("%H:%M:%S")


def same(value: Any) -> Any:
    return value


# -- the mapping ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    type: Any  # the pydantic type a JSON value must satisfy
    render: Callable[[Any], Any]  # column value -> JSON value


TEXT = Kind(Text, same)
INT = Kind(Int4, same)
VERSION = Kind(Positive, same)
STATUS = Kind(StatusName, same)
MONEY = Kind(Money, render_money)
INSTANT = Kind(Instant, render_instant)
DATE = Kind(Day, date.isoformat)
TIME = Kind(LocalTime, render_time)
SEATS = Kind(SeatNumbers, list)
OFFERED_SEATS = Kind(Seats, list)
ENTRY_STATUS = Kind(EntryStatusName, same)


@dataclass(frozen=True, slots=True)
class Field:
    key: str  # in the snapshot
    column: str  # in `bookings`
    kind: Kind
    nullable: bool = False  # the key is always present; its value may be null

    @property
    def type(self) -> Any:
        return self.kind.type | None if self.nullable else self.kind.type

    def render(self, value: Any) -> Any:
        return None if value is None else self.kind.render(value)


def fields_of(shape: type[BaseModel], kinds: dict[str, Kind]) -> tuple[Field, ...]:
    """The columns of a snapshot defined by its contract model (app.wire.contract), in its
    order, which is the order the read side renders keys in: each key's column is its
    snake_case name, nullable where the contract allows null, text unless `kinds` says."""
    unknown = set(kinds) - set(shape.model_fields)
    assert not unknown, f"kinds for keys {shape.__name__} does not have: {sorted(unknown)}"
    return tuple(Field(key, to_snake(key), kinds.get(key, TEXT), nullable=type(None) in get_args(info.annotation))
                 for key, info in shape.model_fields.items())


BOOKING_FIELDS = fields_of(BookingSnapshot, {
    "travelDate": DATE, "departureTime": TIME, "departureAt": INSTANT, "seatsBooked": INT, "seatNumbers": SEATS,
    "pricePerSeat": MONEY, "fare": MONEY, "platformFee": MONEY, "totalPrice": MONEY, "status": STATUS,
    "cancelledAt": INSTANT, "refundAmount": MONEY, "createdAt": INSTANT, "updatedAt": INSTANT, "expiresAt": INSTANT,
    "confirmedAt": INSTANT, "version": VERSION,
})

SNAPSHOT_COLUMNS: tuple[str, ...] = tuple(f.column for f in BOOKING_FIELDS)
# What the sink writes: the snapshot, then where it came from.
BOOKING_COLUMNS: tuple[str, ...] = (*SNAPSHOT_COLUMNS, "trip_key", "event_id")

# A validated snapshot: every key required (outbound.snapshot always writes them all),
# keys the mapping does not know ignored, so the processor may add fields first.
Snapshot = TypedDict("Snapshot", {f.key: f.type for f in BOOKING_FIELDS})  # type: ignore[misc]
snapshot_values: Callable[[dict[str, Any]], tuple[Any, ...]] = itemgetter(*(f.key for f in BOOKING_FIELDS))

_VERSION_INDEX = SNAPSHOT_COLUMNS.index("version")
_ROUTE_INDEX = SNAPSHOT_COLUMNS.index("route_id")
_DATE_INDEX = SNAPSHOT_COLUMNS.index("travel_date")

ENTRY_FIELDS = fields_of(EntrySnapshotShape, {
    "travelDate": DATE, "seatsBooked": INT, "joinOrder": VERSION, "position": VERSION, "status": ENTRY_STATUS,
    "seatNumbers": OFFERED_SEATS, "joinedAt": INSTANT, "updatedAt": INSTANT, "offeredAt": INSTANT,
    "offerExpiresAt": INSTANT, "version": VERSION,
})
ENTRY_SNAPSHOT_COLUMNS: tuple[str, ...] = tuple(f.column for f in ENTRY_FIELDS)
ENTRY_COLUMNS: tuple[str, ...] = (*ENTRY_SNAPSHOT_COLUMNS, "trip_key", "event_id")
EntrySnapshot = TypedDict("EntrySnapshot", {f.key: f.type for f in ENTRY_FIELDS})  # type: ignore[misc]
entry_values: Callable[[dict[str, Any]], tuple[Any, ...]] = itemgetter(*(f.key for f in ENTRY_FIELDS))
_ENTRY_VERSION_INDEX = ENTRY_SNAPSHOT_COLUMNS.index("version")


def snapshot_version(row: tuple[Any, ...]) -> int:
    return row[_VERSION_INDEX]


def entry_version(row: tuple[Any, ...]) -> int:
    return row[_ENTRY_VERSION_INDEX]


def trip_key_of(row: tuple[Any, ...]) -> str:
    return trip_key(row[_ROUTE_INDEX], row[_DATE_INDEX])


def render_booking(row: tuple[Any, ...]) -> dict[str, Any]:
    """A row selected as SNAPSHOT_COLUMNS, in the exact shape of the event's snapshot."""
    return render(BOOKING_FIELDS, row)


def render_entry(row: tuple[Any, ...]) -> dict[str, Any]:
    """A row selected as ENTRY_SNAPSHOT_COLUMNS, in the shape of the event's snapshot."""
    return render(ENTRY_FIELDS, row)


def render(fields: tuple[Field, ...], row: tuple[Any, ...]) -> dict[str, Any]:
    return {f.key: f.render(value) for f, value in zip(fields, row, strict=True)}
