"""Trips: published or updated by the route service, an admin, or the trip's driver."""

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path

from app.domain.money import format_minor
from app.models.commands import ROUTE_ID_PATTERN, TripIn
from app.tables.codec import trip_to_json
from gateway.commands import command_id_for, publish_trip_command
from gateway.deps import BusDep, SettingsDep, TripManager
from gateway.errors import JsonResponse, rejection
from gateway.schemas import IDEMPOTENCY_KEY_MAX, TripPublishedOut, error_responses

router = APIRouter(prefix="/v1/trips", tags=["trips"])

RouteIdPath = Annotated[str, Path(alias="routeId", pattern=ROUTE_ID_PATTERN)]
TravelDatePath = Annotated[date, Path(alias="travelDate", description="YYYY-MM-DD")]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=IDEMPOTENCY_KEY_MAX)]


@router.put("/{routeId}/{travelDate}", response_model=TripPublishedOut,
            responses=error_responses(400, 401, 403, 409, 503))
async def publish_trip(route_id: RouteIdPath, travel_date: TravelDatePath, trip: TripIn, actor: TripManager,
                       bus: BusDep, settings: SettingsDep, idempotency_key: IdempotencyKey = None) -> JsonResponse:
    """Publishes a trip, or updates it (stops and capacity stay fixed once booked). A driver
    may only manage a trip that names them as its driver."""
    command_id = command_id_for("publish_trip", actor.user_id, idempotency_key)
    key, command = publish_trip_command(command_id, actor, route_id, travel_date, trip)
    reply = await bus.request(key, command, settings.reply_timeout_seconds)
    if not reply.get("ok"):
        raise rejection(reply)
    return JsonResponse({"routeId": route_id, "travelDate": travel_date.isoformat(),
                         "tripVersion": reply.get("tripVersion"), "trip": trip_view(trip, route_id, travel_date)})


def trip_view(trip: TripIn, route_id: str, travel_date: date) -> dict[str, Any]:
    """The trip as the processor now holds it, with money as decimal strings like the
    booking body's (the processor keeps minor units)."""
    view = trip_to_json(trip.to_trip(route_id, travel_date))
    view["legFares"] = [format_minor(fare) for fare in view["legFares"]]
    return view
