"""The table of trip states: one RocksDB entry per trip, keyed by trip key, on the
partition of the command topic that carries the trip's commands."""

import faust

from app.config import Settings


def trip_state_table(app: faust.App, settings: Settings) -> faust.Table:
    return app.Table(
        "trip-state",
        partitions=settings.command_partitions,  # must equal the command topic's
        # bytes means faust's raw serializer: app.tables.codec encodes the value,
        # compactly and under our control.
        key_type=bytes,
        value_type=bytes,
        options={
            # rocksdict's default is a 2 GiB cache per partition DB.
            "block_cache_size": settings.rocksdb_block_cache_bytes,
            "write_buffer_size": settings.rocksdb_write_buffer_bytes,
        },
    )
