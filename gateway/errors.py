"""One error shape for every 4xx/5xx: `{status, error, code, message, timestamp}`, plus
`errors: {field: message}` for invalid fields. `code` is the stable, machine-readable part
(the domain's rejection codes, app.domain.rejections, and the gateway's own below).

Status choices for the processor's rejections:
- 409 Conflict: the request was fine but the state of the trip or booking says no now
  (no seats, wrong status, trip cancelled, hold expired, trip update conflict).
- 404: trip or booking unknown, and `not_owner` too, rendered as `booking_not_found`, so
  a rider cannot learn that somebody else's booking id exists.
- 403: the role may not do this.
- 422: well-formed fields that the trip's own data refuses (too_many_seats, invalid_stops,
  booking_closed, invalid_reason, amount_mismatch). 400 stays reserved for what the gateway
  checks itself, which always comes with the per-field `errors` map the Java clients read
  on a 400; a 422 never has one, and its `code` says which rule refused.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.domain.rejections import MESSAGES, Code
from app.transport.bus import KafkaUnavailable, ReplyTimeout, RequestInFlight
from gateway.security import AuthError, RoleError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
BODY_LOCATIONS = ("body", "path", "query", "header", "cookie")

REJECTION_STATUS: dict[str, int] = {
    Code.SEATS_UNAVAILABLE: 409,
    Code.INVALID_TRANSITION: 409,
    Code.TRIP_CANCELLED: 409,
    Code.HOLD_EXPIRED: 409,
    Code.TRIP_UPDATE_CONFLICT: 409,
    Code.HOLD_LIMIT_REACHED: 409,
    Code.SEAT_UNAVAILABLE: 409,
    Code.SEATS_AVAILABLE: 409,
    Code.WAITLIST_FULL: 409,
    Code.OFFER_EXPIRED: 409,
    Code.TRIP_NOT_FOUND: 404,
    Code.ENTRY_NOT_FOUND: 404,
    Code.BOOKING_NOT_FOUND: 404,
    Code.NOT_OWNER: 404,
    Code.FORBIDDEN: 403,
    Code.TOO_MANY_SEATS: 422,
    Code.INVALID_STOPS: 422,
    Code.BOOKING_CLOSED: 422,
    Code.INVALID_REASON: 422,
    Code.AMOUNT_MISMATCH: 422,
    Code.IDEMPOTENCY_KEY_REUSED: 422,
    Code.TRAVEL_DATE_OUT_OF_RANGE: 422,
    Code.CAPACITY_OUT_OF_RANGE: 422,
    Code.INVALID_SEATS: 422,
}
DOMAIN_CODES = frozenset(code.value for code in Code)
# Dead-letter replies that mean a bug between gateway and worker, not a client mistake.
WORKER_FAULTS = frozenset({"wrong_key", "internal_error"})
# Codes the caller must not see as such (they would reveal that the booking exists).
DISGUISED: dict[str, Code] = {Code.NOT_OWNER: Code.BOOKING_NOT_FOUND}
# Framework-raised HTTP errors: a stable code for each status.
HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              406: "not_acceptable", 413: "payload_too_large", 415: "unsupported_media_type"}


class JsonResponse(JSONResponse):
    """JSON rendered by orjson. (fastapi.responses.ORJSONResponse does the same, but the
    FastAPI in use deprecates it and warns on every instance.)"""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ApiError(Exception):
    """Raise anywhere in a request: it becomes the one error shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra


class Timestamps:
    """Epoch seconds as ISO-8601 UTC with milliseconds; the date and time are formatted
    once per second, not per call."""

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def __call__(self, at: float) -> str:
        second = int(at)
        if second != self.second:
            self.second, self.prefix = second, f"{datetime.fromtimestamp(second, UTC):%Y-%m-%dT%H:%M:%S}"
        return f"{self.prefix}.{int((at - second) * 1000):03d}Z"


_timestamps = Timestamps()


def now_iso() -> str:
    return _timestamps(time.time())


def error_body(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"status": status, "error": HTTPStatus(status).phrase, "code": code, "message": message,
            **extra, "timestamp": now_iso()}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JsonResponse:
    return JsonResponse(error_body(status, code, message, **extra), status_code=status, headers=headers)


def rejection(reply: dict[str, Any]) -> ApiError:
    """The ApiError for a reply with `ok: false`."""
    code = str(reply.get("code") or "rejected")
    if code in WORKER_FAULTS:
        log.error("command %s failed in the worker: %s %s", reply.get("commandId"), code, reply.get("message"))
        return ApiError(500, "internal_error", "The command could not be processed.", commandId=reply.get("commandId"))
    shown = DISGUISED.get(code, code)
    message = MESSAGES[Code(shown)] if shown in DOMAIN_CODES else str(reply.get("message") or code)
    if code == "invalid_command":  # the worker's schema check: report it as a field error
        return ApiError(400, code, "The command failed validation in the booking service.",
                        errors={"body": message})
    # A code this gateway does not know yet (added to the catalogue later): the processor
    # refused a well-formed request, so 422.
    return ApiError(REJECTION_STATUS.get(code, 422), shown, message)


