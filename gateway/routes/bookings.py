"""Bookings: the Java service's paths and JSON, served by the command log and Postgres.

Routes with a fixed segment (`/reference/{reference}`, `/upcoming`) are declared before
`/{bookingId}`, or the id route would capture them.

Who may do what (the worker checks ownership and the trip's driver again, on its state):
- create, mine, upcoming, cancel: RIDER (cancel: the booking's own rider);
- read by id or reference: the booking's rider, the trip's driver, SERVICE, ADMIN;
- payment initiation: the booking's rider, SERVICE, ADMIN;
- confirm, refund done: SERVICE (the payments service);
- check-in, complete: the trip's DRIVER, SERVICE (the route service), ADMIN.
A booking that is not the caller's is answered like an unknown one (404).
"""

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request

from app.domain.booking import Status
from app.domain.commands import Role
from app.domain.ids import booking_id_for, trip_of_booking
from app.domain.rejections import MESSAGES, Code
from app.wire.commands import (
    CancelBookingIn,
    CheckInIn,
    CompleteIn,
    CreateBookingIn,
    InitiatePaymentIn,
    PaymentFailedIn,
    PaymentSucceededIn,
    RefundDoneIn,
)
from gateway import audit
from gateway.command_path import CommandRouter
from gateway.deps import AsPayer, AsRider, AsService, AsTripManager, CurrentPrincipal, ReadsDep, Rider
from gateway.errors import ApiError, JsonResponse
from gateway.schemas import (
    BookingCreate,
    BookingCreatedOut,
    BookingOut,
    BookingPage,
    CancelRequest,
    ConfirmRequest,
    PaymentRequest,
    RefundDoneRequest,
    error_responses,
)
from gateway.security import Principal

router = APIRouter(prefix="/v1/bookings", tags=["bookings"])
commands = CommandRouter(prefix="/v1/bookings", tags=["bookings"])

BookingIdPath = Annotated[str, Path(alias="bookingId", max_length=200,
                                    examples=["LAG-IBD.20300115.M3ZQ7KX2B4TQJH6A"])]
PAGE_MAX = 10_000  # deeper than any rider's history; keeps OFFSET bounded
COMMAND_ERRORS = error_responses(400, 401, 403, 404, 409, 422, 429, 503)


@commands.post("", status_code=201, response_model=BookingCreatedOut, responses=COMMAND_ERRORS)
async def create_booking(body: BookingCreate, send: AsRider) -> Any:
    """Holds seats from the pickup to the drop-off stop for HOLD_MINUTES: the `seatNumbers`
    chosen, if each is free on every leg (all of them, or 409 seat_unavailable), else the
    lowest seat numbers free on every leg. Seats offered to the trip's waiting list are
    not free. The same Idempotency-Key (header, or `idempotencyKey` in the body) with the
    same body returns the original response."""
    send.use_body_key(body.idempotency_key)
    command = send.command(
        CreateBookingIn, "create_booking", route_id=body.route_id, travel_date=body.travel_date,
        origin_stop_id=body.origin_stop_id, destination_stop_id=body.destination_stop_id,
        seats_booked=body.seats_booked, source=body.booking_source, seat_numbers=body.seat_numbers)
    if not send.holds.allows(send.actor.user_id, body.seats_booked,
                             booking_id_for(body.route_id, body.travel_date, command.command_id)):
        raise ApiError(409, Code.HOLD_LIMIT_REACHED, "You hold as many unpaid seats as one rider may; "
                                                     "pay for or cancel a booking first.")

    def created(reply: dict[str, Any]) -> JsonResponse:
        booking = reply["booking"]
        return JsonResponse(created_body(booking), status_code=201,
                            headers={"Location": f"/v1/bookings/{booking['id']}"})

    # Without seatNumbers, the same fingerprint as before seat choice existed: a key
    # stored then still finds its request.
    unchosen = {"seat_numbers"} if body.seat_numbers is None else set()
    return await send.send(command, created, body.model_dump(mode="json", exclude={"idempotency_key", *unchosen}),
                           tripKey=command.key(), searchId=body.search_id, candidateRank=body.candidate_rank)


