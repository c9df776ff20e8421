"""The systems a bench or chaos run drives, as real processes on the infrastructure that
bench/infra.sh (or `make test`) started: worker, sink and gateway (devstack/stack.py), the
baseline service, and how far the sink is behind the lifecycle topics."""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

import httpx
import psycopg
from confluent_kafka import TopicPartition
from psycopg.conninfo import conninfo_to_dict
from confluent_kafka.admin import AdminClient, OffsetSpec

from app.config import ROOT, Settings
from sinks.events import SUBSCRIBED
from sinks.migrate import migrate
from devstack.processes import Service, free_port
from devstack.stack import Stack, start_stack


def openride_home() -> Path:
    return Path(os.environ.get("OPENRIDE_HOME", Path(__file__).resolve().parent.parent / ".local" / "bench"))


def our_postgres(database_url: str) -> bool:
    """Whether `database_url` is the Postgres scripts/isolated.sh started for this process
    (OPENRIDE_HOME and PGPORT of its run): the only one a test or bench may stop."""
    port = conninfo_to_dict(database_url).get("port")
    return "OPENRIDE_HOME" in os.environ and os.environ.get("PGPORT") == port


def postgres(action: str) -> None:
    """scripts/postgres.sh stop|start, for that Postgres (our_postgres)."""
    subprocess.run([str(ROOT / "scripts" / "postgres.sh"), action], check=True, timeout=300,
                   stdout=subprocess.DEVNULL)


def fresh_database(base_url: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base_url.rsplit("/", 1)[0] + "/" + name


@dataclass
class Network:
    """How the systems reach Postgres and Kafka: directly, or through bench/delayproxy,
    which adds `rtt_ms` to every round trip (half each way). The load generator's own
    setup and monitoring connections stay direct."""

    rtt_ms: float
    kafka_bootstrap: str
    database_port: int | None = None  # the proxy's, when there is one
    proxy: subprocess.Popen | None = None

    @classmethod
    def start(cls, settings: Settings, rtt_ms: float, workdir: Path) -> "Network":
        if rtt_ms <= 0:
            return cls(0.0, settings.kafka_bootstrap)
        # Kafka's proxy port is fixed: the broker's second listener advertises it.
        pg_port, kafka_port = free_port(), int(os.environ["DELAY_PROXY_KAFKA_PORT"])
        database = urlsplit(settings.database_url)
        routes = [f"127.0.0.1:{pg_port}={database.hostname}:{database.port}",
                  f"127.0.0.1:{kafka_port}=127.0.0.1:{os.environ['KAFKA_DELAYED_PORT']}"]
        argv = [str(delay_proxy()), "-delay", f"{int(rtt_ms * 500)}us", *(f"-route={r}" for r in routes)]
        proxy = subprocess.Popen(argv, stdout=(workdir / "delayproxy.log").open("ab"), stderr=subprocess.STDOUT)
        network = cls(rtt_ms, f"127.0.0.1:{kafka_port}", pg_port, proxy)
        network.wait_listening((pg_port, kafka_port), workdir / "delayproxy.log")
        return network

    def wait_listening(self, ports: tuple[int, ...], log: Path, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        for port in ports:
            while True:
                if self.proxy is not None and self.proxy.poll() is not None:
                    raise RuntimeError(f"the delay proxy exited: {log.read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the delay proxy is not listening on {port}") from None
                    time.sleep(0.1)

    def database_url(self, url: str) -> str:
        if self.database_port is None:
            return url
        parts = urlsplit(url)
        return parts._replace(netloc=f"{parts.netloc.rsplit(':', 1)[0]}:{self.database_port}").geturl()

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP": self.kafka_bootstrap}

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.terminate()
            self.proxy.wait(10)


def delay_proxy() -> Path:
    """bench/delayproxy, built with the Go toolchain the first time (standard library only)."""
    binary = openride_home() / "bin" / "delayproxy"
    source = Path(__file__).resolve().parent / "delayproxy" / "main.go"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        if shutil.which("go") is None:
            raise RuntimeError("--rtt-ms needs the Go toolchain (go) to build bench/delayproxy")
        binary.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "build", "-o", str(binary), str(source)], check=True,
                       env={**os.environ, "GOCACHE": str(openride_home() / "go-cache")})
    return binary


def start_openride(settings: Settings, workdir: Path, settings_env: Mapping[str, str] = MappingProxyType({}),
                   network: Network | None = None) -> Stack:
    """Worker, sink and gateway on a fresh, migrated database; returns once ready.
    `settings_env`: settings they run with beyond this process's environment."""
    database_url = fresh_database(settings.database_url, "openride_bench")
    migrate(database_url)
    workdir.mkdir(parents=True, exist_ok=True)
    network = network or Network(0.0, settings.kafka_bootstrap)
    stack = start_stack(network.database_url(database_url), workdir, {**network.env(), **settings_env})
    stack.database_url = database_url
    stack.wait_ready()
    return stack


@dataclass
class Baseline:
    base_url: str
    database_url: str
    service: Service


