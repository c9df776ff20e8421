"""Bookings: the Java service's paths and JSON, served by the command log and Postgres.

Routes with a fixed segment (`/reference/{reference}`, `/upcoming`) must be declared
before `/{bookingId}` when they are added, or the id route would capture them."""

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path
from fastapi.exceptions import RequestValidationError

from app.domain.commands import Role
from app.domain.ids import trip_of_booking
from app.domain.rejections import MESSAGES, Code
from gateway.commands import command_id_for, create_booking_command
from gateway.deps import BusDep, CurrentPrincipal, ReadsDep, Rider, SettingsDep
from gateway.errors import ApiError, JsonResponse, rejection
from gateway.schemas import IDEMPOTENCY_KEY_MAX, BookingCreate, BookingCreatedOut, BookingOut, error_responses
from gateway.security import Principal

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/bookings", tags=["bookings"])

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=IDEMPOTENCY_KEY_MAX)]
BookingIdPath = Annotated[str, Path(alias="bookingId", max_length=200)]
# What a retry with the same Idempotency-Key must repeat to get the original response.
SAME_REQUEST_FIELDS = ("routeId", "travelDate", "originStopId", "destinationStopId", "seatsBooked")


@router.post("", status_code=201, response_model=BookingCreatedOut,
             responses=error_responses(400, 401, 403, 404, 409, 422, 503))
async def create_booking(body: BookingCreate, rider: Rider, bus: BusDep, settings: SettingsDep,
                         idempotency_key: IdempotencyKey = None) -> JsonResponse:
    """Holds seats from the pickup to the drop-off stop (the lowest seat numbers free on
    every leg) for HOLD_MINUTES. The same Idempotency-Key (header, or `idempotencyKey` in
    the body) with the same body returns the original response."""
    key = idempotency_key_of(idempotency_key, body.idempotency_key)
    command_id = command_id_for("create_booking", rider.user_id, key)
    trip_key, command = create_booking_command(command_id, rider, body)
    if body.search_id is not None:
        log.debug("booking from search %s rank %s of %s (command %s)", body.search_id, body.candidate_rank,
                 body.candidate_count, command_id)
    reply = await bus.request(trip_key, command, settings.reply_timeout_seconds)
    if not reply.get("ok"):
        raise rejection(reply)
    booking = reply["booking"]
    if key is not None:
        ensure_same_request(booking, command)
    return JsonResponse(created_body(booking), status_code=201, headers={"Location": f"/v1/bookings/{booking['id']}"})


@router.get("/{bookingId}", response_model=BookingOut, responses=error_responses(401, 404, 503))
async def get_booking(booking_id: BookingIdPath, principal: CurrentPrincipal, reads: ReadsDep) -> JsonResponse:
    """One booking, to its rider, the trip's driver, the services and admins. Anybody else
    gets the same 404 as for an unknown id."""
    if trip_of_booking(booking_id) is None:  # not one of our ids: no need to ask Postgres
        raise booking_not_found()
    booking = await reads.booking_by_id(booking_id)
    if booking is None or not may_see(principal, booking):
        raise booking_not_found()
    return JsonResponse(booking)


def idempotency_key_of(header: str | None, body: str | None) -> str | None:
    if header is not None and body is not None and header != body:
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "idempotencyKey"),
                                       "msg": "differs from the Idempotency-Key header"}])
    return header if header is not None else body


def ensure_same_request(booking: dict[str, Any], command: dict[str, Any]) -> None:
    """A retry's key found the original booking: it must be for the same request."""
    if any(booking.get(field) != command.get(field) for field in SAME_REQUEST_FIELDS):
        raise ApiError(422, "idempotency_key_reused",
                       "This Idempotency-Key was already used for a different booking request.")


def created_body(booking: dict[str, Any]) -> dict[str, Any]:
    return {
        "booking": booking,
        "paymentUrl": None,  # payments are initiated by the payments service, not here
        "expiresAt": booking.get("expiresAt"),
        "message": f"Seats held until {booking.get('expiresAt')}. Complete payment before then to confirm.",
    }


def may_see(principal: Principal, booking: dict[str, Any]) -> bool:
    if principal.is_any(Role.ADMIN, Role.SERVICE):
        return True
    if Role.DRIVER in principal.roles and booking.get("driverId") == principal.user_id:
        return True
    return Role.RIDER in principal.roles and booking.get("riderId") == principal.user_id


def booking_not_found() -> ApiError:
    return ApiError(404, Code.BOOKING_NOT_FOUND, MESSAGES[Code.BOOKING_NOT_FOUND])
