"""The Dockerfile, checked without a Docker engine (none on these machines: the image
was not built here), and its entrypoint and health check, run for real."""

import fnmatch
import importlib.util
import os
import re
import subprocess
import sys
import uuid

import pytest
from confluent_kafka import Consumer
from prometheus_client import CollectorRegistry

from app.config import ROOT, Settings, get_settings
from app.monitoring import serve
from app.worker.bootstrap import build_worker
from tests.deploy.support import DOCKERIGNORE, ENTRYPOINT, ROLES, dockerfile_instructions, final_stage

HEALTHCHECK_FILE = ROOT / "deploy" / "healthcheck.py"


def load_healthcheck():
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", HEALTHCHECK_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ignored(path: str) -> bool:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)


def test_multi_stage_from_a_slim_python():
    bases = [arguments for instruction, arguments in dockerfile_instructions() if instruction == "FROM"]
    assert len(bases) >= 2
    default_base = next(a for i, a in dockerfile_instructions() if i == "ARG" and a.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.1[1-9]-slim-\w+", default_base)


def test_final_stage_runs_as_a_numeric_non_root_user_with_a_health_check():
    instructions = dict(final_stage())
    user = instructions["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0  # numeric: Kubernetes' runAsNonRoot can verify it
    assert "healthcheck.py" in instructions["HEALTHCHECK"]
    assert "entrypoint.sh" in instructions["ENTRYPOINT"]


def test_everything_copied_exists_and_is_in_the_build_context():
    for instruction, arguments in dockerfile_instructions():
        if instruction != "COPY" or arguments.startswith("--from"):
            continue
        sources = [a for a in arguments.split()[:-1] if not a.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source), f"{source} is excluded by .dockerignore"


def test_entrypoint_knows_every_role():
    roles = set(re.findall(r"^\s*(\w+)\)", ENTRYPOINT.read_text(), re.MULTILINE))
    assert set(ROLES) <= roles


@pytest.mark.parametrize("role, prints", [
    ("migrate", "python -m sinks.migrate"),
    ("sink", "python -m sinks.main"),
    ("gateway", "uvicorn"),
    ("worker", "worker"),
])
def test_entrypoint_starts_each_role(role, prints):
    """Runs the entrypoint as the image would (same relative layout), asking each role's
    program for its --help: the dispatch reaches the real program."""
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
           "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": "8000"}
    done = subprocess.run([str(ENTRYPOINT), role, "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert prints in done.stdout


def test_faust_takes_the_worker_identity_and_replication_from_the_settings(tmp_path):
    app = build_worker(Settings(worker_instance_id="openride-worker-7", topic_replication_factor=3,
                                worker_datadir=tmp_path))
    assert (app.conf.consumer_group_instance_id, app.conf.topic_replication_factor) == ("openride-worker-7", 3)


def test_healthcheck_tells_roles_apart_by_command_line():
    healthcheck = load_healthcheck()
    assert healthcheck.role_of(["python", "-m", "app.worker", "worker", "-l", "info"]) == "worker"
    assert healthcheck.role_of(["python", "-m", "sinks.main"]) == "sink"
    assert healthcheck.role_of(["/opt/venv/bin/python", "/opt/venv/bin/uvicorn", "gateway.main:create_app", "--factory"]) == "gateway"
    assert healthcheck.role_of(["bash"]) == "unknown"


def test_healthcheck_asks_the_worker_whether_it_is_ready():
    """The worker's check is its own /health/ready (app.worker.monitor), on WORKER_HTTP_PORT."""
    healthcheck = load_healthcheck()
    health = {"ready": False}
    server = serve(CollectorRegistry(), lambda: (True, health["ready"], {}), "127.0.0.1", 0, "test")
    try:
        settings = get_settings().model_copy(update={"worker_http_port": server.server_address[1]})
        assert "503" in healthcheck.problem("worker", settings)
        health["ready"] = True
        assert healthcheck.problem("worker", settings) is None
    finally:
        server.shutdown()
        server.server_close()
    assert "refused" in healthcheck.problem("worker", settings)


@pytest.mark.integration
def test_healthcheck_finds_a_static_member_in_its_group():
    """Against the real broker: a consumer with a group instance id joins; the check sees
    it, and does not see an id that never joined."""
    healthcheck = load_healthcheck()
    settings = get_settings()
    group, instance = f"deploy-health-{uuid.uuid4().hex[:8]}", "worker-under-test"
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "group.instance.id": instance, "session.timeout.ms": 10_000})
    assigned = []
    consumer.subscribe(["booking.created"], on_assign=lambda _, partitions: assigned.extend(partitions))
    try:
        for _ in range(100):
            consumer.poll(0.2)
            if assigned:
                break
        assert assigned, "the test consumer never joined"
        assert healthcheck.group_member(settings, group, instance) is None
        assert "not a member" in healthcheck.group_member(settings, group, "someone-else")
        assert "no static instance id" in healthcheck.group_member(settings, group, "")
    finally:
        consumer.close()
