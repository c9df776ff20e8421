"""`python -m sinks.main` as a process, through the real broker and Postgres.

The topics are shared with other engineers: every test uses its own route ids, its own
database and consumer group, starts the sink at the current end of the log, and asserts
only about its own bookings.
"""

import re

import orjson
import psycopg
import pytest

from app.config import get_settings
from app.wire.topics import CONTRACT
from sinks.migrate import migrate
from tests.sink import support
from tests.support.postgres import create_database, database_url, drop_database, rows, scalar
from tests.support.scenario import TripLog, every_kind_of_booking, expected_bookings, many_bookings, unique_prefix
from tests.sink.support import CATCH_UP_SECONDS, assert_equals_log, progress, wait_for_log

pytestmark = pytest.mark.integration


def test_events_on_the_topics_end_up_in_postgres_and_sigterm_stops_cleanly(sink_process):
    log = every_kind_of_booking(unique_prefix("e2e"))
    sink_process.start()
    support.produce(log.records)

    wait_for_log(sink_process.database_url, log.records, log.route_id, sink_process)
    assert_equals_log(sink_process.database_url, log.records)
    assert scalar(sink_process.database_url, "SELECT version FROM trips WHERE route_id = %s",
                  (log.route_id,)) == 1
    assert sink_process.stop() == 0
    assert "sink stopped" in sink_process.log()


def test_the_sink_starts_where_postgres_says_not_at_the_log_start(database, kafka_topics, tmp_path):
    """Two payment_failed events of one booking share a partition (same topic and key):
    the first is produced before the stored offsets, the second after. A sink that
    honours the stored position writes only the second."""
    log = TripLog(unique_prefix("position"))
    booking_id = log.book("rider-position")
    log.fail_payment(booking_id)
    log.fail_payment(booking_id)
    first_failure, second_failure = (r for r in log.records if r[0] == CONTRACT.payment_failed)
    support.produce([first_failure])
    support.start_sink_at_log_end(database)
    support.produce([second_failure])
    sink = support.SinkProcess(database, tmp_path / "sink.log")
    try:
        sink.start()
        support.wait_until(lambda: progress(database, log.route_id)[1] > 0, CATCH_UP_SECONDS, "second applied")
        assert sink.stop() == 0
    finally:
        sink.ensure_stopped()
    _, moves = support.read_back(database, [booking_id])
    assert [m["version"] for m in moves[booking_id]] == [3]


def test_a_booking_confirmed_before_it_was_created_ends_right(sink_process):
    log = TripLog(unique_prefix("late-created"))
    booking_id = log.book("rider-late")
    log.pay(booking_id)
    trip, created, initiated, confirmed = log.records
    url = sink_process.database_url
    sink_process.start()

    support.produce([trip, confirmed])
    support.wait_until(lambda: progress(url, log.route_id) == (1, 2), CATCH_UP_SECONDS, "confirmed applied")
    support.produce([created, initiated])
    support.wait_until(lambda: progress(url, log.route_id)[1] == 4, CATCH_UP_SECONDS, "all history applied")

    found, moves = support.read_back(url, [booking_id])
    assert found[booking_id]["status"] == "CONFIRMED" and found[booking_id]["version"] == 4
    assert found == expected_bookings(log.records)
    assert [m["version"] for m in moves[booking_id]] == [1, 2, 3, 4]


def test_poison_records_are_dead_lettered_and_the_sink_goes_on(sink_process):
    url = sink_process.database_url
    dead_letter_start = support.log_end_offsets([CONTRACT.dead_letters])
    # A record Postgres itself refuses (the parser cannot know): the batch is split to find it.
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE bookings ADD CONSTRAINT test_refused CHECK (rider_id <> 'refused-rider')")
    log = TripLog(unique_prefix("poison"))
    refused = log.book("refused-rider")
    log.book("rider-before")  # valid, and likely in the same batch as the refused one
    poison_key = f"{log.route_id}-garbage"
    sink_process.start()

    support.produce(log.records)
    support.produce([(CONTRACT.created, poison_key, b"{not json")], headers=[("trace-id", b"abc-123")])
    # Fits the broker, but not the sink's producer once the dead-letter headers are added.
    oversized_key = f"{log.route_id}-oversized"
    support.produce([(CONTRACT.created, oversized_key, b"x" * 1_010_000)], max_bytes=1_040_000)
    after = log.book("rider-after")
    log.pay(after)
    support.produce(log.records[-3:])

    kept = {bid: b for bid, b in expected_bookings(log.records).items() if bid != refused}
    support.wait_until(lambda: progress(url, log.route_id)[0] == len(kept), CATCH_UP_SECONDS,
                       "valid bookings around the poison applied")
    ours = (poison_key.encode(), refused.encode(), oversized_key.encode())
    letters = support.consume_from(dead_letter_start, lambda m: m.key() in ours, wanted=3, timeout=CATCH_UP_SECONDS)
    by_key = {m.key().decode(): m for m in letters}

    garbage = by_key[poison_key]
    headers = dict(garbage.headers())
    assert garbage.value() == b"{not json"
    assert headers["trace-id"] == b"abc-123"  # the original headers are kept
    assert headers["dlq-topic"] == CONTRACT.created.encode()
    assert headers["dlq-reason"].startswith(b"not JSON") and headers["dlq-code"] == b"invalid_event"
    assert int(headers["dlq-offset"]) >= 0 and int(headers["dlq-partition"]) >= 0
    assert b"refused by Postgres" in dict(by_key[refused].headers())["dlq-reason"]
    assert dict(by_key[refused].headers())["dlq-code"] == b"refused_by_postgres"
    oversized = by_key[oversized_key]
    assert oversized.value() is None and "dlq-value-dropped" in dict(oversized.headers())
    found, _ = support.read_back(url, sorted(kept))
    assert found == kept
    assert rows(url, "SELECT id FROM bookings WHERE id = %s", (refused,)) == []
    assert sink_process.process.poll() is None, "the sink must keep running"


