"""The gateway's own CPU per command request, with the worker taken out of the picture.

The gateway (`gateway.main`) runs under uvicorn in a process of its own, and a closed-loop
client sends keep-alive requests over `--connections` connections; the server's CPU time
(user + system, every thread) over the measured requests, divided by their number, is the
figure. The client's own CPU per request is reported too. Two ways to answer commands:

- `--bus instant` (default): the app gets an in-process bus that answers each command at
  once with a reply shaped like the worker's (parsed from bytes, as the reply consumer
  would). No broker or Postgres needed: what the HTTP and command path cost alone.
- `--bus kafka`: the real gateway process, its Kafka producer and reply consumer, and a
  stand-in worker process that answers every command at once with the same reply. Needs
  the broker and Postgres: run it as `bench/infra.sh gateway_cpu --bus kafka`.

    .venv/bin/python -m bench.gateway_cpu [--requests 20000] [--route create] [--keyed]
    .venv/bin/python -m bench.gateway_cpu --roots /path/to/other/checkout,.   # A/B, alternating

`--roots` runs the same measurement against the gateway of each checkout in turn
(`--rounds` times, alternating), so two versions are compared on the same loaded machine.
With `--keyed` every request carries an Idempotency-Key.
"""

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
import uvloop

from app.config import get_settings
from bench.http1 import Pool
from bench.load import jwt_identity
from bench.systems import fresh_database
from gateway.schemas import BOOKING_EXAMPLE
from devstack.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
BOOKING_ID = "R1.20300115.ABCDEFGHIJKLMNOP"
# The booking a reply carries: the OpenAPI document's example of the worker's snapshot.
BOOKING = {**BOOKING_EXAMPLE, "id": BOOKING_ID}
# uvicorn's HTTP protocol, as deployed (GATEWAY_CPU_HTTP=auto: uvicorn's own; and for a
# checkout without gateway/server.py).
HTTP = "gateway.server:HttpProtocol"
# Rate limits out of the way: this measures CPU, not the limiter's refusals.
UNLIMITED = {"RATE_LIMIT_BURST": str(10**9), "RATE_LIMIT_PER_MINUTE": str(10**9)}

# Runs in the server process (--bus instant), importing the gateway of the checkout it is
# started in; the reply's booking comes in argv.
SERVER = r"""
import os, sys, orjson, uvicorn
from app.config import get_settings
from gateway.main import create_app

BOOKING = orjson.loads(sys.argv[2])


class InstantBus:
    replies_assigned = True

    async def request(self, key, command, timeout):
        raw = orjson.dumps({"v": 1, "commandId": command["commandId"], "ok": True, "code": None, "message": None,
                            "booking": {**BOOKING, "riderId": command["actor"]["userId"]}})
        return orjson.loads(raw)  # as the reply consumer parses what the worker wrote

    def kafka_reachable(self, timeout):
        return True

    def publish(self, topic, key, value):
        pass


app = create_app(get_settings(), bus=InstantBus())
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
            http=sys.argv[3])
"""


@dataclass
class Measured:
    root: str
    requests: int
    seconds: float
    server_us: float  # server CPU per request
    client_us: float  # this process's CPU per request
    statuses: dict[int, int]
    threads_us: dict[str, float]  # server CPU per request, by thread name


def thread_times(pid: int) -> dict[str, float]:
    """CPU seconds of each of the process's threads, summed by thread name (librdkafka's
    threads too, which a Python profiler does not see)."""
    totals: dict[str, float] = {}
    for thread in psutil.Process(pid).threads():
        try:
            name = Path(f"/proc/{pid}/task/{thread.id}/comm").read_text().strip()
        except OSError:
            continue
        totals[name] = totals.get(name, 0.0) + thread.user_time + thread.system_time
    return totals


