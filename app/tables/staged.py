"""One partition of a table as the worker reads and writes it during a batch.

Reads see the batch's own writes first, then what is stored. Writes are only staged:
the caller takes them at the end of the batch, in the order they were first staged, to
put them into the changelog and then the local store (`app.worker.batch`).
"""

from typing import Protocol


class Stored(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


class Staged:
    def __init__(self, stored: Stored) -> None:
        self.stored = stored
        self.pending: dict[bytes, bytes | None] = {}  # None: deleted

    def get(self, key: bytes) -> bytes | None:
        if key in self.pending:
            return self.pending[key]
        return self.stored.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.pending[key] = value

    def delete(self, key: bytes) -> None:
        self.pending[key] = None

    def take(self) -> dict[bytes, bytes | None]:
        """The writes staged since the last take, each key once with its last value."""
        taken, self.pending = self.pending, {}
        return taken


def apply(writes: dict[bytes, bytes | None], table: dict[bytes, bytes]) -> None:
    """Writes taken from a `Staged` into a plain dict standing in for the stored table."""
    for key, value in writes.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
