"""The variables the code reads are exactly the ones documented in docs/operations.md,
and compose and Kubernetes set exactly the ones the guide says they set (the others are
left at the code's default on purpose, and the guide says so with `default`).

A setting added to app/config.py (or an os.environ read added anywhere in the shipped
code) fails here until it is documented and set, or explicitly left at its default, in
every deployment."""

from pathlib import Path

import faust.types.settings

from app.config import ROOT, Settings
from tests.deploy.support import (
    K8S_EXAMPLE, LIBRARY_ENV, RUNTIME_ENV, all_containers, code_env_names, compose_env, container_env_names,
    documented_env, image_env, our_image, our_services, pod_owners, pod_spec, python_env_reads, render,
)

PLACES = ("set", "default")


def difference(expected: set[str], actual: set[str], expected_name: str, actual_name: str) -> str:
    return (f"in {expected_name} but not {actual_name}: {sorted(expected - actual)}; "
            f"in {actual_name} but not {expected_name}: {sorted(actual - expected)}")


def image_settings() -> set[str]:
    return set(image_env()) - RUNTIME_ENV


def compose_set() -> set[str]:
    names = image_settings()
    for service in our_services().values():
        names |= set(compose_env(service))
    return names


def k8s_set(kustomization: Path) -> set[str]:
    resources = render(kustomization)
    names = image_settings()
    for owner in pod_owners(resources):
        for container in all_containers(pod_spec(owner)):
            names |= container_env_names(container, resources)
    return names


def documented_where(column: str) -> set[str]:
    return {row.name for row in documented_env().values() if getattr(row, column) == "set"}


def test_every_environment_read_names_its_variable_literally():
    assert python_env_reads().dynamic == [], "a variable name computed at run time cannot be checked"


def test_the_guide_documents_exactly_the_variables_the_code_reads():
    documented, read = set(documented_env()), code_env_names()
    assert documented == read, difference(read, documented, "the code", "docs/operations.md")


def test_the_guide_says_for_each_variable_whether_it_is_set_or_left_at_its_default():
    unclear = {row.name: (row.compose, row.k8s) for row in documented_env().values()
               if row.compose not in PLACES or row.k8s not in PLACES}
    assert unclear == {}, f"compose and k8s columns must be one of {PLACES}"


def test_compose_sets_exactly_what_the_guide_says():
    assert compose_set() == documented_where("compose"), difference(
        documented_where("compose"), compose_set(), "the guide's compose column", "docker-compose.yml + image")


def test_kubernetes_sets_exactly_what_the_guide_says():
    actual = k8s_set(K8S_EXAMPLE)
    assert actual == documented_where("k8s"), difference(
        documented_where("k8s"), actual, "the guide's k8s column", "k8s/overlays/example + image")


def test_the_image_sets_only_settings_and_python_runtime_variables():
    assert image_settings() <= code_env_names()


def test_documented_defaults_are_the_code_defaults():
    wrong = {}
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = str(default.relative_to(ROOT)) if isinstance(default, Path) else str(default)
        row = documented_env().get(name.upper())  # an undocumented one fails the test above
        if row is not None and row.default != (shown or '""'):
            wrong[name.upper()] = (row.default, shown)
    assert wrong == {}, "(documented, code)"


def test_library_variables_are_ones_faust_reads():
    faust_env = {param.env_name for param in faust.types.settings.Settings.SETTINGS.values()}
    assert LIBRARY_ENV <= faust_env


def test_no_setting_is_also_a_faust_variable_unless_faust_is_given_the_same():
    """faust reads its variables over the values the code passes: a setting of ours with
    the same name would reconfigure faust behind the code's back, unless it means the same
    to both and the worker passes it on (TOPIC_REPLICATION_FACTOR: tests/deploy/test_image.py)."""
    faust_env = {param.env_name for param in faust.types.settings.Settings.SETTINGS.values()}
    assert {name.upper() for name in Settings.model_fields} & faust_env == LIBRARY_ENV


def test_our_compose_services_use_the_image_the_dockerfile_builds():
    assert our_services(), f"no service uses {our_image()}"
    assert all(service.get("build") == "." for service in our_services().values())
