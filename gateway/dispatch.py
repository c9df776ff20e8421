"""One request's way to the command log: the command id (from the Idempotency-Key), the
idempotent replay, the audit entry, the metrics, and the reply turned into a response."""

import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from app.domain.commands import Actor
from app.models.commands import ActorIn, CommandIn
from gateway import audit, metrics
from gateway.commands import command_id_for
from gateway.errors import ApiError, error_response, rejection
from gateway.holds import HoldLedger
from gateway.idempotency import Claim, IdempotencyStore, Stored, fingerprint
from gateway.kafka import KafkaUnavailable, ReplyTimeout

C = TypeVar("C", bound=CommandIn)


class Sender(Protocol):
    async def request(self, key: str, command: dict[str, Any], timeout: float) -> dict[str, Any]: ...


class Dispatcher:
    def __init__(self, request: Request, actor: Actor, bus: Sender, store: IdempotencyStore, timeout: float,
                 idempotency_key: str | None, holds: HoldLedger):
        self.request = request
        self.actor = actor
        self.bus = bus
        self.store = store
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
        """The wire command, its id derived from the caller and their Idempotency-Key. A
        field the worker would refuse is a 400 here (the request models mostly catch it
        earlier)."""
        command_id = command_id_for(type_, self.actor.user_id, self.idempotency_key)
        try:
            return model(type=type_, command_id=command_id, actor=ActorIn(user_id=self.actor.user_id,
                                                                          role=self.actor.role), **fields)
        except ValidationError as error:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors()]) from None

    async def send(self, command: CommandIn, respond: Callable[[dict[str, Any]], Response], body: Any,
                   **target: Any) -> Response:
        """Sends a state-changing command and answers with `respond(reply)`. With an
        Idempotency-Key the outcome is kept: the same request again gets it back."""
        entry = audit.note(self.request, self.actor, command.type, commandId=command.command_id, **target)
        if self.idempotency_key is None:
            return await self._answer(command, respond, entry)
        claim = await self.store.claim(self.actor.user_id, self.idempotency_key,
                                       fingerprint(self.request.method, self.request.url.path, body),
                                       command.command_id)
        if isinstance(claim, Stored):
            metrics.IDEMPOTENT_REPLAYS.inc()
            entry["replayed"] = True
            return claim.response()
        return await self._answer_once(claim, command, respond, entry)

    async def ask(self, command: CommandIn) -> dict[str, Any]:
        """A query through the log (nothing changes): the accepted reply."""
        return await self._reply(command)

    async def _answer_once(self, claim: Claim, command: CommandIn, respond: Callable[[dict[str, Any]], Response],
                           entry: dict[str, Any]) -> Response:
        try:
            response = await self._answer(command, respond, entry)
        except ApiError as error:
            if error.status >= 500:
                await self.store.release(claim)
                raise
            # A refusal is an outcome too: the same request gets the same refusal.
            response = error_response(error.status, error.code, error.message, error.headers, **error.extra)
        except BaseException:
            # No outcome known (timeout, Kafka down, cancelled): the retry must send again.
            await self.store.release(claim)
            raise
        await self.store.finish(claim, response)
        return response

    async def _answer(self, command: CommandIn, respond: Callable[[dict[str, Any]], Response],
                      entry: dict[str, Any]) -> Response:
        try:
            return respond(await self._reply(command))
        except ApiError as error:
            entry["code"] = error.code
            raise
        except ReplyTimeout:
            entry["code"] = "reply_timeout"
            raise
        except KafkaUnavailable:
            entry["code"] = "kafka_unavailable"
            raise

    async def _reply(self, command: CommandIn) -> dict[str, Any]:
        document = command.model_dump(mode="json", by_alias=True)
        started = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        try:
            reply = await self.bus.request(command.key(), document, self.timeout)  # type: ignore[attr-defined]
        except ReplyTimeout:
            metrics.REPLY_TIMEOUTS.labels(command.type).inc()  # type: ignore[attr-defined]
            raise
        finally:
            metrics.IN_FLIGHT.dec()
            metrics.COMMAND_SECONDS.labels(command.type).observe(time.perf_counter() - started)  # type: ignore[attr-defined]
        if not reply.get("ok"):
            raise rejection(reply)
        if "booking" in reply:
            self.holds.note(reply["booking"])
        return reply
