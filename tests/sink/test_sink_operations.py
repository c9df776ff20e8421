"""The sink as operators meet it, through the real broker and Postgres: its metrics and
health, Postgres going away and coming back, and a rebuild of the read model from the
whole log. Deadlines are generous and only bound a wait: nothing here measures time."""

import httpx
import pytest

from app.config import get_settings
from bench.systems import our_postgres, postgres
from sinks.events import SUBSCRIBED
from sinks.migrate import migrate
from tests.sink import support
from tests.support.postgres import create_database, database_url, drop_database
from tests.support.scenario import every_kind_of_booking, many_bookings, unique_prefix
from tests.sink.support import CATCH_UP_SECONDS, assert_equals_log, wait_for_log

pytestmark = pytest.mark.integration


def status_of(sink: support.SinkProcess, path: str) -> int | None:
    """The HTTP status, or None while the sink is not serving yet."""
    try:
        return sink.get(path).status_code
    except (AssertionError, httpx.TransportError):
        return None


def every_partition_at_zero_lag(sink: support.SinkProcess) -> bool:
    try:
        lag = sink.lag()
    except (AssertionError, httpx.TransportError):
        return False
    return set(lag) == set(support.partitions_of(SUBSCRIBED)) and not any(lag.values())


def records_of(*logs) -> list:
    return [record for log in logs for record in log.records]


def test_lag_per_partition_and_health_are_served(sink_process):
    log = every_kind_of_booking(unique_prefix("monitor"))
    sink_process.start()
    support.wait_until(lambda: status_of(sink_process, "/health/ready") == 200, CATCH_UP_SECONDS, "ready")
    live = sink_process.get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "UP", "checks": {"loop": True, "postgres": True}}

    support.produce(log.records)
    wait_for_log(sink_process.database_url, log.records, log.route_id, sink_process)
    support.wait_until(lambda: every_partition_at_zero_lag(sink_process), CATCH_UP_SECONDS,
                       "a lag of 0 reported for every partition the sink reads")

    metrics = sink_process.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.text.splitlines()
               if line and not line.startswith("#") and "{" not in line}
    assert samples["openride_sink_events_total"] >= len(log.records)
    assert samples["openride_sink_postgres_up"] == 1
    assert samples["openride_sink_batch_seconds_count"] >= 1
    assert status_of(sink_process, "/nothing-here") == 404


def own_postgres() -> None:
    """Stopping Postgres is only for the one scripts/test.sh started for this run."""
    if not our_postgres(get_settings().database_url):
        pytest.skip("needs the Postgres of scripts/test.sh (OPENRIDE_HOME and PGPORT of this run)")


def test_postgres_stopped_mid_stream_then_started_the_sink_catches_up_without_loss_or_repeat(sink_process):
    own_postgres()
    url = sink_process.database_url
    prefix = unique_prefix("pgstop")
    before = [many_bookings(f"{prefix}-before-{n}", 20) for n in range(3)]
    streaming = [many_bookings(f"{prefix}-streaming-{n}", 40) for n in range(40)]
    while_down = [many_bookings(f"{prefix}-down-{n}", 20) for n in range(5)]
    everything = records_of(*before, *streaming, *while_down)
    sink_process.extra_env["SINK_BATCH_SIZE"] = "500"
    sink_process.start()
    support.produce(records_of(*before))
    wait_for_log(url, records_of(*before), prefix, sink_process)

    support.produce(records_of(*streaming))  # being written when Postgres goes away
    postgres("stop")
    try:
        support.produce(records_of(*while_down))
        support.wait_until(lambda: status_of(sink_process, "/health/ready") == 503, CATCH_UP_SECONDS,
                           "not ready while Postgres is down")
        assert status_of(sink_process, "/health/live") == 200, "waiting for Postgres is not being stuck"
        support.wait_until(lambda: sum(sink_process.lag().values()) >= len(records_of(*while_down)),
                           CATCH_UP_SECONDS, "the lag counts what Postgres has not got")
        assert sink_process.process.poll() is None
    finally:
        postgres("start")

    wait_for_log(url, everything, prefix, sink_process)
    assert_equals_log(url, everything)
    assert support.duplicate_history_rows(url) == 0
    assert "Postgres unavailable" in sink_process.log()
    support.wait_until(lambda: status_of(sink_process, "/health/ready") == 200, CATCH_UP_SECONDS, "ready again")
    support.wait_until(lambda: every_partition_at_zero_lag(sink_process), CATCH_UP_SECONDS, "lag back to 0")
    assert sink_process.stop() == 0


def test_replaying_every_topic_from_the_start_into_a_clean_database_gives_identical_rows(sink_process, tmp_path):
    prefix = unique_prefix("replay")
    logs = [every_kind_of_booking(f"{prefix}-kinds"), *(many_bookings(f"{prefix}-busy-{n}", 30) for n in range(5))]
    records = records_of(*logs)
    sink_process.start()
    support.produce(records)
    support.produce(records[::2])  # delivered again, as at-least-once producers do
    wait_for_log(sink_process.database_url, records, prefix, sink_process)
    assert_equals_log(sink_process.database_url, records)
    live = support.dump_of_routes(sink_process.database_url, prefix)

    name = create_database()
    clean = database_url(name)
    replay = support.SinkProcess(clean, tmp_path / "replay.log")
    try:
        migrate(clean)  # no offsets stored: every partition is read from its first record
        replay.start()
        wait_for_log(clean, records, prefix, replay)
        support.wait_until(lambda: every_partition_at_zero_lag(replay), CATCH_UP_SECONDS, "the whole log replayed")
        assert "(0 with stored offsets)" in replay.log()
        assert replay.stop() == 0
        assert support.dump_of_routes(clean, prefix) == live
        assert_equals_log(clean, records)
        assert support.duplicate_history_rows(clean) == 0
    finally:
        replay.ensure_stopped()
        drop_database(name)
