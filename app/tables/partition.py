"""The tables of one command partition as a batch of its records reads and writes them:
the trip states (`app.tables.store`) and the partition's hold-due index.

The hold-due index is the one entry of the `hold-due` table for the partition: trip key
-> a time at or before the trip next needs a tick's visit (a hold expires, or remembered
outcomes may be deleted), and the trips the last few ticks visited (`app.worker.ticks`).
It is decoded once, kept in memory while the partition is ours, and written at most
once per batch.
"""

from dataclasses import dataclass, field

import orjson

from app.tables.staged import Staged, Stored

# Ticks that visited trips, remembered per partition so a redelivered one can revisit the
# same trips. Redelivery reaches back to the last committed offset: a batch or two.
RECENT_TICKS = 16


@dataclass(slots=True)
class DueIndex:
    due: dict[str, int] = field(default_factory=dict)  # trip key -> ms
    visits: dict[str, list[str]] = field(default_factory=dict)  # tick id -> trip keys, oldest first

    def remember_visit(self, tick_id: str, trips: list[str]) -> None:
        self.visits[tick_id] = trips
        while len(self.visits) > RECENT_TICKS:
            del self.visits[next(iter(self.visits))]


def index_key(partition: int) -> bytes:
    return f"holds-due:{partition}".encode()


def decode_index(raw: bytes | None) -> DueIndex:
    if not raw:
        return DueIndex()
    data = orjson.loads(raw)
    return DueIndex(due=data["due"], visits=data["visits"])


def encode_index(index: DueIndex) -> bytes:
    return orjson.dumps({"due": index.due, "visits": index.visits})


@dataclass(eq=False)
class Partition:
    number: int
    trips: Staged
    holds_due: Staged
    _index: DueIndex | None = None
    _index_changed: bool = False

    @classmethod
    def over(cls, number: int, trips: Stored, holds_due: Stored) -> "Partition":
        return cls(number, Staged(trips), Staged(holds_due))

    def index(self) -> DueIndex:
        if self._index is None:
            self._index = decode_index(self.holds_due.get(index_key(self.number)))
        return self._index

    def index_changed(self) -> None:
        self._index_changed = True

    def take(self) -> tuple[dict[bytes, bytes | None], dict[bytes, bytes | None]]:
        """The writes staged since the last take: (trip-state, hold-due). The trip store
        stages its trip entries first (`TripStore.write_trips`)."""
        if self._index_changed:
            self.holds_due.put(index_key(self.number), encode_index(self.index()))
            self._index_changed = False
        return self.trips.take(), self.holds_due.take()
