"""Trips: published, updated or cancelled by the route service (SERVICE), an admin, or the
trip's own driver (the worker checks the trip names them); availability per leg and the
seat map of a journey for any caller; the passenger manifest for the trip's driver and
admins; the waiting list, joined by riders and listed for admins."""

from collections import defaultdict
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from app.domain.commands import Actor, Role
from app.domain.money import format_minor
from app.domain.rejections import MESSAGES, Code
from app.domain.trip import trip_key
from app.wire.commands import (
    ROUTE_ID_PATTERN,
    CancelTripIn,
    JoinWaitlistIn,
    Name,
    PublishTripIn,
    QueryAvailabilityIn,
    QuerySeatMapIn,
    TripIn,
)
from app.tables.codec import trip_to_json
from gateway import audit
from gateway.command_path import CommandRouter
from gateway.deps import Admin, AsAnyone, AsRider, AsTripManager, ReadsDep, acting_as
from gateway.errors import ApiError, JsonResponse
from gateway.schemas import (
    AvailabilityOut,
    EntryBody,
    EntryList,
    ManifestOut,
    SeatMapOut,
    TripCancelledOut,
    TripCancelRequest,
    TripPublishedOut,
    WaitlistJoin,
    error_responses,
)

router = APIRouter(prefix="/v1/trips", tags=["trips"])
commands = CommandRouter(prefix="/v1/trips", tags=["trips"])

RouteIdPath = Annotated[str, Path(alias="routeId", pattern=ROUTE_ID_PATTERN, examples=["LAG-IBD"])]
TravelDatePath = Annotated[date, Path(alias="travelDate", description="YYYY-MM-DD", examples=["2030-01-15"])]
ManifestReader = Annotated[Actor, Depends(acting_as(Role.ADMIN, Role.DRIVER))]
COMMAND_ERRORS = error_responses(400, 401, 403, 404, 409, 422, 429, 503)


@commands.put("/{routeId}/{travelDate}", response_model=TripPublishedOut, responses=COMMAND_ERRORS)
async def publish_trip(route_id: RouteIdPath, travel_date: TravelDatePath, trip: TripIn, send: AsTripManager) -> Any:
    """Publishes a trip, or updates it (stops and capacity stay fixed once booked). A driver
    may only manage a trip that names them as its driver."""
    command = send.command(PublishTripIn, "publish_trip", route_id=route_id, travel_date=travel_date, trip=trip)

    def published(reply: dict[str, Any]) -> JsonResponse:
        return JsonResponse({"routeId": route_id, "travelDate": travel_date.isoformat(),
                             "tripVersion": reply.get("tripVersion"), "trip": trip_view(trip, route_id, travel_date)})

    return await send.send(command, published, trip.model_dump(mode="json", by_alias=True), tripKey=command.key())


@commands.post("/{routeId}/{travelDate}/cancel", response_model=TripCancelledOut, responses=COMMAND_ERRORS)
async def cancel_trip(route_id: RouteIdPath, travel_date: TravelDatePath, body: TripCancelRequest,
                      send: AsTripManager) -> Any:
    """Cancels the trip: every live booking is cancelled with a full refund of what was
    paid (booking.cancelled events), and nothing more can be booked."""
    command = send.command(CancelTripIn, "cancel_trip", route_id=route_id, travel_date=travel_date,
                           reason=body.reason)

    def cancelled(reply: dict[str, Any]) -> JsonResponse:
        return JsonResponse({"routeId": route_id, "travelDate": travel_date.isoformat(),
                             "tripVersion": reply.get("tripVersion"), "status": "CANCELLED"})

    return await send.send(command, cancelled, body.model_dump(mode="json"), tripKey=command.key())


@commands.get("/{routeId}/{travelDate}/availability", response_model=AvailabilityOut,
            responses=error_responses(400, 401, 404, 429, 503))
async def availability(route_id: RouteIdPath, travel_date: TravelDatePath, send: AsAnyone) -> JsonResponse:
    """Free, held and sold seats on every leg, as the trip's owner holds them right now
    (asked through the command log, so it is never behind)."""
    reply = await send.ask(send.command(QueryAvailabilityIn, "query_availability", route_id=route_id,
                                        travel_date=travel_date))
    return JsonResponse({"routeId": route_id, "travelDate": travel_date.isoformat(), "legs": reply["availability"]})


@commands.get("/{routeId}/{travelDate}/seats", response_model=SeatMapOut,
            responses=error_responses(400, 401, 404, 422, 429, 503))
async def seat_map(route_id: RouteIdPath, travel_date: TravelDatePath, send: AsAnyone,
                   from_stop: Annotated[Name, Query(alias="from", description="pickup stop id")],
                   to_stop: Annotated[Name, Query(alias="to", description="drop-off stop id")]) -> JsonResponse:
    """Every seat of the trip, and whether it is free on every leg from `from` to `to`
    (held, sold and waiting-list offers are not), as the trip's owner holds it right now
    (asked through the command log, like availability)."""
    reply = await send.ask(send.command(QuerySeatMapIn, "query_seat_map", route_id=route_id,
                                        travel_date=travel_date, origin_stop_id=from_stop, destination_stop_id=to_stop))
    return JsonResponse({"routeId": route_id, "travelDate": travel_date.isoformat(), "fromStopId": from_stop,
                         "toStopId": to_stop, "seats": reply["seats"]})


