"""Probes and the OpenAPI document."""

from gateway import deps
from tests.gateway.stand_ins import FakePool


def test_live_is_always_200(client):
    response = client.get("/health/live")
    assert response.status_code == 200 and response.json() == {"status": "UP"}


def test_ready_when_everything_answers(client):
    client.app.dependency_overrides[deps.get_pool] = FakePool
    response = client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"kafka": True, "replyConsumer": True, "postgres": True}


def test_postgres_down_leaves_the_gateway_ready_for_commands(client):
    pool = FakePool()
    client.app.dependency_overrides[deps.get_pool] = lambda: pool
    pool.up = False
    response = client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "DEGRADED", "checks": {"kafka": True, "replyConsumer": True,
                                                                "postgres": False}}


def test_not_ready_names_what_is_down(client, bus):
    pool = FakePool()
    client.app.dependency_overrides[deps.get_pool] = lambda: pool
    bus.replies_assigned = False
    pool.up = False
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "not_ready" and "retry-after" in response.headers
    assert body["checks"] == {"kafka": True, "replyConsumer": False, "postgres": False}


def test_openapi_has_the_bearer_scheme_and_no_422_validation_body(client):
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    create = spec["paths"]["/v1/bookings"]["post"]
    assert create["security"] == [{"HTTPBearer": []}]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "400" in create["responses"] and "201" in create["responses"]
    assert client.get("/docs").status_code == 200
