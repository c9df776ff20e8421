"""Waiting lists, the rider's side: their own entries, leaving, accepting an offer.
Joining is on the trip (`POST /v1/trips/{routeId}/{travelDate}/waitlist`, gateway.routes.trips).

An entry id names its trip, as a booking id does, so the command goes straight to the
trip's owner; the worker checks the entry is the caller's (anybody else's is answered
like an unknown one, 404 waitlist_entry_not_found).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Path

from app.domain.ids import trip_of_booking
from app.domain.rejections import MESSAGES, Code
from app.wire.commands import AcceptOfferIn, LeaveWaitlistIn
from gateway.command_path import CommandRouter
from gateway.deps import AsRider, ReadsDep, Rider
from gateway.errors import ApiError, JsonResponse
from gateway.routes.bookings import created_body
from gateway.schemas import EntryBody, EntryList, OfferAcceptedOut, error_responses

router = APIRouter(prefix="/v1/waitlist", tags=["waiting lists"])
commands = CommandRouter(prefix="/v1/waitlist", tags=["waiting lists"])

EntryIdPath = Annotated[str, Path(alias="entryId", max_length=200, examples=["LAG-IBD.20300115.Q4SB2MXKZ7D3NH5E"])]
COMMAND_ERRORS = error_responses(400, 401, 403, 404, 409, 422, 429, 503)


@router.get("", response_model=EntryList, responses=error_responses(401, 403, 429, 503))
async def my_entries(rider: Rider, reads: ReadsDep) -> JsonResponse:
    """The caller's waiting-list entries on every trip, newest first (the last 100); a
    waiting one shows its current place in its trip's queue. Read from Postgres, a moment
    behind the commands."""
    return JsonResponse({"entries": await reads.waitlist_of_rider(rider.user_id)})


@commands.delete("/{entryId}", response_model=EntryBody, responses=COMMAND_ERRORS)
async def leave(entry_id: EntryIdPath, send: AsRider) -> Any:
    """Leaves the waiting list (WAITING or OFFERED -> LEFT). Seats held for an offer go at
    once to the next entry they fit."""
    command = send.command(LeaveWaitlistIn, "leave_waitlist", entry_id=routable_entry(entry_id))
    return await send.send(command, entry_body, None, entryId=entry_id)


@commands.post("/{entryId}/accept", status_code=201, response_model=OfferAcceptedOut, responses=COMMAND_ERRORS)
async def accept(entry_id: EntryIdPath, send: AsRider) -> Any:
    """Takes the seats offered: a booking HELD on them for HOLD_MINUTES (then pay as for
    any booking), the entry ACCEPTED. After `offerExpiresAt`: 409 offer_expired."""
    command = send.command(AcceptOfferIn, "accept_offer", entry_id=routable_entry(entry_id))

    def accepted(reply: dict[str, Any]) -> JsonResponse:
        booking = reply["booking"]
        return JsonResponse({**created_body(booking), "entry": reply["entry"]}, status_code=201,
                            headers={"Location": f"/v1/bookings/{booking['id']}"})

    return await send.send(command, accepted, None, entryId=entry_id)


def routable_entry(entry_id: str) -> str:
    """Our entry ids name their trip; anything else cannot exist (404, no command)."""
    if trip_of_booking(entry_id) is None:
        raise ApiError(404, Code.ENTRY_NOT_FOUND, MESSAGES[Code.ENTRY_NOT_FOUND])
    return entry_id


def entry_body(reply: dict[str, Any]) -> JsonResponse:
    return JsonResponse({"entry": reply["entry"]})
