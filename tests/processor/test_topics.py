"""Every topic the project creates takes the configured replication and min.insync.replicas
(app.transport.admin), the worker's own included; a setting no write could meet is refused. (The
three-broker chaos run checks the topics on a real cluster: tests/chaos.)"""

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.transport.admin import internal_topic_specs, topic_specs
from app.wire.topics import Topics
from app.worker.bootstrap import build_worker


def declared_topic_names(topics: Topics) -> set[str]:
    """Every topic name of a deployment (app.wire.topics.Topics)."""
    return {value for name, value in vars(topics).items() if name != "namespace" and isinstance(value, str)}


@pytest.mark.parametrize("replicas, min_insync, expected_min", [(1, 0, 1), (3, 0, 2), (3, 3, 3), (5, 0, 3)])
def test_every_topic_takes_the_configured_replicas_and_min_insync(replicas, min_insync, expected_min) -> None:
    settings = Settings(topic_replication_factor=replicas, topic_min_insync_replicas=min_insync,
                        topic_namespace="ns.")
    specs = topic_specs(settings) + internal_topic_specs(settings, ["w-trip-state-changelog"], "w-__assignor-__leader")
    assert {spec.topic for spec in specs} >= declared_topic_names(Topics("ns."))
    for spec in specs:
        assert spec.replication_factor == replicas, spec.topic
        assert spec.config["min.insync.replicas"] == str(expected_min), spec.topic


def test_a_min_insync_above_the_replicas_is_refused() -> None:
    with pytest.raises(ValidationError, match="TOPIC_MIN_INSYNC_REPLICAS"):
        Settings(topic_replication_factor=1, topic_min_insync_replicas=2)


def test_the_worker_declares_faust_s_own_topics_by_faust_s_names(tmp_path) -> None:
    """The leader topic's name comes from faust; the changelogs' too."""
    app = build_worker(Settings(worker_id="named", worker_datadir=tmp_path))
    names = [app._leader_assignor._leader_topic_name, *(table.changelog_topic_name for table in app.tables.values())]
    assert sorted(names) == ["named-__assignor-__leader", "named-hold-due-changelog",
                                           "named-trip-state-changelog"]
