"""The Kafka cluster of a chaos run, as scripts/kafka.sh runs it (KAFKA_BROKERS nodes, each a
broker and a KRaft controller): which node leads what, and killing and restarting nodes.

Every operation goes through scripts/kafka.sh with the cluster's environment, so the ports,
data dirs and pid files have one definition."""

import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka.admin import AdminClient

from app.config import ROOT

KAFKA_SH = ROOT / "scripts" / "kafka.sh"
CLUSTER_ENV = ("OPENRIDE_HOME", "KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_EXTRA_PORTS", "KAFKA_BROKERS")
OFFSETS_TOPIC = "__consumer_offsets"


@dataclass
class Cluster:
    env: dict[str, str]  # the CLUSTER_ENV variables scripts/kafka.sh runs with
    down: set[int] = field(default_factory=set)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> "Cluster":
        """The cluster scripts/isolated.sh started for this process."""
        return cls({name: environ[name] for name in CLUSTER_ENV if name in environ})

    @property
    def size(self) -> int:
        return int(self.env.get("KAFKA_BROKERS", "1"))

    @property
    def nodes(self) -> list[int]:
        return list(range(1, self.size + 1))

    def script(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([str(KAFKA_SH), *args], env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"scripts/kafka.sh {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout.strip()

    @property
    def bootstrap(self) -> str:
        return self.script("bootstrap")

    def start(self, node: int | None = None) -> None:
        """All nodes, or one; returns once its client port accepts connections."""
        if node is None:
            self.script("start")
            self.down.clear()
        else:
            self.script("start", str(node))
            self.down.discard(node)

    def running(self) -> set[int]:
        """The nodes whose broker process runs and listens."""
        done = subprocess.run([str(KAFKA_SH), "status"], env={**os.environ, **self.env}, capture_output=True,
                              text=True, timeout=60)
        return {int(line.split()[2].rstrip(":")) for line in done.stdout.splitlines() if ": running" in line}

    def kill(self, node: int) -> None:
        self.script("kill", str(node))
        self.down.add(node)

    def wipe(self) -> None:
        self.script("wipe")

    def active_controller(self) -> int:
        return int(self.script("controller"))

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def leaders(self, topic: str) -> dict[int, int]:
        """The node leading each partition of the topic (-1: none)."""
        metadata = self.admin().list_topics(topic, timeout=10)
        return {number: partition.leader for number, partition in metadata.topics[topic].partitions.items()}

    def under_replicated(self) -> int:
        """Partitions, over every topic, with a replica out of sync (or no leader)."""
        metadata = self.admin().list_topics(timeout=10)
        return sum(len(p.isrs) < len(p.replicas) or p.leader < 0
                   for topic in metadata.topics.values() for p in topic.partitions.values())

    def wait_led_elsewhere(self, node: int, timeout_s: float = 300) -> float:
        """Seconds until no partition, of any topic, is led by `node` or has no leader:
        how long the partitions a killed broker led refused reads and writes."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            try:
                metadata = self.admin().list_topics(timeout=10)
                if not any(p.leader in (node, -1) for t in metadata.topics.values() for p in t.partitions.values()):
                    return time.monotonic() - started
            except Exception:  # noqa: BLE001 - metadata unavailable for a moment: ask again
                pass
            time.sleep(0.2)
        raise TimeoutError(f"node {node} still leads partitions after {timeout_s:.0f} s")

    def wait_fully_replicated(self, timeout_s: float = 300) -> float:
        """Seconds until every replica of every partition is in sync again."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            try:
                if self.under_replicated() == 0:
                    return time.monotonic() - started
            except Exception:  # noqa: BLE001 - metadata unavailable for a moment: ask again
                pass
            time.sleep(0.5)
        raise TimeoutError(f"partitions still under-replicated after {timeout_s:.0f} s")
