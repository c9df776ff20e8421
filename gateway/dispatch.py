"""One request's way to the command log: the command id and fingerprint (from the
Idempotency-Key and the request), the audit entry, the metrics, and the reply turned into
a response.

Idempotency lives with the trip's single writer, not in a store on the request's path: a
request with an Idempotency-Key becomes a command whose id is derived from (user, key,
trip) and which carries the request's fingerprint (method, path, canonical body). The
worker remembers the fingerprint with the outcome, for as long as it keeps the trip's
state: the same command id again gets the original outcome (the reply says it is a
replay: `Idempotent-Replayed: true`), with another fingerprint `idempotency_key_reused`
(422). So a retry is answered the same on any gateway process, after a gateway crash,
after a 503, and a duplicate sent while the first is in flight is answered like the
first (this process makes it wait for the first one's reply; another process sends it,
and the worker recalls it).

A key is scoped to its user and to the trip the request acts on (the trip booked, or the
trip of the booking named): the same key sent for another trip is another request.
Refusing it would take a lookup across every trip's writer on each command, the
synchronous round trip this design removes; both requests are then applied once each,
and each one's retries get its own outcome.
"""

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import Scope

from app.domain.commands import Actor
from app.domain.ids import trip_of_booking
from app.domain.rejections import MESSAGES, Code
from app.domain.trip import trip_key
from app.wire.topics import REPLAYED
from app.wire.commands import ActorIn, CommandIn
from gateway import audit, metrics
from gateway.errors import ApiError, error_response, rejection
from gateway.holds import HoldLedger
from app.transport.bus import Bus, KafkaUnavailable, ReplyTimeout

C = TypeVar("C", bound=CommandIn)

# Fixed for good: changing it would change every derived command id, and a client's retry
# with its Idempotency-Key would no longer find the original outcome.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c3c2e-5b8a-4d1e-9a53-0c7f1e2b9d40")
# Joins the parts. Neither a user id nor a key may hold it (both are refused with control
# characters before they get here), which is what makes the join injective: otherwise
# user "vic" with key "x<SEP>k1" would be user "vic<SEP>x" with key "k1".
SEPARATOR = "\x1f"
FINGERPRINT_HEX = 32  # 128 bits of SHA-256


