"""The processor's tables. Each is partitioned like the command topic, and written only
by the batches of that topic's records (app.worker.batch), so an entry lives on (and its
changelog record goes to) the partition of the commands that change it. faust declares
them, assigns their partitions, keeps their standby replicas and recovers them; the
worker reads and writes their partitions' RocksDB itself (app.worker.local)."""

from typing import Any

import faust

from app.config import Settings

TRIP_STATE = "trip-state"
HOLD_DUE = "hold-due"


def trip_state_table(app: faust.App, settings: Settings) -> faust.Table:
    """One RocksDB entry per trip, keyed by trip key: its state (app.tables.codec)."""
    return _table(app, settings, TRIP_STATE)


def hold_due_table(app: faust.App, settings: Settings) -> faust.Table:
    """One entry per partition: the trips due a tick's visit and when (app.tables.partition)."""
    return _table(app, settings, HOLD_DUE)


def _table(app: faust.App, settings: Settings, name: str) -> faust.Table:
    return app.Table(
        name,
        partitions=settings.command_partitions,  # must equal the command topic's
        # bytes means faust's raw serializer: the value is encoded by our own code,
        # compactly and under our control.
        key_type=bytes,
        value_type=bytes,
        options=rocksdb_options(settings),
    )


def rocksdb_options(settings: Settings) -> dict[str, Any]:
    # rocksdict's default is a 2 GiB block cache per partition DB.
    return {
        "block_cache_size": settings.rocksdb_block_cache_bytes,
        "write_buffer_size": settings.rocksdb_write_buffer_bytes,
    }
