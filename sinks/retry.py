"""Waiting out Postgres (and Kafka) outages: a connection that reconnects and retries
with exponential backoff, and waits that SIGTERM cuts short.

Nothing is given up on: while Postgres is down the same batch is retried, and nothing
advances until it is written. Only an error in the data of a row (ROW_ERRORS) is the
caller's, since retrying the same rows cannot succeed.
"""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg

from sinks import store
from sinks.monitor import Monitor

log = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 5.0
# Errors in the data of a row (a value Postgres refuses): retrying the same batch cannot
# succeed, so the batch is split to find the record and dead-letter it.
ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError)

T = TypeVar("T")


class Stopping(Exception):
    """Raised out of a wait when SIGTERM asked the sink to stop."""


class Shutdown:
    """SIGTERM's request to stop, and the waits it cuts short. A wait beats the monitor:
    a sink waiting for Postgres or Kafka is alive, not stuck."""

    def __init__(self, beat: Callable[[], None]) -> None:
        self.requested = False
        self.beat = beat

    def request(self, *_: object) -> None:
        """A signal handler."""
        self.requested = True

    def check(self) -> None:
        self.beat()
        if self.requested:
            raise Stopping

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.check()
            time.sleep(min(0.05, deadline - time.monotonic()))


class Backoff:
    """Waits that double from BACKOFF_FIRST_SECONDS up to BACKOFF_MAX_SECONDS."""

    def __init__(self, shutdown: Shutdown) -> None:
        self.shutdown = shutdown
        self.delay = BACKOFF_FIRST_SECONDS

    def wait(self) -> None:
        self.shutdown.sleep(self.delay)
        self.delay = min(self.delay * 2, BACKOFF_MAX_SECONDS)


class Database:
    """The sink's one connection to Postgres, opened again whenever it is lost."""

    def __init__(self, url: str, monitor: Monitor, shutdown: Shutdown) -> None:
        self.url = url
        self.monitor = monitor
        self.shutdown = shutdown
        self.conn: psycopg.Connection | None = None
        self.ok_at = 0.0  # time.monotonic() of the last Postgres operation that succeeded

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run `work` on the connection, reconnecting and retrying while Postgres is
        unreachable. Row errors are the caller's."""
        backoff = Backoff(self.shutdown)
        while True:
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = store.connect(self.url)
                result = work(self.conn)
                self.ok_at = time.monotonic()
                self.monitor.postgres(True)
                return result
            except ROW_ERRORS:
                raise
            except psycopg.Error as error:
                self.monitor.postgres(False)
                log.warning("Postgres unavailable or failing (%s: %s); retrying in %.1f s", type(error).__name__,
                            first_line(error), backoff.delay)
                self.drop_connection()
                backoff.wait()

    def drop_connection(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
        self.conn = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
