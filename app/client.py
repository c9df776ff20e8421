"""Commands straight to Kafka, replies awaited: for upstream services (payments, the route
service…) that talk to the processor without the HTTP gateway.

    from app.client import BookingClient

    async with BookingClient() as client:
        reply = await client.send({
            "type": "payment_succeeded", "commandId": f"payment:{payment_id}",
            "actor": {"userId": "payments", "role": "SERVICE"},
            "bookingId": booking_id, "paymentId": payment_id, "amount": "8400.00",
        })
        if not reply["ok"]:
            ...  # reply["code"]: a stable code, e.g. "hold_expired"

- A command is validated here against the same models the processor reads
  (app.wire.commands; JSON Schema in schemas/commands/), so a bad one raises
  pydantic.ValidationError locally instead of landing on the dead-letter topic.
- The key (the trip) is derived from the command: a booking command's id names its trip.
- The reply is the processor's JSON reply (schemas/replies/reply.json). `send` raises
  ReplyTimeout when none came in time: the command may still apply, and sending the same
  command again (same `commandId`) is always safe; it gets the identical reply.
- Choose command ids from your own facts (the payment id, the trip publication…) so a
  retry after your own crash is a duplicate, not a second command.
- Transport: the gateway's own (app.transport.bus.CommandBus): an idempotent producer with
  murmur2 partitioning, and one reply partition per process read with assign(), named in
  the command's headers. See docs/processor.md for the recipe with a plain producer.
"""

from types import TracebackType
from typing import Any

from pydantic import BaseModel

from app.config import Settings, get_settings
from app.wire.commands import COMMAND
from app.transport.bus import CommandBus, KafkaUnavailable, ReplyTimeout

__all__ = ["BookingClient", "KafkaUnavailable", "ReplyTimeout"]


class BookingClient:
    def __init__(self, settings: Settings | None = None, reply_partition: int | None = None,
                 commands_topic: str | None = None, replies_topic: str | None = None):
        """`reply_partition`: the replies partition this process reads; by default a
        stable hash of host and pid. Processes may share one (each skips the others')."""
        self._bus = CommandBus(settings or get_settings(), commands_topic, replies_topic, reply_partition)

    async def start(self, ready_timeout: float = 30.0) -> None:
        self._bus.start()
        if not await self._bus.wait_ready(ready_timeout):
            self._bus.stop()
            raise KafkaUnavailable("the reply partition could not be assigned")

    def stop(self) -> None:
        self._bus.stop()

    async def __aenter__(self) -> "BookingClient":
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        self.stop()

    async def send(self, command: dict[str, Any] | BaseModel, timeout: float = 10.0) -> dict[str, Any]:
        """Validates the command, produces it keyed by its trip, returns the reply (with
        `"replayed": true` added when it repeats the outcome of a command id handled before)."""
        wire = COMMAND.validate_python(command.model_dump() if isinstance(command, BaseModel) else command)
        body = wire.model_dump(mode="json", by_alias=True, exclude_none=True)
        return await self._bus.request(wire.key(), body, timeout)
