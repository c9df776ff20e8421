"""How fast one worker drains a backlog: its capacity, without a load generator on the
same cores. (`make bench` drives the whole system open loop; on a 2-core machine its
generator, gateway and sink take CPU from the worker too.)

    make bench-worker ARGS="[--scenario hot|spread] [--commands 20000] [--runs 3] [--profile]
                            [--variant NAME[@COMMIT]:VARIABLE=VALUE,...]..."

Each run writes a backlog of commands (the bench's scenario: creates, and cancels of the
bookings those creates would make) into a topic namespace of its own, on every command
partition but the first, then starts one worker on it and watches the replies topic
fill: commands/s is measured between 10 % and 90 % of the replies (so start-up and the
tail are left out), with the worker's and the broker's CPU over the same window.
Commands per worker CPU-second is the figure that moves least when other work shares
the machine. Over the same window a command goes every quarter second to the first
partition, where nothing waits: its reply time is how long a trip whose partition has
caught up waits for what the worker fetched of the others (docs/processor.md,
"Catching up").

A variant is the worker's code and environment (bench/variants.py): a setting
(`wait5:WORKER_BATCH_WAIT_MS=5`), one of faust's own variables (`linger5:
PRODUCER_LINGER=0.005`; faust reads them over what the code passes), or another commit
of the project (`main@40f411a:`). Runs of the variants alternate, after one warm-up run
(a fresh broker spends its first minutes compiling), and the medians are printed, with
each variant's ratio to the first.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from app.config import get_settings
from bench.systems import openride_home, profile_summary
from bench.variants import ROOT, Variant, parse_variant

WINDOW = (0.10, 0.90)
TIMEOUT_S = 600.0
QUIET_PARTITION = 0  # the backlog leaves it empty
PROBE_EVERY_S = 0.25


def run_once(scenario_name: str, commands: int, tree: Path, profile: Path | None) -> dict[str, float]:
    """In a process whose TOPIC_NAMESPACE is the run's own (topic names are fixed at import)."""
    import orjson
    import psutil
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    from app.domain.ids import booking_id_for
    from app.wire.topics import REPLY_PARTITION, REPLY_TO, Topics
    from app.transport.admin import ensure_topics, topic_specs
    from bench import load
    from bench.systems import infra_pids
    from app.transport.clients import command_producer_config, reply_consumer_config
    from devstack.processes import worker_service

    settings = get_settings()
    topics = Topics.of(settings)
    ensure_topics(settings, topic_specs(settings))
    scenario = (load.hot_trip if scenario_name == "hot" else load.spread)(settings.topic_namespace.rstrip("."))
    # Batches of at most 16 KiB, as a busy gateway's: a fetch returns at least one whole
    # batch, so bigger ones would hide what the worker's fetch size does.
    producer = Producer({**command_producer_config(settings), "linger.ms": 50, "batch.size": 16384})
    # A trip's partition is picked here, not by the key's hash: the worker goes by the
    # partition a record is on, and the backlog must leave QUIET_PARTITION empty.
    backlog_partitions = [p for p in range(settings.command_partitions) if p != QUIET_PARTITION]
    partition_of = {trip.key: backlog_partitions[i % len(backlog_partitions)] for i, trip in enumerate(scenario.trips)}

    def produce(key: str, command: dict, partition: int, reply_partition: int = 0) -> None:
        headers = [(REPLY_TO, topics.replies.encode()), (REPLY_PARTITION, str(reply_partition).encode())]
        while True:
            try:
                producer.produce(topics.commands, key=key.encode(), value=orjson.dumps(command), headers=headers,
                                 partition=partition)
                return
            except BufferError:
                producer.poll(0.1)

    for trip in scenario.trips:
        produce(trip.key, load.publish_trip_command(trip, f"trip-{trip.key}"), partition_of[trip.key])
    for _ in range(commands):
        op = scenario.next_op()
        if isinstance(op, load.Create):
            produce(op.trip.key, load.create_command(op), partition_of[op.trip.key])
            # The id the worker will give the booking, so later cancels name it.
            booking = booking_id_for(op.trip.route_id, op.trip.travel_date, op.key)
            scenario.on_result(op, load.Result("ok", booking_id=booking))
        else:
            produce(op.trip.key, load.cancel_command(op), partition_of[op.trip.key])
    producer.flush(60)
    total = len(scenario.trips) + commands

    replies = Consumer(reply_consumer_config(settings))
    partition = TopicPartition(topics.replies, 0)
    probe_replies = Consumer(reply_consumer_config(settings))
    probe_replies.assign([TopicPartition(topics.replies, 1, 0)])
    probe_trips = iter(load.make_trips(settings.topic_namespace.rstrip(".") + "-quiet", 100_000))
    probes_sent: dict[str, float] = {}
    probe_waits: list[float] = []

    def probe() -> None:
        """Sends the next probe (between the window's marks), then takes the replies that came."""
        if len(marks) == 1 and time.monotonic() - max(probes_sent.values(), default=0.0) >= PROBE_EVERY_S:
            trip = next(probe_trips)
            produce(trip.key, load.publish_trip_command(trip, trip.key), QUIET_PARTITION, reply_partition=1)
            producer.flush(5)
            probes_sent[trip.key] = time.monotonic()
        for message in probe_replies.consume(100, 0.01):
            if message.error() is None and message.key().decode() in probes_sent:
                probe_waits.append(time.monotonic() - probes_sent[message.key().decode()])
    workdir = openride_home() / "drain-run" / settings.topic_namespace
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    worker = worker_service("worker", workdir, {"WORKER_ID": f"drain-{settings.topic_namespace}"}, tree)
    kafka = psutil.Process(infra_pids(openride_home())["kafka"])
    worker.start()
    sampler = None
    try:
        process = psutil.Process(worker.process.pid)
        marks: dict[float, tuple[float, float, float]] = {}  # share -> (time, worker cpu, kafka cpu)
        deadline = time.monotonic() + TIMEOUT_S
        answered = 0
        while len(marks) < len(WINDOW) and time.monotonic() < deadline:
            if worker.process.poll() is not None:
                raise RuntimeError("the worker exited:\n" + worker.log_tail())
            try:
                answered = replies.get_watermark_offsets(partition, timeout=10)[1]
            except KafkaException:  # a topic just created: its leader may not be known yet
                continue
            for share in WINDOW:
                if share not in marks and answered >= share * total:
                    marks[share] = (time.monotonic(), sum(process.cpu_times()[:2]), sum(kafka.cpu_times()[:2]))
                    if profile is not None:
                        sampler = sample(worker.process.pid, profile, sampler)
            probe()
            time.sleep(0.05)
        if len(marks) < len(WINDOW):
            raise TimeoutError(f"{answered} of {total} replies after {TIMEOUT_S} s")
        while len(probe_waits) < len(probes_sent) and time.monotonic() < deadline:
            probe()
    finally:
        if sampler is not None and sampler.poll() is None:
            sampler.terminate()
        worker.stop()
        replies.close()
        probe_replies.close()
    (t0, w0, k0), (t1, w1, k1) = marks[WINDOW[0]], marks[WINDOW[1]]
    seconds = t1 - t0
    commands_done = (WINDOW[1] - WINDOW[0]) * total
    return {"commands_per_s": commands_done / seconds, "commands_per_worker_cpu_s": commands_done / (w1 - w0),
            "worker_cpu_pct": 100 * (w1 - w0) / seconds, "kafka_cpu_pct": 100 * (k1 - k0) / seconds,
            "quiet_p50_s": statistics.median(probe_waits), "quiet_max_s": max(probe_waits),
            "load_avg": os.getloadavg()[0]}


