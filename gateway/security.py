"""Bearer JWTs: who is calling, and in which roles.

HS256 with the shared secret by default; RS256/ES256 (and their siblings) with a public
key when `JWT_ALGORITHM` names one and `JWT_PUBLIC_KEY` holds the PEM (or a path to it).
Only the configured algorithm is accepted, so `alg: none` or an HS256 token signed with
the public key as secret (algorithm confusion) never verifies.
"""

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from app.config import DEVELOPMENT_JWT_SECRET, Settings
from app.domain.commands import Actor, Role
from app.wire.commands import has_control_characters

log = logging.getLogger(__name__)

SYMMETRIC = ("HS256", "HS384", "HS512")
ASYMMETRIC = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")
LEEWAY_SECONDS = 10
# Verified tokens remembered per process: a rider's app sends the same token with every
# request until it expires, and its signature need not be checked again (a signature
# check costs more than the rest of the request's authentication, RS256 and ES256 most).
VERIFIED_TOKENS_KEPT = 10_000
MAX_USER_ID = 64  # the actor's userId on the wire (app.wire.commands.Name)
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
# When a token grants several roles that an endpoint accepts, the command acts with the
# strongest one (an admin who is also a rider cancels as an admin).
ROLE_STRENGTH = (Role.ADMIN, Role.SERVICE, Role.DRIVER, Role.RIDER)


class AuthError(Exception):
    """401: no usable credentials. `code` is the stable machine-readable reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class RoleError(Exception):
    """403: authenticated, but no role that may do this."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    roles: frozenset[Role]

    def acting_as(self, allowed: tuple[Role, ...]) -> Actor:
        for role in ROLE_STRENGTH:
            if role in allowed and role in self.roles:
                return Actor(self.user_id, role)
        raise RoleError(f"requires one of the roles {', '.join(allowed)}")

    def is_any(self, *roles: Role) -> bool:
        return not self.roles.isdisjoint(roles)


def roles_of(claims: dict[str, Any]) -> frozenset[Role]:
    """`role` (a string, as the platform's auth service issues) and/or `roles` (a list, as
    some services read); "ROLE_ADMIN" and "admin" spellings too; unknown names ignored."""
    names: list[Any] = []
    if isinstance(claims.get("role"), str):
        names.append(claims["role"])
    if isinstance(claims.get("roles"), list):
        names.extend(claims["roles"])
    known = {role.value for role in Role}
    # ASCII only: str.upper() maps look-alikes ("admın", dotless i) onto real role names.
    normalised = (name.upper().removeprefix("ROLE_") for name in names if isinstance(name, str) and name.isascii())
    return frozenset(Role(name) for name in normalised if name in known)


def load_key(text: str) -> str:
    """A PEM given inline, or the path of a file holding it."""
    if text.lstrip().startswith("-----BEGIN"):
        return text
    return Path(text).read_text()


@dataclass(frozen=True, slots=True)
class Verified:
    principal: Principal
    not_before: float  # epoch seconds, leeway included: valid from not_before ...
    expires: float  # ... to before expires


class TokenVerifier:
    """Verifies a token once, then remembers the verdict: a token's signature, issuer and
    audience cannot change, only the time can, so its validity period is checked on every use."""

    def __init__(self, algorithm: str, key: Any, audience: str = "", issuer: str = "",
                 clock: Callable[[], float] = time.time, max_lifetime_seconds: int = 86_400):
        if algorithm not in SYMMETRIC + ASYMMETRIC:
            raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
        self.algorithm = algorithm
        self.key = key
        self.audience = audience or None  # not checked unless configured
        self.issuer = issuer or None
        self.clock = clock
        self.max_lifetime_seconds = max_lifetime_seconds
        self.verified: OrderedDict[str, Verified] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> "TokenVerifier":
        common = {"audience": settings.jwt_audience, "issuer": settings.jwt_issuer,
                  "max_lifetime_seconds": settings.jwt_max_lifetime_seconds}
        if settings.jwt_algorithm in ASYMMETRIC:
            if not settings.jwt_public_key:
                raise ValueError(f"JWT_ALGORITHM={settings.jwt_algorithm} needs JWT_PUBLIC_KEY")
            return cls(settings.jwt_algorithm, load_key(settings.jwt_public_key), **common)
        check_secret(settings)
        return cls(settings.jwt_algorithm, settings.jwt_secret, **common)

    def verify(self, token: str) -> Principal:
        verified = self.verified.get(token) or self._verify_afresh(token)
        now = self.clock()
        if now >= verified.expires:
            raise AuthError("token_expired", "The token has expired.")
        if now < verified.not_before:
            raise AuthError("invalid_token", "The token is not valid yet.")
        return verified.principal

    def _verify_afresh(self, token: str) -> Verified:
        claims = self._decode(token)
        user_id = claims["sub"]
        if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_USER_ID or has_control_characters(user_id):
            raise AuthError("invalid_token", f"The token's subject must be 1 to {MAX_USER_ID} characters, "
                                             "without control characters.")
        expires = int(claims["exp"])
        issued = int(claims["iat"]) if "iat" in claims else int(self.clock())
        if expires - issued > self.max_lifetime_seconds + LEEWAY_SECONDS:
            raise AuthError("invalid_token", f"The token lives longer than {self.max_lifetime_seconds} s; "
                                             "ask for a shorter-lived one.")
        # The bounds PyJWT has just checked, with the same leeway and the same int() reading.
        not_before = int(claims["nbf"]) - LEEWAY_SECONDS if "nbf" in claims else float("-inf")
        verified = Verified(Principal(user_id, roles_of(claims)), not_before, expires + LEEWAY_SECONDS)
        self.remember(token, verified)
        return verified

    def remember(self, token: str, verified: Verified) -> None:
        self.verified[token] = verified
        if len(self.verified) > VERIFIED_TOKENS_KEPT:
            self.verified.popitem(last=False)

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            return jwt.decode(token, self.key, algorithms=[self.algorithm], leeway=LEEWAY_SECONDS,
                              audience=self.audience, issuer=self.issuer, options={"require": ["sub", "exp"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("token_expired", "The token has expired.") from None
        except jwt.InvalidTokenError as error:
            # What the library says stays in the log: it describes our checks to a prober.
            log.info("token refused: %s: %s", type(error).__name__, error)
            raise AuthError("invalid_token", "The token is not valid.") from None


def check_secret(settings: Settings) -> None:
    """Refuses to serve with a key an attacker could know or guess."""
    if settings.jwt_secret == DEVELOPMENT_JWT_SECRET and settings.environment != "development":
        raise ValueError("JWT_SECRET is the development key that ships with the code: set a secret of your own "
                         "(or ENVIRONMENT=development on a developer's machine)")
    if len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes for {settings.jwt_algorithm}")


def mint_token(sub: str, roles: list[str], ttl_seconds: int, algorithm: str, key: Any, audience: str = "",
               issuer: str = "") -> str:
    """A development token: one role goes in `role`, several in `roles`."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + ttl_seconds}
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    if len(roles) == 1:
        claims["role"] = roles[0]
    else:
        claims["roles"] = roles
    return jwt.encode(claims, key, algorithm=algorithm)