@commands.post("/{routeId}/{travelDate}/waitlist", status_code=201, response_model=EntryBody,
             responses=COMMAND_ERRORS)
async def join_waitlist(route_id: RouteIdPath, travel_date: TravelDatePath, body: WaitlistJoin,
                        send: AsRider) -> Any:
    """Joins the trip's waiting list for a journey that has too few free seats (else 409
    seats_available: book them). When seats of the journey come free, they are offered
    to the waiting entries in join order, each to the first whose whole party fits:
    OFFERED, held until `offerExpiresAt` (OFFER_MINUTES), to accept with
    `POST /v1/waitlist/{entryId}/accept`. An offer not accepted in time passes on."""
    command = send.command(JoinWaitlistIn, "join_waitlist", route_id=route_id, travel_date=travel_date,
                           origin_stop_id=body.origin_stop_id, destination_stop_id=body.destination_stop_id,
                           seats_booked=body.seats_booked)

    def joined(reply: dict[str, Any]) -> JsonResponse:
        return JsonResponse({"entry": reply["entry"]}, status_code=201)

    return await send.send(command, joined, body.model_dump(mode="json"), tripKey=command.key())


@router.get("/{routeId}/{travelDate}/waitlist", response_model=EntryList,
            responses=error_responses(400, 401, 403, 429, 503))
async def waitlist(route_id: RouteIdPath, travel_date: TravelDatePath, admin: Admin, reads: ReadsDep,
                   request: Request) -> JsonResponse:
    """The trip's waiting list (admins): every entry it had, in join order, a waiting one
    with its current place in the queue. Read from Postgres, a moment behind the commands."""
    audit.note(request.scope["state"], admin, "read_waitlist", tripKey=trip_key(route_id, travel_date))
    return JsonResponse({"entries": await reads.waitlist_of_trip(route_id, travel_date)})


@router.get("/{routeId}/{travelDate}/manifest", response_model=ManifestOut,
            responses=error_responses(400, 401, 403, 404, 429, 503))
async def manifest(route_id: RouteIdPath, travel_date: TravelDatePath, reader: ManifestReader, reads: ReadsDep,
                   request: Request) -> JsonResponse:
    """Who boards where: per stop in route order, the paid passengers (confirmed, checked
    in, completed) boarding there and the seats freed. For the trip's driver and admins;
    read from Postgres, so it trails the command log by the sink's delay."""
    audit.note(request.scope["state"], reader, "read_manifest", tripKey=trip_key(route_id, travel_date))
    trip = await reads.trip(route_id, travel_date)
    if reader.role is not Role.ADMIN and (trip is None or trip["driverId"] != reader.user_id):
        raise ApiError(403, Code.FORBIDDEN, "Only the trip's driver and admins may read its manifest.")
    if trip is None:
        raise ApiError(404, Code.TRIP_NOT_FOUND, MESSAGES[Code.TRIP_NOT_FOUND])
    return JsonResponse(manifest_body(trip, await reads.manifest(route_id, travel_date)))


def manifest_body(trip: dict[str, Any], passengers: list[dict[str, Any]]) -> dict[str, Any]:
    boarding: dict[str, list[dict[str, Any]]] = defaultdict(list)
    alighting: dict[str, int] = defaultdict(int)
    for booking in passengers:
        boarding[booking["originStopId"]].append(passenger(booking))
        alighting[booking["destinationStopId"]] += booking["seatsBooked"]
    return {
        "routeId": trip["routeId"], "travelDate": trip["travelDate"], "driverId": trip["driverId"],
        "status": trip["status"], "timezone": trip["timezone"], "departureTime": trip["departureTime"],
        "capacity": trip["capacity"], "passengers": len(passengers),
        "seats": sum(booking["seatsBooked"] for booking in passengers),
        "stops": [{"stopId": stop["stopId"], "offsetMinutes": stop["offsetMinutes"],
                   "boarding": boarding[stop["stopId"]], "alightingSeats": alighting[stop["stopId"]]}
                  for stop in trip["stops"]],
    }


def passenger(booking: dict[str, Any]) -> dict[str, Any]:
    return {"bookingId": booking["id"], "bookingReference": booking["bookingReference"],
            "riderId": booking["riderId"], "seatsBooked": booking["seatsBooked"],
            "seatNumbers": booking["seatNumbers"], "destinationStopId": booking["destinationStopId"],
            "status": booking["status"], "checkedIn": booking["status"] in ("CHECKED_IN", "COMPLETED")}


def trip_view(trip: TripIn, route_id: str, travel_date: date) -> dict[str, Any]:
    """The trip as the processor now holds it, with money as decimal strings like the
    booking body's (the processor keeps minor units)."""
    view = trip_to_json(trip.to_trip(route_id, travel_date))
    view["legFares"] = [format_minor(fare) for fare in view["legFares"]]
    return view