@router.get("", response_model=BookingPage, responses=error_responses(400, 401, 403, 429, 503))
async def my_bookings(rider: Rider, reads: ReadsDep,
                      page: Annotated[int, Query(ge=0, le=PAGE_MAX, description="from 0")] = 0,
                      size: Annotated[int, Query(ge=1, le=100)] = 20,
                      status: Annotated[Status | None, Query()] = None) -> JsonResponse:
    """The caller's bookings, newest first, a page at a time (optionally of one status)."""
    content, total = await reads.bookings_of_rider(rider.user_id, status.value if status else None, page, size)
    return JsonResponse(page_body(content, total, page, size))


@router.get("/upcoming", response_model=list[BookingOut], responses=error_responses(401, 403, 429, 503))
async def upcoming(rider: Rider, reads: ReadsDep) -> JsonResponse:
    """The caller's confirmed or checked-in bookings that have not departed yet, soonest first."""
    return JsonResponse(await reads.upcoming_of_rider(rider.user_id, datetime.now(UTC)))


@router.get("/reference/{reference}", response_model=BookingOut, responses=error_responses(401, 404, 429, 503))
async def by_reference(reference: Annotated[str, Path(max_length=32, examples=["BK20300115RW4C2N"])],
                       principal: CurrentPrincipal, reads: ReadsDep, request: Request) -> JsonResponse:
    """A booking by its reference (`BK` + travel date + 6 characters), to the same callers
    as by id."""
    rider_id = principal.user_id if principal.roles == {Role.RIDER} else None
    booking = await reads.booking_by_reference(reference, rider_id)
    if booking is None or not may_see(principal, booking):
        raise booking_not_found()
    audit_read_by_others(request, principal, booking)
    return JsonResponse(booking)


@router.get("/{bookingId}", response_model=BookingOut, responses=error_responses(401, 404, 429, 503))
async def get_booking(booking_id: BookingIdPath, principal: CurrentPrincipal, reads: ReadsDep,
                      request: Request) -> JsonResponse:
    """One booking, to its rider, the trip's driver, the services and admins. Anybody else
    gets the same 404 as for an unknown id."""
    booking = await reads.booking_by_id(routable(booking_id))
    if booking is None or not may_see(principal, booking):
        raise booking_not_found()
    audit_read_by_others(request, principal, booking)
    return JsonResponse(booking)


@commands.post("/{bookingId}/payment", response_model=BookingOut, responses=COMMAND_ERRORS)
async def initiate_payment(booking_id: BookingIdPath, send: AsPayer,
                           body: Annotated[PaymentRequest | None, Body()] = None) -> Any:
    """Payment starts: HELD -> PAYMENT_INITIATED, the hold extended to PAYMENT_HOLD_MINUTES
    from now."""
    payment_id = body.payment_id if body else None
    command = send.command(InitiatePaymentIn, "initiate_payment", booking_id=routable(booking_id),
                           payment_id=payment_id)
    return await send.send(command, booking_body, {"paymentId": payment_id}, bookingId=booking_id)


@commands.post("/{bookingId}/confirm", response_model=BookingOut, responses=COMMAND_ERRORS)
async def confirm(booking_id: BookingIdPath, body: ConfirmRequest, send: AsService) -> Any:
    """The payments service reports the payment. SUCCESS with the exact total while the
    hold is live confirms the booking (a late payment gets 409 hold_expired and a
    refund_required event); FAILED is recorded and the seats stay held until the hold
    ends, so the rider may pay again. Confirming twice answers the same booking."""
    booking_id = routable(booking_id)
    if body.payment_status == "SUCCESS":
        command = send.command(PaymentSucceededIn, "payment_succeeded", booking_id=booking_id,
                               payment_id=body.payment_id, amount=body.amount)
    else:
        command = send.command(PaymentFailedIn, "payment_failed", booking_id=booking_id, payment_id=body.payment_id)
    return await send.send(command, booking_body, body.model_dump(mode="json"), bookingId=booking_id)


