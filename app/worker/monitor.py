"""What a worker tells operators, on an HTTP server of its own (app.monitoring, at
WORKER_HTTP_HOST:WORKER_HTTP_PORT, 9109 by default):

- `GET /metrics` (Prometheus):
  - `openride_worker_commands_total{type,outcome}`: records of the command topic handled,
    by command type (`tick` for a clock tick, `unknown` for a dead-lettered record) and
    outcome (`accepted`, `rejected`, `duplicate`, `dead_letter`); commands/s is its rate;
  - `openride_worker_handle_seconds`: time to handle one record in its batch (decide,
    stage the table writes, render the events and reply), on the worker's event loop; the
    batch then waits for the broker once for all its records (app.worker.batch);
  - `openride_worker_batch_records` and `openride_worker_batch_seconds`: the records of
    each batch, and its time from the first record handled to every output acknowledged;
  - `openride_worker_command_wait_seconds`: from the broker appending a command to the
    worker starting on it: queueing, lag and rebalances, as a client feels them;
  - `openride_worker_lag{topic,partition}`: records on an owned command partition after
    the last one handled (a partition shows once its first record since the assignment
    has arrived);
  - `openride_worker_partitions{role}`: command partitions owned (`active`) and table
    partitions kept warm for another worker (`standby`);
  - `openride_worker_recovering`, `openride_worker_recovery_remaining_records{role}`,
    `openride_worker_recovery_seconds` (the recovery under way, else the last one) and
    `openride_worker_recovery_loaded_records_total` (changelog records this process
    loaded into its local store in bulk: all of them on an empty data dir, the tail its
    store lacked after a crash; app.worker.faust_app.BulkRecovery): recovery progress;
  - `openride_worker_rebalances_total`, `openride_worker_dead_letters_total{code}`,
    `openride_worker_send_errors_total` (records the producer failed to deliver);
- `GET /health/live`: 200 while the event loop turns (a timer of this monitor beats on
  it every second; recovering and rebalancing keep it turning); 503 once it has not for
  STALL_SECONDS, so an orchestrator restarts a hung worker;
- `GET /health/ready`: 200 once the group has given this worker its partitions and their
  tables are recovered, until the next rebalance starts: it is handling commands.

faust calls a sensor (`faust.Sensor`) at rebalances and failed sends, and starts it with
the app, before recovery; the worker's batches call `handled` for each record, `batched`
for each batch and `dead_lettered` for each dead letter (app.worker.batch).
"""

import time
from collections.abc import Callable, Mapping
from typing import Any

import faust
from mode import Service
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.worker.processor import Handled, Record
from app.config import Settings
from app.wire import deadletters
from app.wire.topics import TICK_KEY, Topics
from app.monitoring import SnapshotGauge, serve


REFRESH_SECONDS = 1.0
STALL_SECONDS = 60.0
Partition = tuple[str, int]
# The next command offset to handle, per partition seen since its assignment (app.worker.ordering).
Positions = Callable[[], Mapping[Partition, int]]

HANDLE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
BATCH_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def outcome_of(record: Record, handled: Handled | None) -> tuple[str, str]:
    """(type, outcome) of a handled record; `handled` None: a tick, or a dead-lettered record."""
    if record.key == TICK_KEY:
        return "tick", "accepted"
    if handled is None:
        return "unknown", "dead_letter"
    outcome = handled.outcome
    if outcome.duplicate:
        return handled.command_type, "duplicate"
    return handled.command_type, "accepted" if outcome.accepted else "rejected"


