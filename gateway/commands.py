"""HTTP requests into command documents, built with the worker's own wire models
(app.models.commands), so what the gateway sends is what the worker accepts."""

import uuid
from datetime import date
from typing import Any

from app.domain.commands import Actor
from app.models.commands import ActorIn, CreateBookingIn, PublishTripIn, TripIn
from gateway.schemas import BookingCreate

# Fixed for good: changing it would change every derived command id, and a client's retry
# with its Idempotency-Key would no longer find the original outcome.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c3c2e-5b8a-4d1e-9a53-0c7f1e2b9d40")


def command_id_for(operation: str, user_id: str, idempotency_key: str | None) -> str:
    """Same user + same key + same operation -> same command id, so the worker answers a
    retry with the original reply. Keys are per user (one rider's key never finds another
    rider's booking, unlike the Java service). Without a key every request is new."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{operation}\x1f{user_id}\x1f{idempotency_key}"))


def actor_in(actor: Actor) -> ActorIn:
    return ActorIn(user_id=actor.user_id, role=actor.role)


def create_booking_command(command_id: str, rider: Actor, body: BookingCreate) -> tuple[str, dict[str, Any]]:
    """(Kafka key, command) for POST /v1/bookings."""
    command = CreateBookingIn(
        type="create_booking", command_id=command_id, actor=actor_in(rider),
        route_id=body.route_id, travel_date=body.travel_date,
        origin_stop_id=body.origin_stop_id, destination_stop_id=body.destination_stop_id,
        seats_booked=body.seats_booked, source=body.booking_source,
    )
    return command.key(), command.model_dump(mode="json", by_alias=True)


def publish_trip_command(command_id: str, actor: Actor, route_id: str, travel_date: date,
                         trip: TripIn) -> tuple[str, dict[str, Any]]:
    """(Kafka key, command) for PUT /v1/trips/{routeId}/{travelDate}."""
    command = PublishTripIn(type="publish_trip", command_id=command_id, actor=actor_in(actor),
                            route_id=route_id, travel_date=travel_date, trip=trip)
    return command.key(), command.model_dump(mode="json", by_alias=True)
