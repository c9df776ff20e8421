"""The Prometheus alert rules and the Grafana dashboard in deploy/, checked offline: the
rules with Prometheus's own parser and validator (tools/promcheck, what `promtool check
rules` runs), the dashboard's queries with its PromQL parser; every series either names
is one the worker, the sink or the gateway exports; every worker metric is on the
dashboard. (No Prometheus or Grafana here: neither was loaded into a running server.)"""

import json
import subprocess
from functools import cache
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

import gateway.metrics  # noqa: F401 - registers the gateway's metrics in the default registry
from app.worker.monitor import WorkerMonitor
from app.config import ROOT, Settings
from sinks.monitor import Monitor

PROMCHECK = ROOT / "scripts" / "promcheck.sh"
RULES = ROOT / "deploy" / "prometheus" / "openride-alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "openride-dashboard.json"
# Series Prometheus makes itself, not the processes.
PROMETHEUS_OWN = {"up"}
# Grafana's built-in variables, as Grafana fills them in before the query is sent.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",),
                   "summary": ("", "_count", "_sum"), "unknown": ("",)}


def promcheck(*args: str, stdin: str | None = None) -> Any:
    done = subprocess.run([str(PROMCHECK), *args], input=stdin, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def series_of(registry: CollectorRegistry) -> set[str]:
    """The sample names a registry's metrics are exported as."""
    return {family.name + suffix for family in registry.collect() for suffix in SAMPLE_SUFFIXES[family.type]}


@cache
def worker_series() -> set[str]:
    return series_of(WorkerMonitor(None, Settings(), dict).registry)


@cache
def exported() -> set[str]:
    return worker_series() | series_of(Monitor(lambda _: (-1, -1)).registry) | series_of(REGISTRY)


@cache
def rules() -> dict[str, Any]:
    return promcheck("rules", str(RULES))


@cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def queries() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def filled(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_the_checker_catches_a_broken_expression_and_names_metrics():
    broken, good = promcheck("exprs", stdin=json.dumps(["sum(rate(x[5m])", "rate(a_total[5m]) / b"]))
    assert "unclosed left parenthesis" in broken["error"]
    assert good["error"] is None and good["metrics"] == ["a_total", "b"]


def test_the_alert_rules_are_valid_prometheus_rules():
    assert rules()["errors"] == []
    names = [rule["name"] for rule in rules()["rules"]]
    assert len(names) == len(set(names)) and names


@pytest.mark.parametrize("signal, metric", [
    ("lag", "openride_worker_lag"), ("dead letters", "openride_worker_dead_letters_total"),
    ("dead letters", "openride_sink_dead_letters_total"), ("reply timeouts", "openride_gateway_reply_timeouts_total"),
    ("rebalances", "openride_worker_rebalances_total"), ("recovery time", "openride_worker_recovery_seconds"),
])
def test_there_is_an_alert_for_each_signal(signal, metric):
    assert any(metric in rule["metrics"] for rule in rules()["rules"]), f"no alert on {signal} ({metric})"


def test_every_alert_says_how_bad_and_what_it_means():
    for rule in rules()["rules"]:
        assert rule["labels"].get("severity") in ("page", "warning"), rule["name"]
        assert rule["annotations"].get("summary") and rule["annotations"].get("description"), rule["name"]


def test_every_series_the_alerts_name_is_exported():
    for rule in rules()["rules"]:
        assert set(rule["metrics"]) <= exported() | PROMETHEUS_OWN, rule["name"]


def test_the_dashboard_s_queries_parse_and_name_exported_series():
    checked = promcheck("exprs", stdin=json.dumps([filled(expr) for expr in queries()]))
    for entry in checked:
        assert entry["error"] is None, entry
        assert entry["metrics"] and set(entry["metrics"]) <= exported() | PROMETHEUS_OWN, entry


def test_every_worker_metric_is_on_the_dashboard():
    shown = set().union(*(entry["metrics"] for entry in promcheck("exprs", stdin=json.dumps(
        [filled(expr) for expr in queries()]))))
    families = {name.removesuffix(suffix) for name in worker_series() for suffix in ("_bucket", "_total")
                if name.endswith(suffix)} | {name for name in worker_series() if not name.endswith(("_count", "_sum"))}
    assert {f for f in families if not any(s.startswith(f) for s in shown)} == set()


def test_the_dashboard_is_well_formed():
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    [datasource] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert datasource["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${" + datasource["name"] + "}", panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
