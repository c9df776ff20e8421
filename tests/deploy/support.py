"""What the deployment checks read: the compose file, the Dockerfile, the rendered
kustomize output, the operations guide's variable table, and the code's own settings."""

import ast
import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from app.config import ROOT, Settings

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
OPS_GUIDE = ROOT / "docs" / "operations.md"
KUSTOMIZE = ROOT / "scripts" / "kustomize.sh"
K8S_BASE = ROOT / "k8s" / "base"
K8S_EXAMPLE = ROOT / "k8s" / "overlays" / "example"

# Python shipped in the image; its environment reads count as settings too.
SHIPPED_PYTHON = ("app", "gateway", "sinks", "tools", "deploy")
# faust's own environment variables that we set (faust reads them over the values the
# code passes). Checked against faust's settings table. TOPIC_REPLICATION_FACTOR is also
# a setting of ours, on purpose: the worker passes faust the same value.
LIBRARY_ENV = frozenset({"TOPIC_REPLICATION_FACTOR"})
# Variables of the Python runtime itself, which the image sets and no setting mirrors.
RUNTIME_ENV = frozenset({"PATH", "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"})
ROLES = ("worker", "sink", "gateway", "topics", "migrate")
POD_OWNERS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


# -- the code -------------------------------------------------------------------------


def settings_env_names() -> set[str]:
    """pydantic-settings reads each field from the upper-cased field name (no prefix, no
    aliases: asserted, so a change there fails here instead of silently renaming)."""
    assert Settings.model_config.get("env_prefix", "") == ""
    for name, field in Settings.model_fields.items():
        assert field.alias is None and field.validation_alias is None, f"{name} has an alias"
    return {name.upper() for name in Settings.model_fields}


@dataclass(frozen=True)
class EnvReads:
    names: set[str]
    dynamic: list[str]  # reads whose variable name is not a literal: cannot be checked


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ")


def _is_getenv(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "getenv") or (
        isinstance(node, ast.Name) and node.id == "getenv")


def _literal(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _env_key_nodes(tree: ast.AST) -> list[tuple[ast.AST, ast.expr | None]]:
    """(the read, the expression naming the variable) for every environment read."""
    found: list[tuple[ast.AST, ast.expr | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_environ(node.func.value):
            found.append((node, node.args[0] if node.args else None))
        elif isinstance(node, ast.Call) and _is_getenv(node.func):
            found.append((node, node.args[0] if node.args else None))
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            found.append((node, node.slice))
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            found.append((node, node.left))
    return found


def python_env_reads(packages: tuple[str, ...] = SHIPPED_PYTHON) -> EnvReads:
    names: set[str] = set()
    dynamic: list[str] = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node, key in _env_key_nodes(ast.parse(path.read_text(), str(path))):
                name = _literal(key)
                if name is None:
                    dynamic.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                else:
                    names.add(name)
    return EnvReads(names, dynamic)


def shell_env_reads(path: Path = ENTRYPOINT) -> set[str]:
    """Upper-case $VAR / ${VAR…} references (lower-case ones are the script's own)."""
    return set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", path.read_text()))


def code_env_names() -> set[str]:
    return settings_env_names() | python_env_reads().names | shell_env_reads() | LIBRARY_ENV


# -- the operations guide ---------------------------------------------------------------


@dataclass(frozen=True)
class DocumentedVar:
    name: str
    default: str
    compose: str  # "set" or "default" (left unset on purpose)
    k8s: str


def documented_env() -> dict[str, DocumentedVar]:
    """The rows of the variable table: `| `NAME` | default | compose | k8s | … |`."""
    rows: dict[str, DocumentedVar] = {}
    for line in OPS_GUIDE.read_text().splitlines():
        match = re.match(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|(.*)$", line)
        if match is None:
            continue
        cells = [cell.strip() for cell in match.group(2).split("|")]
        name = match.group(1)
        assert name not in rows, f"{name} is documented twice"
        rows[name] = DocumentedVar(name, cells[0].strip("`"), cells[1], cells[2])
    return rows


# -- docker ----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            result.append((instruction.upper(), arguments.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (instruction, _) in enumerate(instructions) if instruction == "FROM")
    return instructions[last_from:]


def image_env() -> dict[str, str]:
    """ENV of the final stage (KEY=value form)."""
    env: dict[str, str] = {}
    for instruction, arguments in final_stage():
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in arguments.split())
    return env


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def our_image() -> str:
    return compose()["x-openride"]["image"]


def our_services() -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose()["services"].items() if service.get("image") == our_image()}


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=value list form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


# -- kubernetes ------------------------------------------------------------------------


@cache
def render(kustomization: Path) -> tuple[dict[str, Any], ...]:
    """`kustomize build`, with the pinned kustomize (built on first use; fails loudly)."""
    done = subprocess.run([str(KUSTOMIZE), "build", str(kustomization)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"kustomize build {kustomization} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def pod_spec(resource: dict[str, Any]) -> dict[str, Any] | None:
    if resource["kind"] in POD_OWNERS:
        return resource["spec"]["template"]["spec"]
    return None


def pod_owners(resources: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [r for r in resources if pod_spec(r) is not None]


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def named(resources: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def container_env_names(container: dict[str, Any], resources: tuple[dict[str, Any], ...]) -> set[str]:
    """Every variable a container gets: `env` entries and the keys of `envFrom` sources."""
    names = {entry["name"] for entry in container.get("env", [])}
    config_maps, secrets = named(resources, "ConfigMap"), named(resources, "Secret")
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names |= set(config_maps[source["configMapRef"]["name"]].get("data", {}))
        if "secretRef" in source:
            secret = secrets[source["secretRef"]["name"]]
            names |= set(secret.get("data", {})) | set(secret.get("stringData", {}))
    return names