def unavailable(code: str, message: str, **extra: Any) -> ApiError:
    return ApiError(503, code, message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}, **extra)


def database_unavailable() -> ApiError:
    return unavailable("database_unavailable", "The bookings database is unavailable; retry.")


# -- validation -------------------------------------------------------------------------


def field_name(loc: tuple[Any, ...]) -> str:
    """("body", "stops", 0, "stopId") -> "stops[0].stopId"; a whole-body error -> "body"."""
    parts = loc[1:] if loc and loc[0] in BODY_LOCATIONS else loc
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def field_message(error: dict[str, Any]) -> str:
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def field_errors(errors: list[dict[str, Any]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for error in errors:
        fields.setdefault(field_name(tuple(error.get("loc", ()))), field_message(error))
    return fields


def validation_response(errors: list[dict[str, Any]]) -> JsonResponse:
    if any(error.get("type") == "json_invalid" for error in errors):
        return error_response(400, "malformed_json", "The request body is not valid JSON.")
    return validation_failed(field_errors(errors))


def validation_failed(fields: dict[str, str]) -> JsonResponse:
    body = error_body(400, "validation_failed", f"{len(fields)} field(s) are invalid.", errors=fields)
    body["error"] = "Validation failed"  # what the Java service's clients match on
    return JsonResponse(body, status_code=400)


# -- handlers ---------------------------------------------------------------------------


async def on_api_error(_: Request, error: ApiError) -> JsonResponse:
    return error_response(error.status, error.code, error.message, error.headers, **error.extra)


async def on_validation_error(_: Request, error: RequestValidationError) -> JsonResponse:
    return validation_response(list(error.errors()))


async def on_http_error(_: Request, error: StarletteHTTPException) -> JsonResponse:
    message = error.detail if isinstance(error.detail, str) else HTTPStatus(error.status_code).phrase
    code = HTTP_CODES.get(error.status_code, "server_error" if error.status_code >= 500 else "bad_request")
    return error_response(error.status_code, code, message, dict(error.headers or {}))


async def on_auth_error(_: Request, error: AuthError) -> JsonResponse:
    # RFC 6750: no error attribute when the request simply carried no token.
    challenge = "Bearer" if error.code == "missing_token" else 'Bearer error="invalid_token"'
    return error_response(401, error.code, error.message, {"WWW-Authenticate": challenge})


async def on_role_error(_: Request, error: RoleError) -> JsonResponse:
    return error_response(403, Code.FORBIDDEN, str(error))


async def on_reply_timeout(_: Request, error: ReplyTimeout) -> JsonResponse:
    return await on_api_error(_, unavailable(
        "reply_timeout",
        "The booking service did not answer in time. The request may still apply: retry with the same "
        "Idempotency-Key to get its outcome.",
        commandId=error.command_id))


async def on_kafka_unavailable(_: Request, error: KafkaUnavailable) -> JsonResponse:
    log.warning("kafka unavailable: %s", error)
    return await on_api_error(_, unavailable("kafka_unavailable", "The booking service is unavailable; retry."))


async def on_in_flight(_: Request, error: RequestInFlight) -> JsonResponse:
    return error_response(409, "request_in_flight",
                          "A request with this Idempotency-Key is still being processed; retry shortly.",
                          {"Retry-After": str(RETRY_AFTER_SECONDS)}, commandId=error.command_id)


async def on_unexpected(_: Request, error: Exception) -> JsonResponse:
    # Not logged here: Starlette re-raises it after this response, and the server logs it.
    return error_response(500, "internal_error", "An unexpected error occurred.")


HANDLERS: dict[type[Exception], Callable[[Request, Any], Awaitable[JsonResponse]]] = {
    ApiError: on_api_error,
    RequestValidationError: on_validation_error,
    StarletteHTTPException: on_http_error,
    AuthError: on_auth_error,
    RoleError: on_role_error,
    ReplyTimeout: on_reply_timeout,
    KafkaUnavailable: on_kafka_unavailable,
    RequestInFlight: on_in_flight,
}


def handler_for(error: Exception) -> Callable[[Request, Any], Awaitable[JsonResponse]] | None:
    """The handler of the error's type (or of its nearest base class that has one); None
    for an unexpected error."""
    for kind in type(error).__mro__:
        handler = HANDLERS.get(kind)
        if handler is not None:
            return handler
    return None


def install_error_handlers(app: FastAPI) -> None:
    for kind, handler in HANDLERS.items():
        app.add_exception_handler(kind, handler)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_unexpected)
