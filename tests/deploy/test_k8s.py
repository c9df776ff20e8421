"""The kustomize base and the example overlay render with a pinned kustomize, validate
strictly against Kubernetes' schemas (offline, from the kubernetes-validate wheel), and
every name they refer to exists. (No cluster here: nothing was applied.)"""

import httpx
import pytest
import kubernetes_validate
from prometheus_client import CollectorRegistry

from app.config import Settings
from app.monitoring import serve
from gateway.main import create_app
from tests.deploy.support import (
    K8S_BASE, K8S_EXAMPLE, ROLES, all_containers, container_env_names, named, pod_owners, pod_spec, render,
)

KUSTOMIZATIONS = {"base": K8S_BASE, "example": K8S_EXAMPLE}
# The oldest Kubernetes still commonly run, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())


@pytest.fixture(params=list(KUSTOMIZATIONS), scope="module")
def rendered(request) -> tuple[dict, ...]:
    return render(KUSTOMIZATIONS[request.param])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_resource_validates_strictly(rendered, version):
    for resource in rendered:
        kubernetes_validate.validate(resource, version, strict=True)


def test_a_broken_resource_fails_validation():
    """The validator is not a no-op: an unknown field and a wrong type are caught."""
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                                      "spec": {"ports": [{"port": "eighty"}], "colour": "red"}},
                                     KUBERNETES_VERSIONS[0], strict=True)


def pods(rendered):
    return [(owner, pod_spec(owner)) for owner in pod_owners(rendered)]


def test_config_and_secret_references_exist():
    rendered = render(K8S_EXAMPLE)
    config_maps, secrets = named(rendered, "ConfigMap"), named(rendered, "Secret")
    for owner, spec in pods(rendered):
        for container in all_containers(spec):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets
            container_env_names(container, rendered)  # raises on a missing one


def labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_selectors_find_pods(rendered):
    templates = [owner["spec"]["template"]["metadata"]["labels"] for owner in pod_owners(rendered)]
    for owner in pod_owners(rendered):
        assert labels_match(owner["spec"]["selector"]["matchLabels"], owner["spec"]["template"]["metadata"]["labels"])
    for service in named(rendered, "Service").values():
        assert any(labels_match(service["spec"]["selector"], labels) for labels in templates)
    for budget in named(rendered, "PodDisruptionBudget").values():
        assert any(labels_match(budget["spec"]["selector"]["matchLabels"], labels) for labels in templates)


def test_autoscaler_and_statefulset_point_at_existing_objects(rendered):
    for hpa in named(rendered, "HorizontalPodAutoscaler").values():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["name"] in named(rendered, target["kind"])
    for statefulset in named(rendered, "StatefulSet").values():
        governing = named(rendered, "Service")[statefulset["spec"]["serviceName"]]
        assert governing["spec"]["clusterIP"] == "None"


def test_every_container_runs_a_role_with_requests_and_limits(rendered):
    for owner, spec in pods(rendered):
        for container in all_containers(spec):
            assert container["args"][0] in ROLES, container["name"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), (owner["metadata"]["name"], bound)


def test_pods_run_as_non_root_without_service_links(rendered):
    for owner, spec in pods(rendered):
        assert spec["securityContext"]["runAsNonRoot"] is True
        # Service links would inject e.g. GATEWAY_PORT=tcp://… and break the settings.
        assert spec["enableServiceLinks"] is False, owner["metadata"]["name"]


def test_workers_keep_state_and_identity(rendered):
    worker = named(rendered, "StatefulSet")["openride-worker"]
    spec = pod_spec(worker)
    container = next(c for c in spec["containers"] if c["args"][0] == "worker")
    identity = next(e for e in container["env"] if e["name"] == "WORKER_INSTANCE_ID")
    assert identity["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    claims = {claim["metadata"]["name"] for claim in worker["spec"]["volumeClaimTemplates"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert "data" in claims and mounts["data"] == "/data"  # the image's WORKER_DATADIR is /data/worker
    config = next(iter(named(rendered, "ConfigMap").values()))["data"]
    assert int(config["WORKER_STANDBY_REPLICAS"]) >= 1
    assert worker["spec"]["replicas"] <= int(config["COMMAND_PARTITIONS"])


def test_gateway_probes_exist_in_the_gateway():
    paths = set(create_app().openapi()["paths"])
    gateway = named(render(K8S_EXAMPLE), "Deployment")["openride-gateway"]
    container = pod_spec(gateway)["containers"][0]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in paths
    assert named(render(K8S_EXAMPLE), "HorizontalPodAutoscaler")["openride-gateway"]


def test_worker_probes_are_served_on_the_worker_s_port():
    """The probes name paths the worker's own server answers (app.monitoring, a real
    server here), on the port the worker listens on by default."""
    worker = named(render(K8S_EXAMPLE), "StatefulSet")["openride-worker"]
    container = next(c for c in pod_spec(worker)["containers"] if c["args"][0] == "worker")
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    server = serve(CollectorRegistry(), lambda: (True, True, {}), "127.0.0.1", 0, "test")
    try:
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert ports[get["port"]] == Settings.model_fields["worker_http_port"].default
            assert httpx.get(f"http://127.0.0.1:{server.server_address[1]}{get['path']}").status_code == 200
    finally:
        server.shutdown()
        server.server_close()


def test_the_overlay_sets_its_image_everywhere():
    for owner, spec in pods(render(K8S_EXAMPLE)):
        for container in all_containers(spec):
            assert container["image"].startswith("registry.example.com/"), container["image"]
