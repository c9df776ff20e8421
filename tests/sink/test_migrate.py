"""Migrations: in order, once, safely re-run, also by several runners at once."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.config import ROOT
from sinks.migrate import migrate, migration_files
from tests.support.postgres import rows

pytestmark = pytest.mark.integration

TABLES = {"bookings", "booking_history", "trips", "sink_offsets", "schema_migrations"}


def applied_versions(url: str) -> list[int]:
    return [r[0] for r in rows(url, "SELECT version FROM schema_migrations ORDER BY version")]


def tables(url: str) -> set[str]:
    return {r[0] for r in rows(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_migrate_applies_every_file_once_and_reruns_as_a_no_op(empty_database):
    files = migration_files()
    assert migrate(empty_database) == [m.name for m in files]
    assert migrate(empty_database) == []
    assert applied_versions(empty_database) == [m.version for m in files]
    assert tables(empty_database) >= TABLES


def test_concurrent_runners_apply_each_migration_exactly_once(empty_database):
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: migrate(empty_database), range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(migration_files())]
    assert applied_versions(empty_database) == [m.version for m in migration_files()]


def test_the_command_line_takes_a_database_url(empty_database):
    subprocess.run([sys.executable, "-m", "sinks.migrate", "--database-url", empty_database], cwd=ROOT,
                   check=True, capture_output=True, timeout=60)
    assert tables(empty_database) >= TABLES
