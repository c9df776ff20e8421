"""docker-compose.yml parses, and everything it names exists: services, volumes, roles,
hosts. (No Docker engine here: this is the offline part; `docker compose config` and a
real `up` were not run.)"""

import re
from urllib.parse import urlparse

from tests.deploy.support import ROLES, compose, compose_env, our_services


def services() -> dict:
    return compose()["services"]


def used_volume_names(service: dict) -> set[str]:
    names = set()
    for volume in service.get("volumes", []):
        source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
        if not source.startswith((".", "/", "~")):  # bind mounts are paths
            names.add(source)
    return names


def test_depends_on_names_existing_services_with_conditions_they_can_meet():
    for name, service in services().items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services(), f"{name} depends on unknown service {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services()[target], f"{name} waits for {target} to be healthy: it has no check"
            if condition == "service_completed_successfully":
                assert services()[target].get("restart") != "unless-stopped", f"{target} never completes"


def test_every_volume_used_is_declared_and_every_declared_volume_used():
    declared = set(compose().get("volumes") or {})
    used = set().union(*(used_volume_names(service) for service in services().values()))
    assert used == declared


def test_our_services_run_known_roles():
    for name, service in our_services().items():
        assert service["command"][0] in ROLES, f"{name}: unknown role {service['command']}"


def test_the_whole_system_is_there():
    roles = [service["command"][0] for service in our_services().values()]
    assert sorted(set(roles)) == sorted(ROLES)
    assert roles.count("worker") == 2
    assert {"kafka", "postgres"} <= set(services())


def test_workers_have_their_own_volume_and_static_member_id():
    workers = {name: s for name, s in our_services().items() if s["command"][0] == "worker"}
    ids = [compose_env(s)["WORKER_INSTANCE_ID"] for s in workers.values()]
    volumes = [used_volume_names(s) for s in workers.values()]
    assert len(set(ids)) == len(workers)
    assert all(len(v) == 1 for v in volumes) and len(set().union(*volumes)) == len(workers)
    assert all(int(compose_env(s)["WORKER_STANDBY_REPLICAS"]) >= 1 for s in workers.values())


def test_connection_settings_name_compose_services():
    for name, service in our_services().items():
        env = compose_env(service)
        kafka_host = env["KAFKA_BOOTSTRAP"].split(":")[0]
        assert kafka_host in services(), f"{name}: KAFKA_BOOTSTRAP names {kafka_host}"
        assert urlparse(env["DATABASE_URL"]).hostname in services()


def test_kafka_advertises_the_address_the_services_use():
    kafka_env = services()["kafka"]["environment"]
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    for service in our_services().values():
        assert f"//{compose_env(service)['KAFKA_BOOTSTRAP']}" in advertised
    listeners = set(re.findall(r"(\w+)://", kafka_env["KAFKA_LISTENERS"]))
    mapped = {pair.split(":")[0] for pair in kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")}
    assert listeners <= mapped


def test_published_host_ports_do_not_collide():
    published = [str(port).rsplit(":", 1)[0] for s in services().values() for port in s.get("ports", [])]
    assert len(published) == len(set(published))
