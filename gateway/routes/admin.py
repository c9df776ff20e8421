"""The admin API (ADMIN only): booking search, statistics, force-cancel. Every call is on
the audit trail."""

from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.exceptions import RequestValidationError

from app.domain.booking import Status
from app.wire.commands import CancelBookingIn, Name, RouteId
from gateway import audit
from gateway.command_path import CommandRouter
from gateway.deps import Admin, AsAdmin, ReadsDep
from gateway.errors import JsonResponse
from gateway.routes.bookings import PAGE_MAX, BookingIdPath, booking_body, page_body, routable
from gateway.schemas import BookingOut, BookingPage, CancelRequest, StatisticsOut, error_responses
from gateway.queries import SearchFilters

router = APIRouter(prefix="/v1/admin", tags=["admin"])
commands = CommandRouter(prefix="/v1/admin", tags=["admin"])

STATISTICS_MAX_DAYS = 366


@router.get("/bookings", response_model=BookingPage, responses=error_responses(400, 401, 403, 429, 503))
async def search(admin: Admin, reads: ReadsDep, request: Request,
                 status: Annotated[list[Status] | None, Query(description="repeat for several")] = None,
                 route_id: Annotated[RouteId | None, Query(alias="routeId")] = None,
                 travel_date_from: Annotated[date | None, Query(alias="travelDateFrom")] = None,
                 travel_date_to: Annotated[date | None, Query(alias="travelDateTo")] = None,
                 rider_id: Annotated[Name | None, Query(alias="riderId")] = None,
                 driver_id: Annotated[Name | None, Query(alias="driverId")] = None,
                 reference: Annotated[str | None, Query(max_length=32)] = None,
                 page: Annotated[int, Query(ge=0, le=PAGE_MAX)] = 0,
                 size: Annotated[int, Query(ge=1, le=100)] = 20) -> JsonResponse:
    """Bookings matching every filter given (travel dates inclusive), newest first."""
    filters = SearchFilters(tuple(s.value for s in status or ()), route_id, travel_date_from, travel_date_to,
                            rider_id, driver_id, reference)
    audit.note(request.scope["state"], admin, "search_bookings",
               filters={k: v for k, v in request.query_params.items()})
    content, total = await reads.search(filters, page, size)
    return JsonResponse(page_body(content, total, page, size))


@router.get("/statistics", response_model=StatisticsOut, responses=error_responses(400, 401, 403, 429, 503))
async def statistics(admin: Admin, reads: ReadsDep, request: Request,
                     first_day: Annotated[date, Query(alias="from", description="first travel date")],
                     last_day: Annotated[date, Query(alias="to", description="last travel date, inclusive")]
                     ) -> JsonResponse:
    """Bookings travelling in the date range: counts by status, unique riders and drivers,
    and per currency the money paid (gross), refunded, owed (refundsPending), net and the
    average paid booking. At most 366 days."""
    if last_day < first_day or last_day - first_day >= timedelta(days=STATISTICS_MAX_DAYS):
        raise_range_error()
    audit.note(request.scope["state"], admin, "read_statistics", range=f"{first_day}..{last_day}")
    return JsonResponse(await reads.statistics(first_day, last_day))


@commands.post("/bookings/{bookingId}/cancel", response_model=BookingOut,
             responses=error_responses(400, 401, 403, 404, 409, 422, 429, 503))
async def force_cancel(booking_id: BookingIdPath, body: Annotated[CancelRequest, Body()], send: AsAdmin) -> Any:
    """Cancels any live booking, whoever holds it, refunding everything paid."""
    command = send.command(CancelBookingIn, "cancel_booking", booking_id=routable(booking_id), reason=body.reason)
    return await send.send(command, booking_body, body.model_dump(mode="json"), bookingId=booking_id)


def raise_range_error() -> None:
    raise RequestValidationError([{"type": "value_error", "loc": ("query", "to"),
                                   "msg": f"must be on or after `from`, at most {STATISTICS_MAX_DAYS} days later"}])
