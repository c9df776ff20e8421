"""Fixtures of the sink tests: a fresh, migrated database per test (dropped afterwards),
the topics the sink reads, and a sink subprocess that is always stopped."""

import psycopg
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from app.config import get_settings
from app.wire.topics import CONTRACT
from sinks.events import SUBSCRIBED
from sinks.migrate import migrate
from tests.sink import support
from tests.support.kafka import bootstrap
from tests.support.postgres import create_database, database_url, drop_database


@pytest.fixture(scope="session")
def postgres() -> str:
    url = get_settings().database_url
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        pytest.fail(f"Postgres not reachable at {url} (scripts/postgres.sh start): {error}")
    return url


@pytest.fixture
def empty_database(postgres):
    """A new database, unmigrated; its URL."""
    name = create_database()
    try:
        yield database_url(name)
    finally:
        drop_database(name)


@pytest.fixture
def database(empty_database) -> str:
    migrate(empty_database)
    return empty_database


@pytest.fixture(scope="session")
def kafka_topics() -> None:
    """The topics exist in any real setup (`python -m tools.create_topics`); create the missing
    ones for a bare broker. Never deletes anything: the broker is shared."""
    admin = AdminClient({"bootstrap.servers": bootstrap()})
    try:
        existing = admin.list_topics(timeout=10).topics
    except Exception as error:  # noqa: BLE001 - any failure here means no broker
        pytest.fail(f"Kafka not reachable at {bootstrap()} (scripts/kafka.sh start): {error}")
    partitions = get_settings().event_partitions
    missing = [NewTopic(t, partitions, 1) for t in (*SUBSCRIBED, CONTRACT.dead_letters) if t not in existing]
    for topic, future in admin.create_topics(missing).items() if missing else ():
        try:
            future.result(30)
        except Exception as error:  # noqa: BLE001 - created meanwhile by someone else is fine
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise


@pytest.fixture
def sink_database(database, kafka_topics) -> str:
    """A migrated database whose sink starts at the current end of the shared topics."""
    support.start_sink_at_log_end(database)
    return database


@pytest.fixture
def sink_process(sink_database, tmp_path):
    """A sink subprocess on `sink_database` (not started); killed if a test leaves it running."""
    process = support.SinkProcess(sink_database, tmp_path / "sink.log")
    yield process
    process.ensure_stopped()