def start_server(root: Path, port: int, bus: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(root), **UNLIMITED}
    if bus == "kafka":  # a database migrated by the checkout under test
        env["DATABASE_URL"] = fresh_database(get_settings().database_url, "gateway_cpu")
        subprocess.run([sys.executable, "-m", "sinks.migrate", "--database-url", env["DATABASE_URL"]], cwd=root,
                       env=env, check=True, capture_output=True)
    if bus == "instant":
        argv = [sys.executable, "-c", SERVER, str(port), orjson.dumps(BOOKING).decode(),
                os.environ.get("GATEWAY_CPU_HTTP", HTTP)]
    else:
        argv = [sys.executable, "-m", "uvicorn", "gateway.main:create_app", "--factory", "--http", os.environ.get("GATEWAY_CPU_HTTP", HTTP),
                "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    return subprocess.Popen(argv, cwd=root, env=env)


def start_responder() -> subprocess.Popen:
    """The stand-in worker, once it reads every command partition."""
    responder = subprocess.Popen([sys.executable, "-m", "bench.gateway_cpu", "--respond"], cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True)
    if responder.stdout is None or responder.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the stand-in worker did not start ({responder.wait()})")
    return responder


def respond() -> None:
    """The stand-in worker: answers every command on the command topic at once, to the
    reply partition its headers name, until SIGTERM."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    from app.wire.topics import REPLY_PARTITION, REPLY_TO, Topics
    from app.transport.bus import next_batch
    from app.transport.clients import command_producer_config, reply_consumer_config

    settings = get_settings()
    topics = Topics.of(settings)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    consumer = Consumer(reply_consumer_config(settings))
    partitions = []
    for partition in range(settings.command_partitions):
        for attempt in range(60):  # a broker just started may not lead its partitions yet
            try:
                _, end = consumer.get_watermark_offsets(TopicPartition(topics.commands, partition), timeout=10)
                break
            except KafkaException:
                if attempt == 59:
                    raise
                time.sleep(1)
        partitions.append(TopicPartition(topics.commands, partition, end))
    consumer.assign(partitions)
    consumer.consume(1, 0)  # a first poll starts fetching from the assigned offsets
    print("ready", flush=True)
    producer = Producer({**command_producer_config(settings), "acks": 1, "enable.idempotence": False})
    while not stopping.is_set():
        for message in next_batch(consumer):
            if message.error() is not None:
                continue
            command = orjson.loads(message.value())
            headers = dict(message.headers() or ())
            reply = orjson.dumps({"v": 1, "commandId": command["commandId"], "ok": True, "code": None,
                                  "message": None, "booking": {**BOOKING, "riderId": command["actor"]["userId"]}})
            producer.produce(headers[REPLY_TO].decode(), key=command["commandId"].encode(), value=reply,
                             partition=int(headers[REPLY_PARTITION]))
        producer.poll(0)
    producer.flush(5)
    consumer.close()


def profiler(pid: int, out: Path) -> subprocess.Popen:
    """py-spy sampling the server's Python stacks (its threads too) until SIGINT."""
    formats = ["--format", "raw"] if out.suffix == ".txt" else []
    return subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--output",
                             str(out), "--threads", "--rate", "250", "--nonblocking", *formats],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def requests_for(pool: Pool, route: str, count: int, users: int, keyed: bool) -> list[bytes]:
    identify = jwt_identity(get_settings())
    tokens = [identify(f"rider-{n}") for n in range(users)]
    rendered = []
    for n in range(count):
        headers = {**tokens[n % users], "Content-Type": "application/json"}
        if keyed:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        if route == "create":
            body: dict[str, Any] = {"routeId": "R1", "travelDate": "2030-01-15", "originStopId": "S00",
                                    "destinationStopId": "S09", "seatsBooked": 2}
            rendered.append(pool.render("POST", "/v1/bookings", headers, orjson.dumps(body)))
        else:
            rendered.append(pool.render("POST", f"/v1/bookings/{BOOKING_ID}/cancel", headers,
                                        orjson.dumps({"reason": "plans changed, sorry"})))
    return rendered


async def closed_loop(pool: Pool, requests: list[bytes], connections: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    queue = iter(requests)

    async def client() -> None:
        for raw in queue:
            status, _ = await pool.request(raw, timeout=10)
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(client() for _ in range(connections)))
    return statuses


