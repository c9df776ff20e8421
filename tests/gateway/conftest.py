"""Gateway tests on the real app and a real Postgres (a fresh migrated database per
session: reads, the Idempotency-Key store), with a stand-in command bus that checks each
command against the worker's wire models and answers as told. The end-to-end tests
(tests/e2e) run the real broker, worker, sink and gateway."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import get_settings
from gateway.main import create_app
from tests.gateway.support import FakeBus


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


@pytest.fixture
def client(bus: FakeBus, database_url: str) -> Iterator[TestClient]:
    settings = get_settings().model_copy(update={"database_url": database_url})
    with TestClient(create_app(settings, bus=bus), raise_server_exceptions=False) as test_client:
        yield test_client
