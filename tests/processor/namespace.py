"""Real worker processes in a topic namespace of their own (topics created, a worker
group of their own), and the upstream client that drives them."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from app.client import BookingClient
from app.wire.topics import Topics
from devstack.processes import Service, worker_service
from devstack.stack import own_topics


PARTITIONS = 6


TICK_SECONDS = 1.0


@dataclass
class Namespace:
    """A topic namespace with its topics created, its worker group and its processes."""

    workdir: Path
    env: dict[str, str]
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}.")
    workers: dict[str, Service] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {
            "TOPIC_NAMESPACE": self.prefix,
            "WORKER_ID": "openride-" + self.prefix.rstrip("."),
            "COMMAND_PARTITIONS": str(PARTITIONS),
            "TICK_INTERVAL_SECONDS": str(TICK_SECONDS),
            "WORKER_SESSION_TIMEOUT_SECONDS": "10",
            "WORKER_HEARTBEAT_SECONDS": "1",
            "WORKER_RATE_LOG_SECONDS": "1",
            **self.env,
        }
        own_topics(self.env)

    @property
    def topics(self) -> Topics:
        """The namespace's topic names (the test process itself runs un-namespaced)."""
        return Topics(self.prefix)

    @property
    def worker_id(self) -> str:
        return self.env["WORKER_ID"]

    def worker(self, name: str, datadir: Path | None = None, **env: str) -> Service:
        """A worker of this namespace's group, not started yet."""
        extra = {**self.env, **env, **({"WORKER_DATADIR": str(datadir)} if datadir else {})}
        service = self.workers[name] = worker_service(name, self.workdir, extra)
        return service

    def start_worker(self, name: str, datadir: Path | None = None, **env: str) -> Service:
        service = self.worker(name, datadir, **env)
        service.start()
        return service

    def client(self, reply_partition: int = 0) -> BookingClient:
        return BookingClient(reply_partition=reply_partition, commands_topic=self.topics.commands,
                             replies_topic=self.topics.replies)

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()

    def assert_alive(self, *names: str) -> None:
        for name in names:
            process = self.workers[name].process
            assert process is not None and process.poll() is None, self.workers[name].log_tail()


@contextmanager
def worker_namespace(workdir: Path, env: dict[str, str] | None = None,
                     worker: str | None = "worker-1") -> Iterator[Namespace]:
    """A namespace with `worker` started (None: no worker yet); its workers stopped after."""
    namespace = Namespace(workdir, env or {})
    if worker is not None:
        namespace.start_worker(worker)
    try:
        yield namespace
    finally:
        namespace.stop()
