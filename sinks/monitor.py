"""What the sink tells operators, on a small HTTP server of its own
(settings.sink_http_host / sink_http_port):

- `GET /metrics`: Prometheus text. `openride_sink_lag{topic,partition}` is the number of
  records on the partition after the position Postgres holds (`sink_offsets`), so it
  counts what is not yet in the read model, including a batch being written or waiting
  for Postgres. The log end comes from the consumer's fetch responses (no broker round
  trip), read by the sink's loop every REFRESH_SECONDS, also while it waits for Postgres
  (the client keeps prefetching in the background until its queue is full).
- `GET /health/live`: 200 while the sink's loop turns (it also turns while it waits for
  Postgres with backoff); 503 if it has been stuck longer than STALL_SECONDS (a call
  that never returns), so an orchestrator restarts it.
- `GET /health/ready`: 200 when live and the last Postgres operation succeeded; the sink
  pings Postgres when idle, so an outage shows even when no events arrive.

The server (app.monitoring) runs in a daemon thread and never calls the consumer: a call
from another thread blocks while the loop is inside consume() (confluent-kafka 2.16). The
loop shares only the few values below with it.
"""

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.monitoring import SnapshotGauge

STALL_SECONDS = 120.0
REFRESH_SECONDS = 0.25  # a read per partition each time: often enough for a lag graph, cheap enough
Partition = tuple[str, int]
# (low, high) watermarks of a partition as last seen by the consumer; negative when unknown.
Watermarks = Callable[[Partition], tuple[int, int]]


def lag_per_partition(positions: dict[Partition, int | None], watermarks: Watermarks) -> Iterator[tuple[Partition, int]]:
    """`positions`: the next offset Postgres holds per assigned partition, None for one
    never written (read from its start). Partitions whose watermarks are not known yet are
    left out rather than reported as 0."""
    for partition, position in positions.items():
        low, high = watermarks(partition)
        start = low if position is None else position
        if high >= 0 and start >= 0:
            yield partition, max(high - start, 0)


class Monitor:
    """Counters the sink updates, and the state its health answers depend on."""

    def __init__(self, watermarks: Watermarks) -> None:
        self.watermarks = watermarks
        self.registry = CollectorRegistry()
        self.events = Counter("openride_sink_events", "Records consumed and settled (written or dead-lettered)",
                              registry=self.registry)
        self.dead_letters = Counter("openride_sink_dead_letters", "Records sent to the dead-letter topic",
                                    registry=self.registry)
        self.batch_seconds = Histogram("openride_sink_batch_seconds", "Time to settle one batch, fetch included",
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                       registry=self.registry)
        self.postgres_up = Gauge("openride_sink_postgres_up", "1 if the last Postgres operation succeeded",
                                 registry=self.registry)
        # Computed at scrape time, so the gauge is as fresh as the consumer's watermarks.
        self.registry.register(SnapshotGauge("openride_sink_lag", "Records on the partition not yet written to Postgres",
                                             ["topic", "partition"], self.lag))
        self._lock = threading.Lock()
        self._positions: dict[Partition, int | None] = {}
        self._log_ends: dict[Partition, tuple[int, int]] = {}
        self._refreshed = 0.0
        self._heartbeat = time.monotonic()
        self._postgres_ok = False

    # -- written by the sink's loop -----------------------------------------------------

    def beat(self) -> None:
        """The loop turns; every REFRESH_SECONDS it also takes the log ends the consumer has seen."""
        self._heartbeat = time.monotonic()
        if self._heartbeat - self._refreshed >= REFRESH_SECONDS:
            self._refreshed = self._heartbeat
            with self._lock:
                partitions = list(self._positions)
            log_ends = {partition: self.watermarks(partition) for partition in partitions}
            with self._lock:
                self._log_ends = log_ends

    def postgres(self, ok: bool) -> None:
        self._postgres_ok = ok
        self.postgres_up.set(1 if ok else 0)

    def assigned(self, positions: dict[Partition, int | None]) -> None:
        with self._lock:
            self._positions.update(positions)

    def revoked(self, partitions: list[Partition]) -> None:
        with self._lock:
            for partition in partitions:
                self._positions.pop(partition, None)

    def written(self, next_offsets: dict[Partition, int]) -> None:
        with self._lock:
            for partition, offset in next_offsets.items():
                if partition in self._positions:
                    self._positions[partition] = offset

    # -- read by the HTTP thread --------------------------------------------------------

    def lag(self) -> list[tuple[Partition, int]]:
        with self._lock:
            positions, log_ends = dict(self._positions), self._log_ends
        return list(lag_per_partition(positions, lambda partition: log_ends.get(partition, (-1, -1))))

    def health(self) -> tuple[bool, bool, dict[str, object]]:
        """(live, ready, checks)."""
        live = time.monotonic() - self._heartbeat < STALL_SECONDS
        checks = {"loop": live, "postgres": self._postgres_ok}
        return live, all(checks.values()), checks
