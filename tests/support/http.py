"""Requests as the gateway's callers make them: bearer tokens minted from the shared
secret (independently of the gateway's own helper) and publishing a trip."""

import time
from typing import Any

import httpx
import jwt

from app.config import get_settings


def token(sub: str = "rider-1", role: str | list[str] | None = "RIDER", ttl: int = 3600, **claims: Any) -> str:
    """`role` a list: the `roles` claim instead; None: no role at all."""
    now = int(time.time())
    body: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + ttl, **claims}
    if isinstance(role, str):
        body["role"] = role
    elif role is not None:
        body["roles"] = role
    return jwt.encode(body, get_settings().jwt_secret, algorithm="HS256")


def auth(sub: str = "rider-1", role: str | list[str] | None = "RIDER") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, role)}"}


def publish(client: httpx.Client, route_id: str, travel_date: str, trip: dict, publisher: str) -> None:
    """PUT the trip as the route service `publisher`; 503 while the worker may still be
    taking its partitions, so retried with the same Idempotency-Key."""
    headers = {**auth(publisher, "SERVICE"), "Idempotency-Key": route_id}
    for _ in range(6):
        response = client.put(f"/v1/trips/{route_id}/{travel_date}", json=trip, headers=headers)
        if response.status_code != 503:
            break
    assert response.status_code == 200, response.text
