"""The container health check: `python deploy/healthcheck.py [gateway|worker|sink]`.

Exit 0 when healthy, 1 otherwise (with the reason on stdout). Without an argument the
role is read from PID 1's command line, so the image's one HEALTHCHECK serves every role.
- gateway: GET /health/ready answers 200 (Kafka, reply partition and Postgres all up);
- worker: GET /health/ready on its own port (WORKER_HTTP_PORT) answers 200 (partitions
  assigned, tables recovered);
- sink: the process is a member of its consumer group, found by its static group
  instance id (SINK_INSTANCE_ID).
It reports readiness, so orchestrators use it for readiness, not liveness: a Kafka outage
must not get every worker restarted (each restart costs a rebalance and a recovery).
"""

import sys
import urllib.request
from pathlib import Path

from app.config import Settings, get_settings

TIMEOUT_SECONDS = 5.0
ROLE_BY_MODULE = {"app.worker": "worker", "sinks.main": "sink", "gateway.main:create_app": "gateway"}


def role_of_pid1() -> str:
    return role_of(Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0"))


def role_of(arguments: list[str]) -> str:
    for module, role in ROLE_BY_MODULE.items():
        if module in arguments:
            return role
    return "unknown"


def ready_over_http(port: int) -> str | None:
    url = f"http://127.0.0.1:{port}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return None if response.status == 200 else f"{url} answered {response.status}"
    except OSError as error:  # HTTPError (503) is an OSError too
        return f"{url}: {error}"


def group_member(settings: Settings, group: str, instance_id: str) -> str | None:
    """None if a member of `group` carries `instance_id`, else why not."""
    from confluent_kafka.admin import AdminClient  # only worker and sink checks need it

    if not instance_id:
        return f"no static instance id set: cannot tell this process apart in group {group}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    try:
        description = admin.describe_consumer_groups([group], request_timeout=TIMEOUT_SECONDS)[group].result()
    except Exception as error:  # noqa: BLE001 - any failure means not healthy
        return f"cannot describe group {group}: {error}"
    members = {member.group_instance_id for member in description.members}
    return None if instance_id in members else f"{instance_id} is not a member of {group} ({description.state})"


def problem(role: str, settings: Settings) -> str | None:
    if role == "gateway":
        return ready_over_http(settings.gateway_port)
    if role == "worker":
        return ready_over_http(settings.worker_http_port)
    if role == "sink":
        return group_member(settings, settings.sink_group, settings.sink_instance_id)
    return f"no health check for role {role!r}"


def main(argv: list[str]) -> int:
    role = argv[1] if len(argv) > 1 else role_of_pid1()
    found = problem(role, get_settings())
    print(found or f"{role}: healthy")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