class WorkerMonitor(faust.Sensor):
    def __init__(self, app: faust.App, settings: Settings, positions: Positions, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.settings = settings
        self.commands_topic = Topics.of(settings).commands
        self.positions = positions
        self.registry = CollectorRegistry()
        self.commands = Counter("openride_worker_commands", "Command records handled", ["type", "outcome"],
                                registry=self.registry)
        self.handle_seconds = Histogram("openride_worker_handle_seconds", "Time to handle one command record",
                                        buckets=HANDLE_BUCKETS, registry=self.registry)
        self.batch_records = Histogram("openride_worker_batch_records", "Command records per batch",
                                       buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("openride_worker_batch_seconds",
                                       "From a batch's first record handled to its outputs acknowledged",
                                       buckets=BATCH_SECONDS_BUCKETS, registry=self.registry)
        self.wait_seconds = Histogram("openride_worker_command_wait_seconds",
                                      "From the broker appending a command to the worker starting on it",
                                      buckets=WAIT_BUCKETS, registry=self.registry)
        self.dead_letters = Counter("openride_worker_dead_letters", "Records sent to the dead-letter topic",
                                    ["code"], registry=self.registry)
        self.rebalances = Counter("openride_worker_rebalances", "Group rebalances this worker took part in",
                                  registry=self.registry)
        self.send_errors = Counter("openride_worker_send_errors", "Records the producer failed to deliver",
                                   registry=self.registry)
        self.partitions = Gauge("openride_worker_partitions", "Partitions held", ["role"], registry=self.registry)
        self.recovering = Gauge("openride_worker_recovering", "1 while tables are recovered from the changelogs",
                                registry=self.registry)
        self.recovery_remaining = Gauge("openride_worker_recovery_remaining_records",
                                        "Changelog records left to read into the tables", ["role"],
                                        registry=self.registry)
        self.recovery_seconds = Gauge("openride_worker_recovery_seconds",
                                      "Duration of the recovery under way, else of the last one",
                                      registry=self.registry)
        self.loaded_records = Gauge("openride_worker_recovery_loaded_records_total",
                                    "Changelog records loaded into the local store in bulk by this process",
                                    registry=self.registry)
        self.ready_gauge = Gauge("openride_worker_ready", "1 while partitions are assigned and recovered",
                                 registry=self.registry)
        self._lag: dict[Partition, int] = {}  # the last snapshot's
        self.registry.register(SnapshotGauge("openride_worker_lag",
                                              "Records on an owned command partition not handled yet",
                                              ["topic", "partition"], lambda: self._lag.items()))
        self._counted: dict[tuple[str, str], Any] = {}
        self._heartbeat = time.monotonic()
        self._rebalances_ended = 0
        self._server: Any = None

    # -- called by the worker, per record ------------------------------------------------

    def handled(self, record: Record, handled: Handled | None, seconds: float) -> None:
        labels = outcome_of(record, handled)
        counted = self._counted.get(labels)
        if counted is None:  # the child per label pair, looked up once (a batch calls this per record)
            counted = self._counted[labels] = self.commands.labels(*labels)
        counted.inc()
        self.handle_seconds.observe(seconds)
        self.wait_seconds.observe(max(time.time() - record.timestamp_ms / 1000, 0.0))

    def batched(self, records: int, seconds: float) -> None:
        self.batch_records.observe(records)
        self.batch_seconds.observe(seconds)

    def dead_lettered(self, headers: Mapping[str, bytes]) -> None:
        self.dead_letters.labels(headers.get(deadletters.CODE, b"unknown").decode(errors="replace")).inc()

    # -- faust's sensor callbacks --------------------------------------------------------

    def on_rebalance_start(self, app: faust.App) -> dict:
        self.rebalances.inc()
        return {}

    def on_rebalance_end(self, app: faust.App, state: dict) -> None:
        self._rebalances_ended += 1

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        self.send_errors.inc()

    # -- the service: HTTP server, and a snapshot of the loop's state every second -------

    async def on_start(self) -> None:
        self._server = serve(self.registry, self.health, self.settings.worker_http_host,
                             self.settings.worker_http_port, "worker")

    async def on_stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @Service.timer(REFRESH_SECONDS)
    async def _refresh(self) -> None:
        self._heartbeat = time.monotonic()
        self.snapshot()

    def snapshot(self) -> None:
        consumer, recovery = self.app.consumer, self.app.tables.recovery
        owned = [tp for tp in consumer.assignment() if tp.topic == self.commands_topic]
        positions = self.positions()
        lag = {}
        for tp in owned:
            highwater, position = consumer.highwater(tp), positions.get((tp.topic, tp.partition))
            if highwater is not None and position is not None:
                lag[tp.topic, tp.partition] = max(highwater - position, 0)
        self._lag = lag
        self.partitions.labels("active").set(len(owned))
        self.partitions.labels("standby").set(len({tp.partition for tp in recovery.standby_tps}))
        loading = recovery.progress  # BulkRecovery's
        self.recovering.set(1 if recovery.in_recovery else 0)
        self.recovery_remaining.labels("active").set(recovery.active_remaining_total() + loading.records_total
                                                     - loading.records_loaded)
        self.loaded_records.set(loading.records_loaded)
        self.recovery_remaining.labels("standby").set(recovery.standby_remaining_total())
        self.recovery_seconds.set(recovery_duration(recovery, time.monotonic()))
        self.ready_gauge.set(1 if self.health()[1] else 0)

    # -- read by the HTTP thread ---------------------------------------------------------

    def health(self) -> tuple[bool, bool, dict[str, object]]:
        live = time.monotonic() - self._heartbeat < STALL_SECONDS
        checks: dict[str, object] = {
            "loop": live,
            "assigned": self._rebalances_ended > 0,
            "recovered": not self.app.rebalancing and self.app.tables.recovery.completed.is_set(),
        }
        return live, all(checks.values()), checks


def recovery_duration(recovery: Any, now: float) -> float:
    """faust's Recovery stamps both ends (monotonic); before the first, 0."""
    started, ended = recovery._recovery_started_at, recovery._recovery_ended_at
    if started is None:
        return 0.0
    if recovery.in_recovery or ended is None or ended < started:
        return now - started
    return ended - started
