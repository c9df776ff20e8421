"""`python -m tests.sink.bench_sink [--trips N] [--batch-size N]`: the sink's throughput.

Puts a backlog of genuine events on the topics, starts `python -m sinks.main` on a fresh
database positioned just before that backlog, and times the drain. Prints the wall time
to catch up (startup and group join included) and the sink's own busy-time rate. Uses
the shared local broker and Postgres; the database it creates is dropped at the end.
"""

import argparse
import re
import tempfile
import time
from pathlib import Path

from sinks.migrate import migrate
from tests.sink import support
from tests.sink.scenario import expected_bookings, expected_history, many_bookings, unique_prefix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trips", type=int, default=200, help="each adds about 150 events")
    parser.add_argument("--batch-size", type=int, default=None, help="SINK_BATCH_SIZE (default: settings)")
    args = parser.parse_args()

    prefix = unique_prefix("bench")
    records = [r for n in range(args.trips) for r in many_bookings(f"{prefix}-{n}", 40).records]
    transitions = sum(len(h) for h in expected_history(records).values())
    bookings = len(expected_bookings(records))
    name = support.create_database()
    url = support.database_url(name)
    sink = support.SinkProcess(url, Path(tempfile.mkdtemp()) / "sink.log")
    if args.batch_size:
        sink.extra_env["SINK_BATCH_SIZE"] = str(args.batch_size)
    try:
        migrate(url)
        support.start_sink_at_log_end(url)
        support.produce(records)
        started = time.monotonic()
        sink.start()
        support.wait_until(
            lambda: support.scalar(url, "SELECT count(*) FROM booking_history WHERE booking_id LIKE %s",
                                   (prefix + "%",)) == transitions, 300, "sink caught up", every=0.1)
        wall = time.monotonic() - started
        sink.stop()
        assert support.scalar(url, "SELECT count(*) FROM bookings WHERE id LIKE %s", (prefix + "%",)) == bookings
        summary = re.search(r"sink stopped: (.*)", sink.log())
        print(f"{len(records)} events ({bookings} bookings, {transitions} transitions): caught up in {wall:.2f} s "
              f"from process start = {len(records) / wall:.0f} events/s; sink: {summary.group(1) if summary else '?'}")
    finally:
        sink.ensure_stopped()
        support.drop_database(name)


if __name__ == "__main__":
    main()