def sample(pid: int, out: Path, running: subprocess.Popen | None) -> subprocess.Popen | None:
    """Starts py-spy on the worker at the window's start; stops it (it writes then) at its end."""
    if running is None:
        return subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--rate",
                                 "200", "--idle", "--threads", "--format", "raw", "-o", str(out)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    running.send_signal(signal.SIGINT)
    running.wait(60)
    return running


def run_in_namespace(args: argparse.Namespace, variant: Variant, commands: int,
                     profile: Path | None = None) -> dict[str, float]:
    namespace = f"drain{uuid.uuid4().hex[:6]}."
    env = {**os.environ, **variant.env, "TOPIC_NAMESPACE": namespace}
    argv = [sys.executable, "-m", "bench.drain", "--one", "--scenario", args.scenario, "--commands", str(commands),
            "--tree", str(variant.tree), *(["--profile-to", str(profile)] if profile else [])]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"run failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=("hot", "spread"), default="hot")
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3, help="runs per variant")
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME[@COMMIT]:SETTING=VALUE,... the worker's code and settings (default: one, as "
                             "configured)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true",
                        help="one more run of each variant, the worker sampled by py-spy over the measured window "
                             "(its figures not counted)")
    parser.add_argument("--tree", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_once(args.scenario, args.commands, args.tree, args.profile_to)))
        return
    variants = [parse_variant(v) for v in args.variant] or [Variant("as configured")]
    print(f"warm-up run ({args.scenario}, {args.commands // 4} commands)...", flush=True)
    run_in_namespace(args, variants[0], args.commands // 4)
    results: dict[str, list[dict[str, float]]] = {variant.name: [] for variant in variants}
    for run in range(args.runs):
        for variant in variants:
            name = variant.name
            result = run_in_namespace(args, variant, args.commands)
            results[name].append(result)
            print(f"run {run + 1} {name:>16}: {result['commands_per_s']:7.0f} commands/s, "
                  f"{result['commands_per_worker_cpu_s']:7.0f} per worker CPU-second, worker "
                  f"{result['worker_cpu_pct']:5.1f} % CPU, kafka {result['kafka_cpu_pct']:5.1f} %, quiet partition "
                  f"p50 {result['quiet_p50_s']:.2f} s max {result['quiet_max_s']:.2f} s, "
                  f"load {result['load_avg']:.1f}", flush=True)
    print(f"\n| variant ({args.scenario}, {args.commands} commands, median of {args.runs}) | commands/s | "
          "worker CPU per command | worker CPU % | kafka CPU % | quiet partition p50 / max s | "
          "runs (commands/s) | ratio to the first (commands/s, run by run) |\n|---|---:|---:|---:|---:|---:|---|---|")
    first = results[variants[0].name]
    for name, runs in results.items():
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        each = ", ".join(f"{r['commands_per_s']:.0f}" for r in runs)
        ratios = [r["commands_per_s"] / f["commands_per_s"] for r, f in zip(runs, first, strict=True)]
        print(f"| {name} | {median['commands_per_s']:.0f} | {1e6 / median['commands_per_worker_cpu_s']:.0f} µs | "
              f"{median['worker_cpu_pct']:.0f} | "
              f"{median['kafka_cpu_pct']:.0f} | {median['quiet_p50_s']:.2f} / {median['quiet_max_s']:.2f} | {each} | "
              f"{statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)}) |")
    if args.profile:
        for variant in variants:
            folded = openride_home() / "drain-run" / f"{variant.name}.{args.scenario}.folded"
            run_in_namespace(args, variant, args.commands, folded)
            print(f"\nprofile of {variant.name} (py-spy, {folded}):\n{profile_summary(folded)}", flush=True)


if __name__ == "__main__":
    main()