async def wait_ready(pool: Pool, server: subprocess.Popen, bus: str) -> None:
    """Until the gateway answers: /health/ready with Kafka (polled within its allowance per
    client address), /health/live with the instant bus (no Postgres behind it)."""
    probe = pool.render("GET", "/health/ready" if bus == "kafka" else "/health/live", {})
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the gateway exited with {server.returncode}")
        try:
            status, _ = await pool.request(probe, timeout=5)
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the gateway never became ready")
        await asyncio.sleep(0.5)


async def measure(root: Path, args: argparse.Namespace, responder: subprocess.Popen | None) -> Measured:
    if responder is not None and responder.poll() is not None:
        raise RuntimeError(f"the stand-in worker exited with {responder.returncode}")
    port = free_port()
    server = start_server(root, port, args.bus)
    try:
        pool = Pool(f"http://127.0.0.1:{port}", args.connections)
        await wait_ready(pool, server, args.bus)
        warm = requests_for(pool, args.route, args.warmup, args.users, args.keyed)
        await closed_loop(pool, warm, args.connections)
        measured = requests_for(pool, args.route, args.requests, args.users, args.keyed)
        process = psutil.Process(server.pid)
        server_before, client_before = sum(process.cpu_times()[:2]), time.process_time()
        threads_before = thread_times(server.pid)
        started = time.perf_counter()
        spy = profiler(server.pid, args.profile) if args.profile else None
        statuses = await closed_loop(pool, measured, args.connections)
        seconds = time.perf_counter() - started
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        server_cpu = sum(process.cpu_times()[:2]) - server_before
        client_cpu = time.process_time() - client_before
        threads = {name: 1e6 * (seconds_ - threads_before.get(name, 0.0)) / args.requests
                   for name, seconds_ in thread_times(server.pid).items()}
        await pool.close()
    finally:
        server.terminate()
        server.wait(30)
    return Measured(str(root), args.requests, seconds, 1e6 * server_cpu / args.requests,
                    1e6 * client_cpu / args.requests, statuses, threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=3_000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--users", type=int, default=1_000, help="distinct riders (each with one token)")
    parser.add_argument("--route", choices=("create", "cancel"), default="create")
    parser.add_argument("--keyed", action="store_true", help="an Idempotency-Key on every request")
    parser.add_argument("--bus", choices=("instant", "kafka"), default="instant")
    parser.add_argument("--roots", default=str(ROOT), help="comma-separated checkouts to compare")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="py-spy's flame graph of the server over the measured requests "
                                                      "(an .svg path; or .txt for its collapsed stacks)")
    parser.add_argument("--respond", action="store_true", help=argparse.SUPPRESS)  # the stand-in worker
    args = parser.parse_args()
    if args.respond:
        respond()
        return
    roots = [Path(root).resolve() for root in args.roots.split(",")]
    results: dict[str, list[Measured]] = {str(root): [] for root in roots}
    responder = start_responder() if args.bus == "kafka" else None
    try:
        for round_ in range(args.rounds):
            for root in roots:
                result = uvloop.run(measure(root, args, responder))
                results[str(root)].append(result)
                print(f"round {round_ + 1} {root}: {result.server_us:.0f} us server CPU/request, "
                      f"{result.client_us:.0f} us client CPU/request, {args.requests / result.seconds:.0f} "
                      f"requests/s, statuses {result.statuses}", flush=True)
                print("  by thread (us/request): " + ", ".join(
                    f"{name} {us:.0f}" for name, us in sorted(result.threads_us.items(), key=lambda kv: -kv[1])
                    if us >= 1), flush=True)
    finally:
        if responder is not None:
            responder.terminate()
            responder.wait(30)
    for root, runs in results.items():
        print(f"median {root}: {statistics.median(r.server_us for r in runs):.0f} us server CPU/request, "
              f"{statistics.median(r.client_us for r in runs):.0f} us client CPU/request "
              f"({args.bus} bus, {args.route}, {'keyed' if args.keyed else 'no key'}, {args.users} users, "
              f"{args.rounds} rounds)")


if __name__ == "__main__":
    main()