@commands.post("/{bookingId}/cancel", response_model=BookingOut, responses=COMMAND_ERRORS)
async def cancel(booking_id: BookingIdPath, body: CancelRequest, send: AsRider) -> Any:
    """The rider cancels. Paid bookings are refunded by how long before departure: 100 %
    from 24 hours, 50 % from 6 hours, else nothing (`refundAmount`, `refundStatus`)."""
    command = send.command(CancelBookingIn, "cancel_booking", booking_id=routable(booking_id), reason=body.reason)
    return await send.send(command, booking_body, body.model_dump(mode="json"), bookingId=booking_id)


@commands.post("/{bookingId}/check-in", response_model=BookingOut, responses=COMMAND_ERRORS)
async def check_in(booking_id: BookingIdPath, send: AsTripManager) -> Any:
    """The rider boarded: CONFIRMED -> CHECKED_IN (the trip's driver, route service, admin)."""
    command = send.command(CheckInIn, "check_in", booking_id=routable(booking_id))
    return await send.send(command, booking_body, None, bookingId=booking_id)


@commands.post("/{bookingId}/complete", response_model=BookingOut, responses=COMMAND_ERRORS)
async def complete(booking_id: BookingIdPath, send: AsTripManager) -> Any:
    """The ride is done: CHECKED_IN -> COMPLETED (the trip's driver, route service, admin)."""
    command = send.command(CompleteIn, "complete", booking_id=routable(booking_id))
    return await send.send(command, booking_body, None, bookingId=booking_id)


@commands.post("/{bookingId}/refund-done", response_model=BookingOut, responses=COMMAND_ERRORS)
async def refund_done(booking_id: BookingIdPath, body: RefundDoneRequest, send: AsService) -> Any:
    """The payments service returned money: a cancelled booking's refund (the exact amount
    owed), or part or all of a paid booking's total. -> REFUNDED."""
    command = send.command(RefundDoneIn, "refund_done", booking_id=routable(booking_id), amount=body.amount)
    return await send.send(command, booking_body, body.model_dump(mode="json"), bookingId=booking_id)


def routable(booking_id: str) -> str:
    """Our ids name their trip; anything else cannot exist (404, no query, no command)."""
    if trip_of_booking(booking_id) is None:
        raise booking_not_found()
    return booking_id


def booking_body(reply: dict[str, Any]) -> JsonResponse:
    return JsonResponse(reply["booking"])


def created_body(booking: dict[str, Any]) -> dict[str, Any]:
    return {
        "booking": booking,
        "paymentUrl": None,  # payments are initiated by the payments service, not here
        "expiresAt": booking.get("expiresAt"),
        "message": f"Seats held until {booking.get('expiresAt')}. Complete payment before then to confirm.",
    }


def page_body(content: list[dict[str, Any]], total: int, page: int, size: int) -> dict[str, Any]:
    return {"content": content, "totalElements": total, "totalPages": math.ceil(total / size), "size": size,
            "number": page}


def may_see(principal: Principal, booking: dict[str, Any]) -> bool:
    if principal.is_any(Role.ADMIN, Role.SERVICE):
        return True
    if Role.DRIVER in principal.roles and booking.get("driverId") == principal.user_id:
        return True
    return Role.RIDER in principal.roles and booking.get("riderId") == principal.user_id


def audit_read_by_others(request: Request, principal: Principal, booking: dict[str, Any]) -> None:
    """A rider's personal data read by the trip's driver, a service or an admin is on the record."""
    if principal.user_id != booking.get("riderId"):
        audit.note(request.scope["state"], principal.acting_as(tuple(Role)), "read_booking",
                   bookingId=booking.get("id"))


def booking_not_found() -> ApiError:
    return ApiError(404, Code.BOOKING_NOT_FOUND, MESSAGES[Code.BOOKING_NOT_FOUND])