def start_baseline(settings: Settings, workdir: Path, mode: str = "bare", network: Network | None = None) -> Baseline:
    """The row-lock baseline (bench/baseline/app.py) in `mode`, on a fresh database."""
    database_url = fresh_database(settings.database_url, "baseline_bench")
    port = free_port()
    route = network.database_url if network else (lambda url: url)
    env = {**os.environ, "BASELINE_DATABASE_URL": route(database_url), "BASELINE_MODE": mode}
    argv = [sys.executable, "-m", "uvicorn", "--factory", "bench.baseline.app:create_app", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log"]
    service = Service(f"baseline-{mode}", argv, env, workdir / f"baseline-{mode}.log")
    service.start()
    baseline = Baseline(f"http://127.0.0.1:{port}", database_url, service)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(baseline.base_url + "/health", timeout=2).status_code == 200:
                return baseline
        except httpx.TransportError:
            time.sleep(0.3)
    raise TimeoutError("the baseline never answered:\n" + service.log_tail())


class SinkLag:
    """Samples the lifecycle topics' end offsets and the sink's offsets in Postgres. The
    lag of a sample taken at t is how long the sink took to reach the end seen at t."""

    def __init__(self, settings: Settings, database_url: str, every_s: float = 0.5):
        self.admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
        self.partitions = [TopicPartition(topic, p) for topic in SUBSCRIBED for p in range(settings.event_partitions)]
        self.database_url = database_url
        self.every_s = every_s
        self.samples: list[tuple[float, int, int]] = []  # (monotonic time, end, sink position)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sink-lag")

    def start(self) -> "SinkLag":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)

    def end_offsets(self) -> int:
        futures = self.admin.list_offsets({tp: OffsetSpec.latest() for tp in self.partitions}, request_timeout=10)
        return sum(future.result().offset for future in futures.values())

    def sink_position(self, conn: psycopg.Connection) -> int:
        row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM sink_offsets WHERE topic = ANY(%s)",
                           (list(SUBSCRIBED),)).fetchone()
        return int(row[0])

    def _run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self._stopping.wait(self.every_s):
                try:
                    self.samples.append((time.monotonic(), self.end_offsets(), self.sink_position(conn)))
                except Exception:  # noqa: BLE001 - a missed sample is fine (e.g. sink restarting)
                    continue

    def lags(self, since: float, until: float) -> list[float]:
        """Lag in seconds of each sample in [since, until] (a sample never caught up counts
        until the last sample)."""
        lags = []
        for i, (t, end, _) in enumerate(self.samples):
            if not since <= t <= until:
                continue
            caught = next((t2 for t2, _, position in self.samples[i:] if position >= end), self.samples[-1][0])
            lags.append(caught - t)
        return lags

    def wait_caught_up(self, timeout_s: float = 120) -> bool:
        deadline = time.monotonic() + timeout_s
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                if self.sink_position(conn) >= self.end_offsets():
                    return True
                time.sleep(0.5)
        return False


@dataclass
class CpuMeter:
    """CPU seconds per named process (and its children, for Postgres' backends)."""

    pids: dict[str, int]
    with_children: frozenset[str] = field(default_factory=frozenset)

    def snapshot(self) -> dict[str, float]:
        import psutil  # the bench extra; chaos and tests do not need it

        totals = {}
        for name, pid in self.pids.items():
            try:
                process = psutil.Process(pid)
                family = [process, *process.children(recursive=True)] if name in self.with_children else [process]
                totals[name] = sum(sum(p.cpu_times()[:2]) for p in family if p.is_running())
            except psutil.Error:
                totals[name] = 0.0
        return totals


def infra_pids(home: Path) -> dict[str, int]:
    pids = {}
    for name, path in (("kafka", home / "run" / "kafka.pid"), ("postgres", home / "pg" / "data" / "postmaster.pid")):
        try:
            pids[name] = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return pids


class Profiled(Service):
    """A worker under py-spy (the bench extra): raw folded stacks, idle included."""

    def stop(self) -> None:
        """The worker first: py-spy writes its stacks once the worker is gone (a signal to
        py-spy itself would leave the worker running and write nothing)."""
        import psutil  # the bench extra

        for child in psutil.Process(self.process.pid).children():
            child.terminate()
        self.process.wait(60)


def profiled(worker: Service, out: Path, rate: int = 50) -> Profiled:
    argv = [str(Path(sys.executable).parent / "py-spy"), "record", "--rate", str(rate), "--idle", "--threads",
            "--format", "raw", "-o", str(out), "--", *worker.argv]
    return Profiled(worker.name, argv, worker.env, worker.log_path, tree=worker.tree)


def profile_summary(folded: Path, top: int = 25) -> str:
    """Where the worker's main thread spent its samples: the functions with the most time
    of their own, and the most time under them, as shares of the thread's busy samples."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    busy = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if "MainThread" not in frames[0] or "select (selectors.py" in frames[-1]:
            continue  # other threads, and the event loop waiting
        samples = int(count)
        busy += samples
        own[frames[-1]] += samples
        for frame in set(frames[1:]):
            under[frame] += samples
    lines = [f"{busy} busy samples of the main thread"]
    lines += [f"{100 * n / busy:5.1f} % own   {frame}" for frame, n in own.most_common(top)]
    lines += [f"{100 * n / busy:5.1f} % under {frame}" for frame, n in under.most_common(2 * top)]
    return "\n".join(lines)
