"""The Idempotency-Key store, in Postgres so that every gateway process (uvicorn workers,
replicas) sees the same keys: a retry may land on any of them.

Per user and key, kept IDEMPOTENCY_TTL_HOURS (24):
- first request: the key is claimed (a row without a response) and the command is sent;
  its final response is stored with it;
- same key, same request (method, path, body): the stored status and body, byte for
  byte; while the first is still in flight: 409 request_in_flight;
- same key, another request: 422 idempotency_key_reused.

The key also names the command id (gateway.commands.command_id_for), which is what makes a
retry after a 503 safe: the store forgets a key whose request ended without an answer
(reply timeout, Kafka down), the retry claims it again and sends the same command id,
and the worker answers with the original outcome if the first one did apply. A claim
whose gateway died is taken over by a retry once `locked_until` has passed.
"""

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.responses import Response

from gateway.errors import ApiError, database_unavailable
from gateway.kafka import RequestInFlight

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 2.0
CLAIM_ATTEMPTS = 3
KEPT_HEADERS = ("location",)  # response headers worth replaying

CLAIM = """
INSERT INTO idempotency_keys AS kept
    (user_id, idempotency_key, fingerprint, claim_id, command_id, locked_until)
VALUES (%(user)s, %(key)s, %(fingerprint)s, %(claim)s, %(command)s, now() + %(lock)s)
ON CONFLICT (user_id, idempotency_key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, claim_id = EXCLUDED.claim_id, command_id = EXCLUDED.command_id,
        response_status = NULL, response_body = NULL, response_headers = NULL,
        created_at = now(), locked_until = EXCLUDED.locked_until
    WHERE kept.created_at < now() - %(ttl)s
       OR (kept.response_status IS NULL AND kept.locked_until < now() AND kept.fingerprint = EXCLUDED.fingerprint)
RETURNING claim_id
"""
FIND = """
SELECT fingerprint, command_id, response_status, response_body, response_headers FROM idempotency_keys
WHERE user_id = %s AND idempotency_key = %s
"""
FINISH = """
UPDATE idempotency_keys SET response_status = %s, response_body = %s, response_headers = %s
WHERE user_id = %s AND idempotency_key = %s AND claim_id = %s
"""
RELEASE = "DELETE FROM idempotency_keys WHERE user_id = %s AND idempotency_key = %s AND claim_id = %s"
PURGE = "DELETE FROM idempotency_keys WHERE created_at < now() - %s"


def fingerprint(method: str, path: str, body: Any) -> str:
    """What makes two requests "the same": method, path and the validated body in a
    canonical form (key order and whitespace of the client's JSON do not matter)."""
    canonical = orjson.dumps([method, path, body], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True, slots=True)
class Claim:
    user_id: str
    key: str
    claim_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Stored:
    status: int
    body: bytes
    headers: dict[str, str]

    def response(self) -> Response:
        return Response(self.body, status_code=self.status, media_type="application/json",
                        headers={**self.headers, "Idempotent-Replayed": "true"})


def key_reused() -> ApiError:
    return ApiError(422, "idempotency_key_reused",
                    "This Idempotency-Key was already used for a different request.")


class IdempotencyStore:
    def __init__(self, pool: AsyncConnectionPool, ttl: timedelta, in_flight_lock: timedelta):
        self.pool = pool
        self.ttl = ttl
        self.in_flight_lock = in_flight_lock

    async def claim(self, user_id: str, key: str, request_fingerprint: str, command_id: str) -> Claim | Stored:
        """The claim to go ahead, or the stored response to replay. Raises 422 (another
        request used the key) or RequestInFlight (409)."""
        claim_id = uuid.uuid4()
        params = {"user": user_id, "key": key, "fingerprint": request_fingerprint, "claim": claim_id,
                  "command": command_id, "lock": self.in_flight_lock, "ttl": self.ttl}
        for _ in range(CLAIM_ATTEMPTS):
            if await self._fetch(CLAIM, params) is not None:
                return Claim(user_id, key, claim_id)
            found = await self._fetch(FIND, (user_id, key))
            if found is None:
                continue  # released between the two statements: claim again
            stored_fingerprint, stored_command, status, body, headers = found
            if stored_fingerprint != request_fingerprint:
                raise key_reused()
            if status is None:
                raise RequestInFlight(stored_command)
            return Stored(status, bytes(body), headers or {})
        raise RequestInFlight(command_id)  # claimed and released repeatedly: call it busy

    async def finish(self, claim: Claim, response: Response) -> None:
        headers = {name: value for name, value in response.headers.items() if name in KEPT_HEADERS}
        await self._execute(FINISH, (response.status_code, bytes(response.body), Jsonb(headers),
                                     claim.user_id, claim.key, claim.claim_id))

    async def release(self, claim: Claim) -> None:
        """Forgets a claim whose request ended without a response worth repeating."""
        try:
            await self._execute(RELEASE, (claim.user_id, claim.key, claim.claim_id))
        except ApiError:  # the lock runs out by itself; the retry then takes the key over
            log.warning("could not release idempotency key %r of %s", claim.key, claim.user_id)

    async def purge(self) -> int:
        """Deletes the keys past their time; returns how many."""
        async with self.pool.connection(timeout=CONNECT_TIMEOUT_SECONDS) as connection:
            cursor = await connection.execute(PURGE, (self.ttl,))
            return cursor.rowcount

    async def _fetch(self, query: str, params: Any) -> tuple[Any, ...] | None:
        try:
            async with self.pool.connection(timeout=CONNECT_TIMEOUT_SECONDS) as connection:
                cursor = await connection.execute(query, params)
                return await cursor.fetchone()
        except (PoolTimeout, psycopg.OperationalError) as error:
            raise database_unavailable() from error

    async def _execute(self, query: str, params: Any) -> None:
        try:
            async with self.pool.connection(timeout=CONNECT_TIMEOUT_SECONDS) as connection:
                await connection.execute(query, params)
        except (PoolTimeout, psycopg.OperationalError) as error:
            raise database_unavailable() from error
