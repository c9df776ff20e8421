"""The audit trail: who did what, with which outcome, for every state-changing request and
every admin or manifest read.

A route marks its request with `note(...)`; once the response has been sent, the request
middleware calls `record(...)`, which writes one JSON log line (logger "openride.audit")
and produces the same JSON to the audit topic (key = user id). The log line is the
record of last resort: the topic send is fire-and-forget and never fails a request.
"""

import logging
from typing import Any, Protocol

import orjson
from starlette.requests import Request

from app.domain.commands import Actor
from app.models import topics
from gateway.errors import now_iso
from gateway.security import Principal

log = logging.getLogger("openride.audit")

STATE_KEY = "audit"


class Publisher(Protocol):
    def publish(self, topic: str, key: str, value: bytes) -> None: ...


def note(request: Request, actor: Actor, action: str, **target: Any) -> dict[str, Any]:
    """Marks the request for the audit trail; returns the entry to add details to."""
    entry = {"userId": actor.user_id, "role": actor.role.value, "action": action,
             **{name: value for name, value in target.items() if value is not None}}
    request.state.audit = entry
    return entry


def note_refusal(request: Request, principal: Principal, action: str) -> None:
    """Marks a request refused for its caller's roles (403)."""
    request.state.audit = {"userId": principal.user_id, "roles": sorted(principal.roles), "action": action}


def entry_of(state: dict[str, Any]) -> dict[str, Any] | None:
    return state.get(STATE_KEY)


def record(publisher: Publisher | None, entry: dict[str, Any], request_id: str, status: int) -> None:
    line = {"at": now_iso(), "requestId": request_id, **entry, "status": status,
            "outcome": "ok" if status < 400 else "refused" if status < 500 else "failed"}
    value = orjson.dumps(line)
    log.info(value.decode())
    if publisher is not None:
        publisher.publish(topics.AUDIT, entry["userId"], value)
