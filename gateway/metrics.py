"""Prometheus metrics of the gateway, served at /metrics.

With several uvicorn worker processes, set PROMETHEUS_MULTIPROC_DIR to an empty directory
shared by them (prometheus_client's multiprocess mode): /metrics, whichever process
answers, then reports the sum over all of them. Without it, each process reports its own.
"""

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

# Milliseconds matter here (a command's answer is a few ms): fine buckets at the low end.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter("openride_gateway_requests", "HTTP requests answered",
                   ["method", "route", "status"])
REQUEST_SECONDS = Histogram("openride_gateway_request_duration_seconds", "HTTP request latency",
                            ["method", "route"], buckets=LATENCY_BUCKETS)
COMMAND_SECONDS = Histogram("openride_gateway_command_duration_seconds",
                            "From producing a command to its reply", ["type"], buckets=LATENCY_BUCKETS)
REPLY_TIMEOUTS = Counter("openride_gateway_reply_timeouts", "Commands without a reply in time", ["type"])
IN_FLIGHT = Gauge("openride_gateway_commands_in_flight", "Commands produced and awaiting their reply",
                  multiprocess_mode="livesum")
RATE_LIMITED = Counter("openride_gateway_rate_limited", "Requests refused with 429")
IDEMPOTENT_REPLAYS = Counter("openride_gateway_idempotent_replays", "Responses replayed for an Idempotency-Key")

UNMATCHED = "unmatched"  # requests no route matched: one label, not one per path tried


def exposition() -> tuple[bytes, str]:
    """The metrics in the text format, and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


# The labelled series already used, by label values: `labels()` converts and looks its
# values up under a lock on every call, a measurable share of a command request.
_request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
_command_series: dict[str, Histogram] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    series = _request_series.get((method, route, status))
    if series is None:
        series = _request_series[method, route, status] = (REQUESTS.labels(method, route, str(status)),
                                                           REQUEST_SECONDS.labels(method, route))
    series[0].inc()
    series[1].observe(seconds)


def observe_command(command_type: str, seconds: float) -> None:
    series = _command_series.get(command_type)
    if series is None:
        series = _command_series[command_type] = COMMAND_SECONDS.labels(command_type)
    series.observe(seconds)
