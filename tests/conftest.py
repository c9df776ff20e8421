import os
import uuid
from collections.abc import Iterator

# The suite's settings, before anything reads them (in this process and the services it
# starts): tokens signed with the development key, and room for the authorization matrix,
# which sends many bad tokens from one address (the allowance has tests of its own).
os.environ.setdefault("ENVIRONMENT", "development")
os.environ.setdefault("FAILED_AUTH_PER_MINUTE", "100000")
os.environ.setdefault("FAILED_AUTH_BURST", "100000")

import pytest  # noqa: E402 - after the settings above

from devstack.stack import Stack, own_topics, start_stack  # noqa: E402
from tests.support import postgres  # noqa: E402

# The fixtures that reach the real broker or Postgres: a test that uses one, directly or
# through another fixture, is `integration`, so that `pytest -m "not integration"` runs
# with neither.
REAL_INFRASTRUCTURE = frozenset({"database_url", "stack", "postgres", "kafka_topics"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items
                if REAL_INFRASTRUCTURE.intersection(getattr(item, "fixturenames", ()))
                and item.get_closest_marker("integration") is None]
    if unmarked:
        raise pytest.UsageError("tests that use the real broker or Postgres but are not marked integration:\n  "
                                + "\n  ".join(unmarked))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database for this test session."""
    from sinks.migrate import migrate

    name = postgres.create_database()
    url = postgres.database_url(name)
    migrate(url)
    yield url
    postgres.drop_database(name)


@pytest.fixture(scope="session")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Worker, sink and gateway on topics of their own. On the shared ones a new worker
    group would first replay every command the suite sent before it (from the earliest
    offset), and answer the first requests only after that: 12 s here, past the
    gateway's reply timeout on a slower machine."""
    namespace = {"TOPIC_NAMESPACE": f"e2e{uuid.uuid4().hex[:8]}."}
    own_topics(namespace)
    # The OpenAPI document's examples name a trip in 2030, further ahead than trips may be
    # published by default (the window has tests of its own, in the core and the processor).
    settings_env = {**namespace, "TRIP_DAYS_AHEAD_MAX": "36500"}
    running = start_stack(database_url, tmp_path_factory.mktemp("stack"), settings_env)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()
