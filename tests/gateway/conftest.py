"""Unit-level gateway tests: the real app, with its own Kafka and Postgres dependencies
overridden (the end-to-end tests run the real broker, worker, sink and gateway)."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from gateway import deps
from gateway.main import create_app
from tests.gateway.support import FakeBus, FakePool, FakeReads


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


@pytest.fixture
def reads() -> FakeReads:
    return FakeReads()


@pytest.fixture
def pool() -> FakePool:
    return FakePool()


@pytest.fixture
def client(bus: FakeBus, reads: FakeReads, pool: FakePool) -> Iterator[TestClient]:
    app = create_app()
    app.dependency_overrides[deps.get_bus] = lambda: bus
    app.dependency_overrides[deps.get_reads] = lambda: reads
    app.dependency_overrides[deps.get_pool] = lambda: pool
    # No `with`: the lifespan (real Kafka and Postgres) does not run.
    yield TestClient(app, raise_server_exceptions=False)
