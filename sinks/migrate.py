"""`python -m sinks.migrate [--database-url URL]`: apply pending migrations in order.

Migrations are `migrations/NNNN_name.sql`, applied by ascending number, each in its own
transaction together with its row in schema_migrations, so a failed one leaves nothing
behind. A session advisory lock serialises concurrent runs (several sink replicas or
gateways starting at once): the second waits, then finds nothing left to do.
Statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY) are not supported.
"""

import argparse
import hashlib
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

from app.config import ROOT, get_settings

log = logging.getLogger("sinks.migrate")

MIGRATIONS_DIR = ROOT / "migrations"
FILE_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")
# Any constant shared by every runner; this one spells "openride" in ASCII.
LOCK_KEY = 0x6F70656E72696465

BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    int         PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file name must be NNNN_name.sql: {path.name}")
        migrations.append(Migration(int(match.group(1)), path.stem, path.read_text()))
    versions = [m.version for m in migrations]
    if len(versions) != len(set(versions)):
        raise ValueError(f"two migrations share a number in {directory}")
    return sorted(migrations, key=lambda m: m.version)


def applied_checksums(conn: psycopg.Connection) -> dict[int, str]:
    return dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())


def warn_if_edited(migration: Migration, recorded: str) -> None:
    """An applied migration edited afterwards is not re-applied: say so, since the schema
    in the file and in the database may now differ."""
    if recorded != migration.checksum:
        log.warning("migration %s changed since it was applied; add a new migration instead", migration.name)


def apply(conn: psycopg.Connection, migration: Migration) -> None:
    with conn.transaction():
        conn.execute(migration.sql.encode())  # no parameters: sent as is, several statements allowed
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )
    log.info("applied migration %s", migration.name)


def migrate(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is pending; returns the names applied (empty when up to date)."""
    migrations = migration_files(directory)
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(BOOTSTRAP)
            done = applied_checksums(conn)
            for migration in migrations:
                if migration.version in done:
                    warn_if_edited(migration, done[migration.version])
                    continue
                apply(conn, migration)
                applied_now.append(migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied_now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sinks.migrate", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: settings.database_url (DATABASE_URL)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    url = args.database_url or get_settings().database_url
    applied = migrate(url)
    log.info("schema up to date (%d applied now)", len(applied))
    return 0


if __name__ == "__main__":
    sys.exit(main())
