"""A booking's whole life over HTTP (the README's example), an Idempotency-Key that outlives
a gateway killed with SIGKILL, and a gateway running several uvicorn worker processes,
each on its own reply partition. Real broker, worker, sink and Postgres."""

import asyncio
import fcntl
import os
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta

import httpx
import pytest

from app.config import ROOT, get_settings
from app.wire.topics import CONTRACT
from app.transport.bus import reply_locks
from devstack.processes import free_port
from devstack.stack import Stack
from tests.support.http import auth
from tests.support.http import publish as publish_trip

pytestmark = pytest.mark.integration

TRAVEL_DATE = (date.today() + timedelta(days=7)).isoformat()
TRIP = {"timezone": "Africa/Lagos", "departureTime": "09:00", "capacity": 14,
        "stops": [{"stopId": "LAG", "offsetMinutes": 0}, {"stopId": "IBD", "offsetMinutes": 90}],
        "legFares": ["2500.00"]}


def publish(client: httpx.Client) -> str:
    route_id = "LC" + uuid.uuid4().hex[:8]
    publish_trip(client, route_id, TRAVEL_DATE, TRIP, "route-svc-lc")
    return route_id


def test_hold_payment_confirm_cancel_refund(stack: Stack) -> None:
    rider, payments = auth("rider-lc"), auth("payments-lc", "SERVICE")
    with stack.client() as client:
        route_id = publish(client)
        created = client.post("/v1/bookings", headers=rider, json={
            "routeId": route_id, "travelDate": TRAVEL_DATE, "originStopId": "LAG", "destinationStopId": "IBD",
            "seatsBooked": 2})
        assert created.status_code == 201, created.text
        booking = created.json()["booking"]
        assert (booking["status"], booking["totalPrice"]) == ("HELD", "5250.00")
        path = f"/v1/bookings/{booking['id']}"

        initiated = client.post(f"{path}/payment", headers=payments, json={"paymentId": "pay-lc"})
        assert initiated.json()["status"] == "PAYMENT_INITIATED"
        assert initiated.json()["expiresAt"] > booking["expiresAt"]  # the hold was extended

        short = client.post(f"{path}/confirm", headers=payments,
                            json={"paymentId": "pay-lc", "paymentStatus": "SUCCESS", "amount": "5000.00"})
        assert (short.status_code, short.json()["code"]) == (422, "amount_mismatch")
        paid = {"paymentId": "pay-lc", "paymentStatus": "SUCCESS", "amount": "5250.00"}
        confirmed = client.post(f"{path}/confirm", headers=payments, json=paid)
        assert confirmed.json()["status"] == "CONFIRMED" and confirmed.json()["paymentStatus"] == "SUCCESS"
        twice = client.post(f"{path}/confirm", headers=payments, json=paid)
        assert twice.status_code == 200 and twice.json() == confirmed.json()  # confirming twice is a no-op

        cancelled = client.post(f"{path}/cancel", headers=rider, json={"reason": "my plans changed, sorry"})
        body = cancelled.json()
        assert (body["status"], body["refundAmount"], body["refundStatus"]) == ("CANCELLED", "5250.00", "PENDING")

        refunded = client.post(f"{path}/refund-done", headers=payments, json={"amount": "5250.00"})
        assert (refunded.json()["status"], refunded.json()["refundStatus"]) == ("REFUNDED", "PROCESSED")

        legs = client.get(f"/v1/trips/{route_id}/{TRAVEL_DATE}/availability", headers=rider).json()["legs"]
        assert legs == [{"fromStopId": "LAG", "toStopId": "IBD", "free": 14, "held": 0, "sold": 0}]

        deadline = time.monotonic() + 30  # reads come from Postgres, a moment behind
        while (read := client.get(path, headers=rider).json()).get("status") != "REFUNDED":
            assert time.monotonic() < deadline, read
            time.sleep(0.2)
        assert read == refunded.json()


def test_an_idempotency_key_outlives_a_gateway_killed_with_sigkill(stack: Stack) -> None:
    with stack.client() as client:
        route_id = publish(client)
        request = {"routeId": route_id, "travelDate": TRAVEL_DATE, "originStopId": "LAG", "destinationStopId": "IBD",
                   "seatsBooked": 2}
        headers = {**auth("rider-sigkill"), "Idempotency-Key": str(uuid.uuid4())}
        first = client.post("/v1/bookings", json=request, headers=headers)
        assert first.status_code == 201, first.text
    gateway = stack.services["gateway"]
    gateway.kill()
    gateway.start()
    stack.wait_ready()
    with stack.client() as client:
        again = client.post("/v1/bookings", json=request, headers=headers)
        assert again.status_code == 201 and again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        other = client.post("/v1/bookings", json={**request, "seatsBooked": 1}, headers=headers)
        assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
        legs = client.get(f"/v1/trips/{route_id}/{TRAVEL_DATE}/availability", headers=headers).json()["legs"]
        assert legs[0]["held"] == 2


