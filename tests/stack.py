"""The system under test as real processes: worker, sink and gateway, started against the
broker and Postgres that `make test` runs, each one killable and restartable."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import httpx
import jwt

from app.config import get_settings

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def token(sub: str, role: str, ttl_s: int = 3600) -> str:
    """Minted here from the shared secret, independently of the gateway's own helper."""
    claims = {"sub": sub, "role": role, "exp": datetime.now(UTC) + timedelta(seconds=ttl_s)}
    return jwt.encode(claims, get_settings().jwt_secret, algorithm="HS256")


def auth(sub: str, role: str = "RIDER") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, role)}"}


def publish(client: httpx.Client, route_id: str, travel_date: str, trip: dict, publisher: str) -> None:
    """PUT the trip as the route service `publisher`; 503 while the worker may still be
    taking its partitions, so retried with the same Idempotency-Key."""
    headers = {**auth(publisher, "SERVICE"), "Idempotency-Key": route_id}
    for _ in range(6):
        response = client.put(f"/v1/trips/{route_id}/{travel_date}", json=trip, headers=headers)
        if response.status_code != 503:
            break
    assert response.status_code == 200, response.text


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    tree: Path = ROOT  # the source tree it runs from (the benchmarks compare another commit's)

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.argv, cwd=self.tree, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no commit."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Stack:
    base_url: str
    database_url: str
    namespace: str = ""  # TOPIC_NAMESPACE of its topics
    services: dict[str, Service] = field(default_factory=dict)

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        with self.client(timeout=5) as client:
            while time.monotonic() < deadline:
                self.assert_alive()
                try:
                    if client.get("/health/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
        raise TimeoutError("the gateway never became ready:\n" + self.services["gateway"].log_tail())

    def assert_alive(self) -> None:
        for service in self.services.values():
            if service.process and service.process.poll() is not None:
                raise RuntimeError(f"{service.name} exited with {service.process.returncode}:\n{service.log_tail()}")

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()


WORKER_ARGV = [sys.executable, "-m", "app.worker", "worker", "-l", "info"]


def worker_service(name: str, workdir: Path, env: dict[str, str], tree: Path = ROOT) -> Service:
    """A worker process with a data dir of its own (workdir/name) unless env names one.
    Unbuffered, so that a worker killed with SIGKILL leaves its last log lines. `tree`:
    another checkout of the project to run the worker from (its `app` package is found
    first, from the working directory; the virtualenv is this one's)."""
    env = {**os.environ, "WORKER_DATADIR": str(workdir / name), "PYTHONUNBUFFERED": "1", "WORKER_HTTP_PORT": "0",
           **env}
    return Service(name, WORKER_ARGV, env, workdir / f"{name}.log", tree=tree)


def own_topics(env: Mapping[str, str]) -> None:
    """Creates the topics of the namespace `env` names (TOPIC_NAMESPACE), as `make topics`
    does for the default one."""
    subprocess.run([sys.executable, "-m", "tools.create_topics"], cwd=ROOT, env={**os.environ, **env}, check=True,
                   capture_output=True)


def start_stack(database_url: str, workdir: Path, settings_env: Mapping[str, str] = MappingProxyType({})) -> Stack:
    """`settings_env`: settings the services run with beyond this process's environment."""
    run_id = uuid.uuid4().hex[:8]
    port = free_port()
    env = {
        **os.environ,
        **settings_env,
        "DATABASE_URL": database_url,
        "WORKER_ID": f"openride-test-{run_id}",
        # Static membership: a killed worker restarted under the same id takes its
        # partitions straight back instead of waiting out its session.
        "WORKER_INSTANCE_ID": f"openride-test-worker-{run_id}",
        "WORKER_DATADIR": str(workdir / "worker"),
        "SINK_GROUP": f"openride-sink-test-{run_id}",
        "GATEWAY_PORT": str(port),
        "SINK_HTTP_PORT": "0",  # any free port: test runs share the machine
        "WORKER_HTTP_PORT": "0",
    }
    python = sys.executable
    stack = Stack(base_url=f"http://127.0.0.1:{port}", database_url=database_url,
                  namespace=env.get("TOPIC_NAMESPACE", ""))
    commands = {
        "worker": WORKER_ARGV,
        "sink": [python, "-m", "sinks.main"],
        # As deployed (deploy/entrypoint.sh, scripts/services.sh): no line per request.
        "gateway": [python, "-m", "uvicorn", "gateway.main:create_app", "--factory", "--http", "gateway.server:HttpProtocol",
                    "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
    }
    for name, argv in commands.items():
        stack.services[name] = Service(name, argv, env, workdir / f"{name}.log")
        stack.services[name].start()
    return stack
