"""The audit trail: who did what, with which outcome, for every state-changing request and
every admin or manifest read.

A route marks its request with `note(...)`; once the response has been sent, the request
middleware hands the entry to the process's `AuditTrail`, which writes entries in batches,
off the request's path: each becomes one JSON log line (logger "openride.audit", when
INFO is enabled for it) and one record of the audit topic (key = user id, the same JSON).
The log line is the record of last resort: the topic send is fire-and-forget and never
fails a request. A batch waits at most FLUSH_SECONDS, so a process killed with SIGKILL
loses at most that much of its trail; a clean stop writes what is pending.
"""

import asyncio
import logging
import time
from typing import Any

import orjson

from app.domain.commands import Actor
from app.transport.bus import Bus
from gateway.errors import Timestamps
from gateway.security import Principal

log = logging.getLogger("openride.audit")

STATE_KEY = "audit"
FLUSH_SECONDS = 0.05
FLUSH_AT = 1_000  # entries: a batch this long is written at once


def note(request_state: dict[str, Any], actor: Actor, action: str, **target: Any) -> dict[str, Any]:
    """Marks the request (its ASGI scope's "state") for the audit trail; returns the entry
    to add details to."""
    entry = {"userId": actor.user_id, "role": actor.role.value, "action": action,
             **{name: value for name, value in target.items() if value is not None}}
    request_state[STATE_KEY] = entry
    return entry


def note_refusal(request_state: dict[str, Any], principal: Principal, action: str) -> None:
    """Marks a request refused for its caller's roles (403)."""
    request_state[STATE_KEY] = {"userId": principal.user_id, "roles": sorted(principal.roles), "action": action}


def entry_of(state: dict[str, Any]) -> dict[str, Any] | None:
    return state.get(STATE_KEY)


class AuditTrail:
    """Collects finished requests' entries and writes them a batch at a time."""

    def __init__(self, topic: str) -> None:
        self.topic = topic  # the audit topic
        self.publisher: Bus | None = None  # the command bus, once the app has started
        self.pending: list[tuple[float, str, dict[str, Any], int]] = []
        self.flushing: asyncio.TimerHandle | None = None
        self.stamp = Timestamps()

    def record(self, entry: dict[str, Any], request_id: str, status: int) -> None:
        self.pending.append((time.time(), request_id, entry, status))
        if len(self.pending) >= FLUSH_AT:
            self.flush()
        elif self.flushing is None:
            self.flushing = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self.flushing is not None:
            self.flushing.cancel()
            self.flushing = None
        batch, self.pending = self.pending, []
        logging_on = log.isEnabledFor(logging.INFO)
        for at, request_id, entry, status in batch:
            value = orjson.dumps({"at": self.stamp(at), "requestId": request_id, **entry, "status": status,
                                  "outcome": "ok" if status < 400 else "refused" if status < 500 else "failed"})
            if logging_on:
                log.info(value.decode())
            if self.publisher is not None:
                self.publisher.publish(self.topic, entry["userId"], value)
