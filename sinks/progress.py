"""The sink's rate in its log: every few seconds at INFO, and once for the whole run."""

import logging
import time

log = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 5.0


class Progress:
    """Counts events; reports a rate every few seconds at INFO, and one for the whole run."""

    def __init__(self) -> None:
        self.total = 0
        self.dead = 0
        self.busy_seconds = 0.0  # consuming and writing non-empty batches, idle polls excluded
        self.window_events = 0
        self.window_start = time.monotonic()

    def add(self, events: int, dead: int, busy_seconds: float) -> None:
        self.total += events
        self.dead += dead
        self.busy_seconds += busy_seconds
        self.window_events += events

    def maybe_report(self) -> None:
        elapsed = time.monotonic() - self.window_start
        if elapsed < PROGRESS_EVERY_SECONDS:
            return
        if self.window_events:
            log.info("applied %d events in %.1f s (%.0f events/s); %d total, %d dead-lettered",
                     self.window_events, elapsed, self.window_events / elapsed, self.total, self.dead)
        self.window_events = 0
        self.window_start = time.monotonic()

    def summary(self) -> str:
        """The rate while there was work: what the sink can do when draining a backlog."""
        rate = f"{self.total / self.busy_seconds:.0f} events/s" if self.busy_seconds else "n/a events/s"
        return f"{self.total} events ({self.dead} dead-lettered) in {self.busy_seconds:.2f} s busy, {rate}"
