"""The gateway's own CPU per command request, with the worker taken out of the picture.

The gateway (`gateway.main.create_app`) runs under uvicorn in a process of its own with an
instant command bus: each command is answered at once with a reply shaped like the
worker's, parsed from bytes as the reply consumer would. A closed-loop client sends
keep-alive requests over `--connections` connections; the server's CPU time (user +
system, every thread) over the measured requests, divided by their number, is the figure.
The client's own CPU per request is reported too.

    .venv/bin/python -m bench.gateway_cpu [--requests 20000] [--route create] [--keyed]
    .venv/bin/python -m bench.gateway_cpu --roots /path/to/other/checkout,.   # A/B, alternating

`--roots` runs the same measurement against the gateway of each checkout in turn
(`--rounds` times, alternating), so two versions are compared on the same loaded machine.
With `--keyed` every request carries an Idempotency-Key (a gateway that keeps keys in
Postgres needs DATABASE_URL to reach one).
"""

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
import orjson
import psutil
import uvloop

from app.config import get_settings
from bench.http1 import Pool
from tests.stack import free_port

ROOT = Path(__file__).resolve().parent.parent
BOOKING_ID = "R1.20300115.ABCDEFGHIJKLMNOP"

# Runs in the server process, importing the gateway of the checkout it is started in.
SERVER = r"""
import asyncio, sys, orjson, uvicorn
from app.config import get_settings
from gateway.main import create_app

BOOKING = {
    "id": "R1.20300115.ABCDEFGHIJKLMNOP", "bookingReference": "BK20300115ABCDEF", "riderId": "rider-1",
    "driverId": "driver-1", "routeId": "R1", "originStopId": "S00", "destinationStopId": "S09",
    "travelDate": "2030-01-15", "departureTime": "08:00:00", "departureAt": "2030-01-15T07:00:00.000Z",
    "seatsBooked": 2, "seatNumbers": [1, 2], "pricePerSeat": "2500.00", "fare": "5000.00",
    "platformFee": "250.00", "totalPrice": "5250.00", "currency": "NGN", "status": "HELD", "paymentId": None,
    "paymentStatus": "PENDING", "cancellationReason": None, "cancelledAt": None, "refundAmount": "0.00",
    "refundStatus": "NONE", "bookingSource": "API", "createdAt": "2030-01-01T10:00:00.000Z",
    "updatedAt": "2030-01-01T10:00:00.000Z", "expiresAt": "2030-01-01T10:10:00.000Z", "confirmedAt": None,
    "version": 1,
}


class InstantBus:
    replies_assigned = True

    async def request(self, key, command, timeout):
        booking = {**BOOKING, "routeId": command.get("routeId", "R1"),
                   "originStopId": command.get("originStopId", "S00"),
                   "destinationStopId": command.get("destinationStopId", "S09"),
                   "seatsBooked": command.get("seatsBooked", 2), "riderId": command["actor"]["userId"]}
        raw = orjson.dumps({"v": 1, "commandId": command["commandId"], "ok": True, "code": None, "message": None,
                            "booking": booking})
        return orjson.loads(raw)  # as the reply consumer parses what the worker wrote

    def kafka_reachable(self, timeout):
        return True

    def publish(self, topic, key, value):
        pass


settings = get_settings().model_copy(update={"rate_limit_burst": 10**9, "rate_limit_per_minute": 10**9})
app = create_app(settings, bus=InstantBus())
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


@dataclass
class Measured:
    root: str
    requests: int
    seconds: float
    server_us: float  # server CPU per request
    client_us: float  # this process's CPU per request
    statuses: dict[int, int]


def start_server(root: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.Popen([sys.executable, "-c", SERVER, str(port)], cwd=root, env=env)


def profiler(pid: int, out: Path) -> subprocess.Popen:
    """py-spy sampling the server's Python stacks (its threads too) until SIGINT."""
    formats = ["--format", "raw"] if out.suffix == ".txt" else []
    return subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--output",
                             str(out), "--threads", "--rate", "250", "--nonblocking", *formats],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def requests_for(pool: Pool, route: str, count: int, users: int, keyed: bool) -> list[bytes]:
    secret = get_settings().jwt_secret
    expires = int(time.time()) + 3600
    tokens = [jwt.encode({"sub": f"rider-{n}", "role": "RIDER", "exp": expires}, secret, algorithm="HS256")
              for n in range(users)]
    rendered = []
    for n in range(count):
        headers = {"Authorization": f"Bearer {tokens[n % users]}", "Content-Type": "application/json"}
        if keyed:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        if route == "create":
            body = {"routeId": "R1", "travelDate": "2030-01-15", "originStopId": "S00", "destinationStopId": "S09",
                    "seatsBooked": 2}
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
            status, _ = await pool.request(raw, timeout=30)
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(client() for _ in range(connections)))
    return statuses


async def wait_up(pool: Pool, raw: bytes) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            await pool.request(raw, timeout=5)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def measure(root: Path, args: argparse.Namespace) -> Measured:
    port = free_port()
    server = start_server(root, port)
    try:
        pool = Pool(f"http://127.0.0.1:{port}", args.connections)
        probe = pool.render("GET", "/health/live", {})
        await wait_up(pool, probe)
        warm = requests_for(pool, args.route, args.warmup, args.users, args.keyed)
        await closed_loop(pool, warm, args.connections)
        measured = requests_for(pool, args.route, args.requests, args.users, args.keyed)
        process = psutil.Process(server.pid)
        server_before, client_before = sum(process.cpu_times()[:2]), time.process_time()
        started = time.perf_counter()
        spy = profiler(server.pid, args.profile) if args.profile else None
        statuses = await closed_loop(pool, measured, args.connections)
        seconds = time.perf_counter() - started
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        server_cpu = sum(process.cpu_times()[:2]) - server_before
        client_cpu = time.process_time() - client_before
        await pool.close()
    finally:
        server.terminate()
        server.wait(30)
    return Measured(str(root), args.requests, seconds, 1e6 * server_cpu / args.requests,
                    1e6 * client_cpu / args.requests, statuses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=3_000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--users", type=int, default=1_000, help="distinct riders (each with one token)")
    parser.add_argument("--route", choices=("create", "cancel"), default="create")
    parser.add_argument("--keyed", action="store_true", help="an Idempotency-Key on every request")
    parser.add_argument("--roots", default=str(ROOT), help="comma-separated checkouts to compare")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="py-spy's flame graph of the server over the measured requests "
                                                      "(an .svg path; or .txt for its collapsed stacks)")
    args = parser.parse_args()
    roots = [Path(root).resolve() for root in args.roots.split(",")]
    results: dict[str, list[Measured]] = {str(root): [] for root in roots}
    for round_ in range(args.rounds):
        for root in roots:
            result = uvloop.run(measure(root, args))
            results[str(root)].append(result)
            print(f"round {round_ + 1} {root}: {result.server_us:.0f} us server CPU/request, "
                  f"{result.client_us:.0f} us client CPU/request, {args.requests / result.seconds:.0f} requests/s, "
                  f"statuses {result.statuses}", flush=True)
    for root, runs in results.items():
        print(f"median {root}: {statistics.median(r.server_us for r in runs):.0f} us server CPU/request, "
              f"{statistics.median(r.client_us for r in runs):.0f} us client CPU/request "
              f"({args.route}, {'keyed' if args.keyed else 'no key'}, {args.users} users, {args.rounds} rounds)")


if __name__ == "__main__":
    main()
