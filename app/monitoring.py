"""A process's own small HTTP server for operators, used by the worker
(app.worker.monitor) and the sink (sinks.monitor):

- `GET /metrics`: the process's Prometheus registry, in the text format;
- `GET /health/live`, `GET /health/ready`: 200 `{"status": "UP", "checks": …}` or 503
  with `"DOWN"`, as the process's `health()` says.

It runs in a daemon thread, so it answers whatever the process's own loop is doing; it
reports what that loop last recorded (counters, heartbeats, snapshots), and never calls
into it. Port 0 takes any free port and logs it (tests run several processes); a port
that is taken fails at start-up, rather than leaving a process nobody can watch.
"""

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily

log = logging.getLogger(__name__)

# (live, ready, the checks behind them)
Health = Callable[[], tuple[bool, bool, dict[str, object]]]


class SnapshotGauge:
    """A gauge family computed at scrape time: `read()` gives (label values, value) pairs,
    so a series no longer read (a partition moved away) disappears with it."""

    def __init__(self, name: str, documentation: str, labels: list[str],
                 read: Callable[[], Iterable[tuple[tuple[object, ...], float]]]) -> None:
        self.name, self.documentation, self.labels, self.read = name, documentation, labels, read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in self.read():
            family.add_metric([str(label) for label in labels], value)
        yield family


def serve(registry: CollectorRegistry, health: Health, host: str, port: int, name: str) -> ThreadingHTTPServer:
    """Starts the server in a daemon thread; `name` is the process's, for the log line."""
    server = ThreadingHTTPServer((host, port), _handler_for(registry, health))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"{name}-monitoring", daemon=True).start()
    bound_host, bound_port = server.server_address[:2]
    log.info("%s monitoring on http://%s:%d (/metrics, /health/live, /health/ready)", name, bound_host, bound_port)
    return server


def _handler_for(registry: CollectorRegistry, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self.reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/health/live", "/health/ready"):
                live, ready, checks = health()
                up = live if path == "/health/live" else ready
                body = {"status": "UP" if up else "DOWN", "checks": checks}
                self.reply(200 if up else 503, json.dumps(body).encode(), "application/json")
            else:
                self.reply(404, b'{"status": "NOT_FOUND"}', "application/json")

        def reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:  # probes every few seconds: not worth a log line
            pass

    return Handler
