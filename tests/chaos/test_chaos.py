"""Short chaos runs inside `make test`, each ending with the invariant checker:

- a thousand commands while the worker is SIGKILLed five times and restarted (under its
  static member id, so it takes its partitions straight back), the sink and the gateway
  with it, and the clients retry;
- the same on a three-node Kafka cluster of its own (every topic with 3 replicas and
  min.insync.replicas 2), while brokers are SIGKILLed too: the active controller, a
  command partition's leader and the group coordinator, the last kept down 20 s;
- Postgres stopped for 30 s under load and started again: reads answer 503 with
  Retry-After meanwhile, bookings are answered by the worker as always and the gateway
  stays ready, and the sink catches up with nothing lost.

`make chaos` runs the long versions (100,000 commands, 30 worker kills; with
`ARGS="--brokers 3"`, at least 10 broker kills)."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource

from app.config import ROOT, get_settings
from bench import chaos
from bench.cluster import Cluster
from bench.systems import our_postgres

pytestmark = pytest.mark.integration


def test_invariants_hold_after_workers_sink_and_gateway_are_killed() -> None:
    args = chaos.parser().parse_args(
        ["--commands", "1000", "--kill-every", "4", "--min-kills", "5", "--sink-every", "1", "--gateway-every", "1",
         "--trips", "5",
         "--kafka-clients", "24", "--http-clients", "8"])
    counts = chaos.run(args)
    assert counts == dict.fromkeys(counts, 0), counts


def test_a_postgres_outage_under_load_loses_nothing() -> None:
    if not our_postgres(get_settings().database_url):
        pytest.skip("stops Postgres: needs the one scripts/test.sh started (OPENRIDE_HOME and PGPORT of this run)")
    args = chaos.parser().parse_args(
        ["--commands", "400", "--min-kills", "0", "--kill-every", "1000000", "--postgres-outage-s", "30",
         "--postgres-outage-after-s", "10", "--trips", "5", "--kafka-clients", "8", "--http-clients", "8"])
    counts = chaos.run(args)
    assert counts == dict.fromkeys(counts, 0), counts


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Three nodes on TEST_KAFKA_CLUSTER_PORT and the five ports after it, next to the
    suite's own broker, with the suite's Kafka jars."""
    home = Path(os.environ.get("OPENRIDE_HOME", ROOT / ".local" / "test")) / "cluster"
    libs = home.parent / "kafka" / "libs"
    (home / "kafka").mkdir(parents=True, exist_ok=True)
    if libs.is_dir() and not (home / "kafka" / "libs").exists():
        (home / "kafka" / "libs").symlink_to(libs)
    base = int(os.environ.get("TEST_KAFKA_CLUSTER_PORT", "19192"))
    started = Cluster({"OPENRIDE_HOME": str(home), "KAFKA_PORT": str(base), "KAFKA_CONTROLLER_PORT": str(base + 1),
                       "KAFKA_EXTRA_PORTS": str(base + 2), "KAFKA_BROKERS": "3"})
    started.wipe()
    started.start()
    try:
        yield started
    finally:
        started.script("stop")


def test_invariants_hold_when_brokers_die_too(cluster: Cluster) -> None:
    args = chaos.parser().parse_args(
        ["--brokers", "3", "--commands", "600", "--kill-every", "5", "--min-kills", "3", "--sink-every", "2",
         "--gateway-every", "3", "--min-broker-kills", "3", "--broker-kill-every", "8", "--broker-down-s", "3",
         "--broker-long-down-s", "20", "--broker-long-every", "3", "--trips", "5",
         "--kafka-clients", "16", "--http-clients", "4"])
    counts = chaos.run(args, cluster)
    assert counts == dict.fromkeys(counts, 0), counts
    assert_every_topic_replicated(cluster)


def assert_every_topic_replicated(cluster: Cluster) -> None:
    """Ours, the worker's changelogs and faust's leader topic (not Kafka's own "__" ones)."""
    admin = cluster.admin()
    ours = [topic for name, topic in admin.list_topics(timeout=10).topics.items() if not name.startswith("__")]
    assert any(t.topic.endswith("-changelog") for t in ours) and any(t.topic.endswith("__leader") for t in ours)
    for topic in ours:
        assert {len(p.replicas) for p in topic.partitions.values()} == {3}, topic.topic
    configs = admin.describe_configs([ConfigResource("topic", topic.topic) for topic in ours])
    for resource, future in configs.items():
        assert future.result()["min.insync.replicas"].value == "2", resource.name