def command_id_for(user_id: str, idempotency_key: str | None, trip: str) -> str:
    """Same user + same key + same trip -> same command id, so the trip's writer answers a
    retry with the original outcome, whatever the operation (another operation under the
    same key is then told apart by its fingerprint). Keys are per user: one rider's key
    never finds another rider's booking. Without a key every request is new."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    if SEPARATOR in user_id or SEPARATOR in idempotency_key:
        raise ValueError("a user id or idempotency key holds the command id separator")
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, SEPARATOR.join((user_id, idempotency_key, trip))))


def fingerprint(method: str, path: str, body: Any) -> str:
    """What makes two requests "the same": method, path and the validated body in a
    canonical form (key order and whitespace of the client's JSON do not matter)."""
    canonical = orjson.dumps([method, path, body], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:FINGERPRINT_HEX]


def trip_of(fields: dict[str, Any]) -> str:
    """The trip a command acts on, from its fields (a booking or waiting-list entry id
    names its trip)."""
    named_by = fields.get("booking_id") or fields.get("entry_id")
    if named_by is not None:
        named = trip_of_booking(named_by)
        return trip_key(*named) if named else ""
    return trip_key(fields["route_id"], fields["travel_date"])


UNANSWERED = {ReplyTimeout: "reply_timeout", KafkaUnavailable: "kafka_unavailable"}


def key_reused() -> ApiError:
    return ApiError(422, Code.IDEMPOTENCY_KEY_REUSED, MESSAGES[Code.IDEMPOTENCY_KEY_REUSED])


@dataclass(frozen=True, slots=True)
class Waiting:
    fingerprint: str
    reply: asyncio.Future[dict[str, Any]]


class InFlight:
    """The keyed commands this process is waiting on, by command id: a duplicate that
    arrives meanwhile waits for the same reply instead of sending the command again."""

    def __init__(self) -> None:
        self.waiting: dict[str, Waiting] = {}


class Dispatcher:
    def __init__(self, scope: Scope, actor: Actor, bus: Bus, in_flight: InFlight, timeout: float,
                 idempotency_key: str | None, holds: HoldLedger):
        self.scope = scope
        self.actor = actor
        self.bus = bus
        self.in_flight = in_flight
        self.timeout = timeout
        self.idempotency_key = idempotency_key
        self.holds = holds

    def use_body_key(self, body_key: str | None) -> None:
        """The Java clients' `idempotencyKey` body field, equivalent to the header."""
        if body_key is None:
            return
        if self.idempotency_key is not None and self.idempotency_key != body_key:
            raise RequestValidationError([{"type": "value_error", "loc": ("body", "idempotencyKey"),
                                           "msg": "differs from the Idempotency-Key header"}])
        self.idempotency_key = body_key

    def command(self, model: type[C], type_: str, **fields: Any) -> C:
        """The wire command, its id derived from the caller, their Idempotency-Key and the
        trip. A field the worker would refuse is a 400 here (the request models mostly
        catch it earlier)."""
        command_id = command_id_for(self.actor.user_id, self.idempotency_key, trip_of(fields))
        try:
            return model(type=type_, command_id=command_id, actor=ActorIn(user_id=self.actor.user_id,
                                                                          role=self.actor.role), **fields)
        except ValidationError as error:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors()]) from None

    async def send(self, command: CommandIn, respond: Callable[[dict[str, Any]], Response], body: Any,
                   **target: Any) -> Response:
        """Sends a state-changing command and answers with `respond(reply)`; `body` is the
        request's, as its fingerprint covers it."""
        entry = audit.note(self.scope["state"], self.actor, command.type, commandId=command.command_id, **target)
        document = command.model_dump(mode="json", by_alias=True)
        if self.idempotency_key is not None:
            document["fingerprint"] = fingerprint(self.scope["method"], self.scope["path"], body)
        try:
            reply = await self._reply(command, document)
        except ApiError as error:
            entry["code"] = error.code
            raise
        except (ReplyTimeout, KafkaUnavailable) as error:
            entry["code"] = UNANSWERED[type(error)]
            raise
        if reply.get("ok"):
            response = respond(reply)
        else:  # a refusal is an outcome too: a replay repeats it
            error = rejection(reply)
            entry["code"] = error.code
            response = error_response(error.status, error.code, error.message, error.headers, **error.extra)
        if reply.get(REPLAYED):
            metrics.IDEMPOTENT_REPLAYS.inc()
            entry["replayed"] = True
            response.headers["Idempotent-Replayed"] = "true"
        return response

    async def ask(self, command: CommandIn) -> dict[str, Any]:
        """A query through the log (nothing changes): the accepted reply."""
        reply = await self._reply(command, command.model_dump(mode="json", by_alias=True))
        if not reply.get("ok"):
            raise rejection(reply)
        return reply

    async def _reply(self, command: CommandIn, document: dict[str, Any]) -> dict[str, Any]:
        request_fingerprint = document.get("fingerprint")
        if request_fingerprint is None:
            return await self._request(command, document)
        waiting = self.in_flight.waiting.get(command.command_id)
        if waiting is not None:
            return await self._wait_for(waiting, request_fingerprint, command.command_id)
        waiting = self.in_flight.waiting[command.command_id] = Waiting(
            request_fingerprint, asyncio.get_running_loop().create_future())
        try:
            reply = await self._request(command, document)
        except BaseException as error:
            if isinstance(error, Exception):
                waiting.reply.set_exception(error)
                waiting.reply.exception()  # retrieved: nobody may be waiting on it
            else:
                waiting.reply.cancel()
            raise
        finally:
            del self.in_flight.waiting[command.command_id]
        waiting.reply.set_result(reply)
        return reply

    async def _wait_for(self, waiting: Waiting, request_fingerprint: str, command_id: str) -> dict[str, Any]:
        """A duplicate of a request in flight here: the first one's reply, as a replay."""
        if waiting.fingerprint != request_fingerprint:
            raise key_reused()
        try:
            async with asyncio.timeout(self.timeout):
                reply = await asyncio.shield(waiting.reply)
        except TimeoutError:
            raise ReplyTimeout(command_id) from None
        return {**reply, REPLAYED: True}

    async def _request(self, command: CommandIn, document: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        try:
            reply = await self.bus.request(command.key(), document, self.timeout)  # type: ignore[attr-defined]
        except ReplyTimeout:
            metrics.REPLY_TIMEOUTS.labels(command.type).inc()  # type: ignore[attr-defined]
            raise
        finally:
            metrics.IN_FLIGHT.dec()
            metrics.observe_command(command.type, time.perf_counter() - started)  # type: ignore[attr-defined]
        if reply.get("ok") and "booking" in reply:
            self.holds.note(reply["booking"])
        return reply