@pytest.fixture
def two_process_gateway(stack: Stack, tmp_path):
    """The gateway as `uvicorn --workers 2`, next to the stack's own, with Prometheus's
    multiprocess directory shared by both processes."""
    port = free_port()
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {**stack.services["gateway"].env, "GATEWAY_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    log = (tmp_path / "gateway-2.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "gateway.main:create_app", "--factory", "--http",
                                "gateway.server:HttpProtocol", "--host", "127.0.0.1", "--port", str(port),
                                "--workers", "2"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "gateway-2.log").read_text()
            try:
                if httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "gateway-2.log").read_text()
            time.sleep(0.3)
        yield base_url, metrics_dir
    finally:
        process.terminate()
        process.wait(timeout=30)


def locked_reply_partitions(stack: Stack) -> list[str]:
    """The reply partitions held by gateway processes of this host reading the stack's topic."""
    replies = stack.namespace + CONTRACT.replies.removeprefix(CONTRACT.namespace)
    locked = []
    for path in reply_locks(replies, get_settings().kafka_bootstrap).glob("*.lock"):
        descriptor = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            locked.append(path.stem)
        finally:
            os.close(descriptor)
    return locked


def test_several_uvicorn_workers_each_get_their_replies(stack: Stack, two_process_gateway) -> None:
    base_url, metrics_dir = two_process_gateway
    with stack.client() as client:
        route_id = publish(client)
    request = {"routeId": route_id, "travelDate": TRAVEL_DATE, "originStopId": "LAG", "destinationStopId": "IBD",
               "seatsBooked": 1}
    key = str(uuid.uuid4())

    async def burst() -> tuple[list[httpx.Response], list[httpx.Response]]:
        # a fresh connection per request, so the requests spread over both processes
        async with httpx.AsyncClient(base_url=base_url, timeout=30,
                                     limits=httpx.Limits(max_keepalive_connections=0)) as client:
            riders = asyncio.gather(*(client.post("/v1/bookings", json=request, headers=auth(f"mw-rider-{i}"))
                                      for i in range(12)))
            duplicates = asyncio.gather(*(client.post("/v1/bookings", json=request,
                                                      headers={**auth("mw-dup"), "Idempotency-Key": key})
                                          for _ in range(6)))
            return await riders, await duplicates

    riders, duplicates = asyncio.run(burst())
    assert [r.status_code for r in riders] == [201] * 12, [r.text for r in riders if r.status_code != 201]
    assert len({s for r in riders for s in r.json()["booking"]["seatNumbers"]}) == 12
    assert [r.status_code for r in duplicates] == [201] * 6
    ids = {r.json()["booking"]["id"] for r in duplicates}
    assert len(ids) == 1  # one booking, however many processes answered
    with httpx.Client(base_url=base_url, timeout=10) as client:
        final = client.post("/v1/bookings", json=request, headers={**auth("mw-dup"), "Idempotency-Key": key})
        assert final.status_code == 201 and final.json()["booking"]["id"] in ids
        metrics = client.get("/metrics").text
    # One sum over both processes (prometheus_client's multiprocess mode):
    created = [line for line in metrics.splitlines()
               if line.startswith('openride_gateway_requests_total{method="POST",route="/v1/bookings",status="201"}')]
    assert len(created) == 1 and float(created[0].split()[-1]) == 12 + len(duplicates) + 1
    serving = {path.stem.rsplit("_", 1)[-1] for path in metrics_dir.glob("counter_*.db")}
    print(f"processes that served requests: {len(serving)}")
    # The stack's own gateway and these two each hold the lock of a reply partition of their
    # own. (Polled: on a loaded machine uvicorn's supervisor may be restarting a worker that
    # missed its health check, and the new process takes a partition once it has started.)
    deadline = time.monotonic() + 30
    while len(locked := locked_reply_partitions(stack)) != 3:
        assert time.monotonic() < deadline, f"held: {locked}"
        time.sleep(0.5)
