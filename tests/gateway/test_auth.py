"""401 without a usable token, 403 for a role that may not; roles from `role` or `roles`."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.config import get_settings
from app.domain.commands import Actor, Role
from gateway import token as token_cli
from gateway.security import AuthError, Principal, RoleError, TokenVerifier, roles_of
from tests.gateway.replies import BOOKING_REQUEST, TRIP
from tests.support.http import auth, token


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and body["code"] == code
    assert {"status", "error", "code", "message", "timestamp"} <= body.keys()
    return body


def test_no_token_is_401(client):
    response = client.post("/v1/bookings", json=BOOKING_REQUEST)
    assert_error(response, 401, "missing_token")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_other_scheme_is_401(client):
    response = client.get("/v1/bookings/R1.20300115.ABCDEFGHIJKLMNOP", headers={"Authorization": "Basic dTpw"})
    assert_error(response, 401, "missing_token")


@pytest.mark.parametrize("bad", [
    "not-a-jwt",
    jwt.encode({"sub": "rider-1", "role": "RIDER", "exp": int(time.time()) + 60}, "another-secret-of-32-bytes-at-least!"),
    jwt.encode({"sub": "rider-1", "role": "RIDER", "exp": int(time.time()) + 60}, None, algorithm="none"),
    jwt.encode({"sub": "rider-1", "role": "RIDER"}, get_settings().jwt_secret),  # no exp
    jwt.encode({"role": "RIDER", "exp": int(time.time()) + 60}, get_settings().jwt_secret),  # no sub
    token(sub="x" * 65),  # longer than the wire's userId
], ids=["garbage", "wrong-secret", "alg-none", "no-exp", "no-sub", "long-sub"])
def test_bad_token_is_401(client, bad):
    response = client.post("/v1/bookings", json=BOOKING_REQUEST, headers={"Authorization": f"Bearer {bad}"})
    assert_error(response, 401, "invalid_token")


def test_expired_token_is_401(client):
    response = client.post("/v1/bookings", json=BOOKING_REQUEST,
                           headers={"Authorization": f"Bearer {token(ttl=-60)}"})
    assert_error(response, 401, "token_expired")


def test_rider_may_not_publish_trips(client, bus):
    response = client.put("/v1/trips/R1/2030-01-15", json=TRIP, headers=auth("rider-1", "RIDER"))
    assert_error(response, 403, "forbidden")
    assert bus.sent == []


def test_driver_may_not_book(client, bus):
    response = client.post("/v1/bookings", json=BOOKING_REQUEST, headers=auth("driver-1", "DRIVER"))
    assert_error(response, 403, "forbidden")
    assert bus.sent == []


def test_token_without_known_role_is_403(client):
    response = client.post("/v1/bookings", json=BOOKING_REQUEST, headers=auth("someone", ["VISITOR"]))
    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("role", ["SERVICE", "ADMIN", "DRIVER"])
def test_trip_managers_may_publish(client, bus, role):
    response = client.put("/v1/trips/R1/2030-01-15", json=TRIP, headers=auth("someone", role))
    assert response.status_code == 200, response.text
    assert bus.sent[0][1]["actor"] == {"userId": "someone", "role": role}


def test_strongest_allowed_role_acts(client, bus):
    response = client.put("/v1/trips/R1/2030-01-15", json=TRIP, headers=auth("ops", ["RIDER", "DRIVER", "ADMIN"]))
    assert response.status_code == 200, response.text
    assert bus.sent[0][1]["actor"]["role"] == "ADMIN"


def test_roles_from_role_or_roles():
    assert roles_of({"role": "RIDER"}) == {Role.RIDER}
    assert roles_of({"roles": ["driver", "ROLE_ADMIN", "nope"]}) == {Role.DRIVER, Role.ADMIN}
    assert roles_of({"role": "SERVICE", "roles": ["RIDER"]}) == {Role.SERVICE, Role.RIDER}
    assert roles_of({"role": 7, "roles": "ADMIN"}) == frozenset()


def test_acting_as_picks_the_strongest_allowed_role():
    principal = Principal("u", frozenset({Role.RIDER, Role.DRIVER}))
    assert principal.acting_as((Role.RIDER,)) == Actor("u", Role.RIDER)
    assert principal.acting_as((Role.SERVICE, Role.ADMIN, Role.DRIVER)) == Actor("u", Role.DRIVER)
    with pytest.raises(RoleError):
        principal.acting_as((Role.ADMIN,))


def test_token_command_prints_a_token_the_gateway_accepts(capsys):
    assert token_cli.main(["--sub", "rider-9", "--role", "rider", "--ttl", "60"]) == 0
    printed = capsys.readouterr().out.strip()
    principal = TokenVerifier.from_settings(get_settings()).verify(printed)
    assert principal == Principal("rider-9", frozenset({Role.RIDER}))


def test_asymmetric_keys_verify_and_refuse_algorithm_confusion():
    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    verifier = TokenVerifier("ES256", public_pem)
    good = jwt.encode({"sub": "svc", "role": "SERVICE", "exp": int(time.time()) + 60}, private, algorithm="ES256")
    assert verifier.verify(good).roles == {Role.SERVICE}
    with pytest.raises(AuthError):
        verifier.verify(token("svc", "ADMIN"))  # HS256 token: refused, whatever its secret


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_remembered_token_still_expires_and_is_not_valid_before_its_nbf():
    secret = get_settings().jwt_secret
    clock = Clock(time.time())
    verifier = TokenVerifier("HS256", secret, clock=clock)
    claims = {"sub": "rider-1", "role": "RIDER", "nbf": int(clock.now), "exp": int(clock.now) + 60}
    early_and_late = jwt.encode(claims, secret)
    assert verifier.verify(early_and_late) == Principal("rider-1", frozenset({Role.RIDER}))
    clock.now += 60 + 11  # past exp and the leeway: the cached verdict no longer holds
    with pytest.raises(AuthError) as expired:
        verifier.verify(early_and_late)
    assert expired.value.code == "token_expired"
    clock.now = claims["nbf"] - 11  # before nbf and the leeway
    with pytest.raises(AuthError):
        verifier.verify(early_and_late)


def test_a_token_changed_by_one_character_is_verified_afresh():
    verifier = TokenVerifier("HS256", get_settings().jwt_secret)
    good = token("rider-1", "RIDER")
    verifier.verify(good)
    head, body, signature = good.split(".")
    forged = f"{head}.{body}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}"
    with pytest.raises(AuthError):
        verifier.verify(forged)


def test_the_remembered_tokens_are_bounded(monkeypatch):
    monkeypatch.setattr("gateway.security.VERIFIED_TOKENS_KEPT", 3)
    verifier = TokenVerifier("HS256", get_settings().jwt_secret)
    for n in range(5):
        verifier.verify(token(f"rider-{n}", "RIDER"))
    assert [v.principal.user_id for v in verifier.verified.values()] == ["rider-2", "rider-3", "rider-4"]
