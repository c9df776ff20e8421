"""The worker's own /metrics and /health/* (app.worker.monitor), from a real worker
process: not ready until its partitions are assigned and recovered; commands counted by
type and outcome, dead letters by code, lag per partition; killed and started again on an
empty data dir, it reports the changelog records it loaded, and is ready again once its
tables are recovered."""

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.processes import Service
from tests.processor.commands import create_booking, on_trip, publish_trip, trip_key
from tests.processor.namespace import Namespace, PARTITIONS, worker_namespace
from tests.processor.sending import answers
from tests.support.kafka import produce_raw
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SERVED_AT = re.compile(r"worker monitoring on (http://[\d.]+:\d+)")


@pytest.fixture(scope="module")
def ns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    with worker_namespace(tmp_path_factory.mktemp("monitor"), worker=None) as namespace:
        yield namespace


def monitor_url(worker: Service, after: int = 0) -> str:
    """The address the worker logged (it listens on any free port in tests); `after`: the
    log's length before this start, so a restarted worker's new address is found."""
    def logged() -> str | None:
        found = SERVED_AT.findall(worker.log_path.read_text(errors="replace")[after:])
        return found[-1] if found else None
    return wait_for("the worker's monitoring address in its log", logged, timeout_s=60, every_s=0.05)


def status(url: str, path: str) -> int:
    try:
        return httpx.get(url + path, timeout=5).status_code
    except httpx.TransportError:
        return 0


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    text = httpx.get(url + "/metrics", timeout=5).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def snapshot_where(url: str, gauge: str) -> dict | None:
    """The samples once `gauge` is above 0: the gauges are a snapshot of the worker's loop,
    taken every second, so a state just reached shows a moment later."""
    found = samples(url)
    return found if value(found, gauge) > 0 else None


def test_health_metrics_and_a_load_from_the_changelogs_are_reported(ns: Namespace) -> None:
    worker = ns.start_worker("observed")
    url = monitor_url(worker)
    first = wait_for("a first answer to /health/ready", lambda: status(url, "/health/ready"), every_s=0.05)
    assert first == 503, "ready before the group assigned anything"
    wait_for("ready", lambda: status(url, "/health/ready") == 200, timeout_s=120)
    assert status(url, "/health/live") == 200 and status(url, "/nothing") == 404

    route = "M" + uuid.uuid4().hex[:8]
    booking = create_booking(route, "rider-m")
    published, created, again, unknown = answers(ns, publish_trip(route), booking, booking,
                                              on_trip("query_availability", "nowhere-" + route))
    assert published["ok"] and created["ok"] and unknown["code"] == "trip_not_found"
    assert again == {**created, "replayed": True}  # the duplicate's reply, marked as a replay
    produce_raw(ns.topics.commands, trip_key(route), b"{not json", {})
    answers(ns, on_trip("query_availability", route))  # handled after the malformed record: it was counted

    found = wait_for("a snapshot of the worker ready", lambda: snapshot_where(url, "openride_worker_ready"))
    assert value(found, "openride_worker_commands_total", type="create_booking", outcome="accepted") == 1
    assert value(found, "openride_worker_commands_total", type="create_booking", outcome="duplicate") == 1
    assert value(found, "openride_worker_commands_total", type="query_availability", outcome="rejected") == 1
    assert value(found, "openride_worker_commands_total", type="unknown", outcome="dead_letter") == 1
    assert value(found, "openride_worker_commands_total", type="tick", outcome="accepted") > 0
    assert value(found, "openride_worker_dead_letters_total", code="invalid_json") == 1
    assert value(found, "openride_worker_handle_seconds_count") >= 6
    # Ticks go on arriving while the page is written: batches and their records at least.
    assert value(found, "openride_worker_batch_records_sum") >= 6
    assert 1 <= value(found, "openride_worker_batch_records_count") <= value(found, "openride_worker_batch_records_sum")
    assert value(found, "openride_worker_batch_seconds_count") >= 1
    assert value(found, "openride_worker_partitions", role="active") == PARTITIONS
    assert value(found, "openride_worker_recovering") == 0
    assert value(found, "openride_worker_recovery_loaded_records_total") == 0  # nothing in the changelogs yet

    def lag() -> dict | None:
        """Once every partition has had a record (the ticks reach them all every second)."""
        found = {labels: v for (name, labels), v in samples(url).items() if name == "openride_worker_lag"}
        return found if len(found) == PARTITIONS else None
    per_partition = wait_for("a lag for every partition", lag, timeout_s=60)
    assert {dict(labels)["topic"] for labels in per_partition} == {ns.topics.commands}
    assert all(v >= 0 for v in per_partition.values())

    length = len(worker.log_path.read_text(errors="replace"))
    worker.kill()
    worker.env["WORKER_DATADIR"] = str(ns.workdir / "empty")  # its tables loaded from the changelogs
    worker.start()
    url = monitor_url(worker, after=length)
    wait_for("ready after the load", lambda: status(url, "/health/ready") == 200, timeout_s=120)
    # A snapshot taken ready: one taken during the recovery (its seconds counting already)
    # may still be served for a second after /health/ready, which is answered live.
    found = wait_for("a snapshot after the recovery", lambda: snapshot_where(url, "openride_worker_ready"))
    assert value(found, "openride_worker_recovery_seconds") > 0
    assert value(found, "openride_worker_recovery_loaded_records_total") >= 3  # the trip, its booking, ...
    assert value(found, "openride_worker_recovery_remaining_records", role="active") == 0
    assert answers(ns, on_trip("query_availability", route))[0]["ok"], "the loaded tables know the trip"
