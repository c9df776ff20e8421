"""The whole system as local processes (worker, sink and gateway) against a broker and a
Postgres already running (`make test` and bench/infra.sh start those): used by the
end-to-end tests and by the benchmarks."""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import httpx

from app.config import ROOT
from devstack.processes import WORKER_ARGV, Service, free_port


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
