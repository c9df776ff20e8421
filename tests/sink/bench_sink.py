"""`make bench-sink [ARGS="--trips N --stream-trips N --rate N --batch-size N"]`: the sink's
throughput and the lag it keeps (the command brings its own broker and Postgres; with
them already running, `python -m tests.sink.bench_sink` alone).

Two phases, on genuine events (the core decides them, as in the tests) and a fresh
database positioned at the current end of the topics:
1. backlog: the events are on the topics before the sink starts; timed until the last
   transition is in Postgres. Reports the wall rate (process start and group join
   included) and the sink's own busy-time rate.
2. stream: the sink is running and events arrive at a steady rate; the lag the sink
   exposes (openride_sink_lag, summed over partitions) is sampled meanwhile.
A benchmark, not a test: it asserts only that every event arrived.
"""

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer

from sinks.migrate import migrate
from tests.sink import support
from tests.support.kafka import bootstrap
from tests.support.postgres import create_database, database_url, drop_database, scalar
from tests.support.scenario import expected_bookings, expected_history, many_bookings, unique_prefix

SAMPLE_EVERY_SECONDS = 0.25
PRODUCE_EVERY_SECONDS = 0.05


def events_of(prefix: str, trips: int) -> list[tuple[str, str, bytes]]:
    return [r for n in range(trips) for r in many_bookings(f"{prefix}-{n}", 40).records]


def transitions_in(url: str, prefix: str) -> int:
    return scalar(url, "SELECT count(*) FROM booking_history WHERE booking_id LIKE %s", (prefix + "%",))


def total_lag(sink: support.SinkProcess) -> float:
    return sum(sink.lag().values())


def drain(url: str, sink: support.SinkProcess, prefix: str, transitions: int) -> tuple[float, float]:
    """Until every transition of `prefix` is written: (seconds, highest lag seen)."""
    started = time.monotonic()
    peak = 0.0
    while transitions_in(url, prefix) < transitions:
        if time.monotonic() - started > 600:
            raise SystemExit(f"the sink did not catch up in 10 minutes; its log:\n{sink.log()[-3000:]}")
        try:
            peak = max(peak, total_lag(sink))
        except AssertionError:  # its HTTP server is not up yet
            pass
        time.sleep(SAMPLE_EVERY_SECONDS)
    return time.monotonic() - started, peak


def stream(records: list, rate: int, sink: support.SinkProcess) -> list[float]:
    """Produce at `rate` events/s, sampling the lag; returns the samples."""
    per_tick = max(1, round(rate * PRODUCE_EVERY_SECONDS))
    producer = Producer({"bootstrap.servers": bootstrap(), "linger.ms": 5, "enable.idempotence": True})
    samples: list[float] = []
    started = time.monotonic()
    next_sample = started
    for tick, first in enumerate(range(0, len(records), per_tick)):
        for topic, key, value in records[first:first + per_tick]:
            producer.produce(topic, key=key, value=value)
        producer.poll(0)
        if time.monotonic() >= next_sample:
            samples.append(total_lag(sink))
            next_sample += SAMPLE_EVERY_SECONDS
        pause = started + (tick + 1) * PRODUCE_EVERY_SECONDS - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    if producer.flush(60) > 0:
        raise SystemExit("events still queued in the producer after 60 s")
    elapsed = time.monotonic() - started
    print(f"stream: {len(records)} events offered at {rate}/s, produced in {elapsed:.1f} s "
          f"({len(records) / elapsed:.0f} events/s achieved)")
    return samples


def last_summary(sink: support.SinkProcess) -> str:
    found = re.findall(r"sink stopped: (.*)", sink.log())
    return found[-1] if found else "?"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trips", type=int, default=200, help="backlog: each trip adds about 150 events")
    parser.add_argument("--stream-trips", type=int, default=100, help="stream: each trip adds about 150 events")
    parser.add_argument("--rate", type=int, default=2000, help="stream: events per second offered")
    parser.add_argument("--batch-size", type=int, default=None, help="SINK_BATCH_SIZE (default: settings)")
    args = parser.parse_args()

    prefix = unique_prefix("bench")
    backlog = events_of(f"{prefix}-backlog", args.trips)
    streamed = events_of(f"{prefix}-stream", args.stream_trips)
    name = create_database()
    url = database_url(name)
    sink = support.SinkProcess(url, Path(tempfile.mkdtemp()) / "sink.log")
    if args.batch_size:
        sink.extra_env["SINK_BATCH_SIZE"] = str(args.batch_size)
    try:
        migrate(url)
        support.start_sink_at_log_end(url)
        support.produce(backlog)
        bookings = len(expected_bookings(backlog))
        transitions = sum(len(h) for h in expected_history(backlog).values())
        sink.start()
        wall, peak = drain(url, sink, f"{prefix}-backlog", transitions)
        sink.stop()
        print(f"backlog: {len(backlog)} events ({bookings} bookings, {transitions} transitions) written in "
              f"{wall:.2f} s from process start = {len(backlog) / wall:.0f} events/s; peak lag seen {peak:.0f}; "
              f"sink's own count, busy time only: {last_summary(sink)}")

        assignments = sink.log().count("assigned")
        sink.start()  # resumes where Postgres says
        support.wait_until(lambda: sink.log().count("assigned") > assignments, 120, "sink assigned")
        samples = stream(streamed, args.rate, sink)
        after, _ = drain(url, sink, f"{prefix}-stream", sum(len(h) for h in expected_history(streamed).values()))
        sink.stop()
        print(f"stream lag (events, {len(samples)} samples every {SAMPLE_EVERY_SECONDS} s): median "
              f"{statistics.median(samples):.0f}, p95 {percentile(samples, 0.95):.0f}, max {max(samples):.0f}; "
              f"caught up {after:.2f} s after the last event was produced")
    finally:
        sink.ensure_stopped()
        drop_database(name)


if __name__ == "__main__":
    main()
