"""Gateway tests on the real app with a stand-in command bus that checks each command
against the worker's wire models and answers as told. `client` has no Postgres behind it
(commands, validation, authentication, probes with a stand-in pool); `reading_client` reads
a fresh migrated database of the session, so the tests that use it are `integration`. The
end-to-end tests (tests/e2e) run the real broker, worker, sink and gateway."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import get_settings
from gateway.main import create_app
from tests.gateway.stand_ins import FakeBus, NO_DATABASE


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


def serve(database_url: str, bus: FakeBus) -> Iterator[TestClient]:
    settings = get_settings().model_copy(update={"database_url": database_url})
    with TestClient(create_app(settings, bus=bus), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def client(bus: FakeBus) -> Iterator[TestClient]:
    yield from serve(NO_DATABASE, bus)


@pytest.fixture
def reading_client(bus: FakeBus, database_url: str) -> Iterator[TestClient]:
    yield from serve(database_url, bus)