def sink_writing_a_batch(url: str) -> bool:
    """The sink's Postgres session is inside a batch's transaction (copying or merging)."""
    return scalar(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND application_name = 'openride-sink' AND xact_start IS NOT NULL "
                       "AND (query LIKE 'COPY%%' OR query LIKE 'INSERT%%')") > 0


def test_sigkill_mid_batch_then_restart_ends_equal_to_the_log(sink_process):
    prefix = unique_prefix("kill")
    logs = [many_bookings(f"{prefix}-{n}", 40) for n in range(200)]
    records = [record for log in logs for record in log.records]
    url = sink_process.database_url
    total_bookings = len(expected_bookings(records))
    support.produce(records)

    sink_process.extra_env["SINK_BATCH_SIZE"] = "500"  # more, smaller transactions to kill in
    # Static membership: the restarted sink takes the killed one's place at once, instead
    # of waiting for the broker to notice it is gone (the session timeout).
    sink_process.extra_env["SINK_INSTANCE_ID"] = f"{prefix}-sink-0"
    written_at_kills = []
    for _ in range(3):  # each kill lands while a batch's transaction is open, if the stream lasts
        sink_process.start()
        support.wait_until(lambda: sink_writing_a_batch(url) or progress(url, prefix)[0] == total_bookings,
                           CATCH_UP_SECONDS, "the sink writing", every=0.01)
        if progress(url, prefix)[0] == total_bookings:
            sink_process.stop()
            break
        sink_process.kill()
        written_at_kills.append(progress(url, prefix)[0])

    sink_process.extra_env.pop("SINK_BATCH_SIZE")
    sink_process.start()
    wait_for_log(url, records, prefix, sink_process)
    assert sink_process.stop() == 0

    # Each kill waited for an open batch transaction; the first may be the very first
    # batch (nothing committed yet), which is as good a place to die as any.
    assert written_at_kills and written_at_kills[0] < total_bookings, "the first kill should land mid-stream"
    assert_equals_log(url, records)
    assert support.duplicate_history_rows(url) == 0
    events, rate = re.findall(r"sink stopped: (\d+) events .* ([\d.]+) events/s", sink_process.log())[-1]
    print(f"\nsink after the last restart: {events} events at {rate} events/s "
          f"({len(records)} in the stream; {total_bookings} bookings, {written_at_kills} written at each kill)")
    assert orjson.dumps(sorted(expected_bookings(records))) == orjson.dumps(support.booking_ids_like(url, prefix))


def test_a_lost_connection_is_retried_without_losing_or_repeating(sink_process):
    url = sink_process.database_url
    prefix = unique_prefix("reconnect")
    first, second = many_bookings(f"{prefix}-1", 20), many_bookings(f"{prefix}-2", 20)
    sink_process.start()
    support.produce(first.records)
    wait_for_log(url, first.records, prefix, sink_process)

    terminated = scalar(url, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND application_name = 'openride-sink'")
    support.produce(second.records)
    wait_for_log(url, first.records + second.records, prefix, sink_process)

    assert terminated == 1
    assert "Postgres unavailable" in sink_process.log()
    assert_equals_log(url, first.records + second.records)


def test_the_sink_waits_for_postgres_and_stops_on_sigterm_meanwhile(kafka_topics, tmp_path):
    name = f"openride_test_sink_later_{unique_prefix('x')[-10:]}"
    url = database_url(name)
    waiting = support.SinkProcess(url, tmp_path / "waiting.log")
    patient = support.SinkProcess(url, tmp_path / "patient.log")
    log = every_kind_of_booking(unique_prefix("later"))
    try:
        waiting.start()
        support.wait_until(lambda: "Postgres unavailable" in waiting.log(), CATCH_UP_SECONDS, "retrying")
        assert waiting.stop() == 0  # SIGTERM while Postgres is unavailable: a clean exit

        patient.start()
        support.wait_until(lambda: "Postgres unavailable" in patient.log(), CATCH_UP_SECONDS, "retrying")
        # The database appears ready in one step (a rename), so the sink cannot find it
        # half made, without the stored offsets, and read the shared topics from the start.
        ready = create_database()
        migrate(database_url(ready))
        support.start_sink_at_log_end(database_url(ready))
        with psycopg.connect(get_settings().database_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{ready}" RENAME TO "{name}"')
        support.produce(log.records)
        wait_for_log(url, log.records, log.route_id, patient)
        assert_equals_log(url, log.records)
        assert patient.stop() == 0
    finally:
        waiting.ensure_stopped()
        patient.ensure_stopped()
        drop_database(name)
