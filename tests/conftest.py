import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.sink.support import drop_database
from tests.stack import Stack, start_stack


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database for this test session."""
    from sinks.migrate import migrate

    base = os.environ.get("DATABASE_URL", "postgresql://openride:openride@127.0.0.1:5433/openride")
    name = f"openride_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(base, name)
    migrate(url)
    yield url
    drop_database(name)


@pytest.fixture(scope="session")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(database_url, tmp_path_factory.mktemp("stack"))
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()
