"""Prints a development JWT the gateway accepts (`make token SUB=.. ROLE=..` calls this).

    python -m gateway.token --sub rider-1 --role RIDER [--ttl 3600]
    python -m gateway.token --sub ops --role ADMIN --role RIDER   # several roles

With an asymmetric JWT_ALGORITHM, pass the signing key: --private-key key.pem.
"""

import argparse
import sys

from app.config import get_settings
from app.domain.commands import Role
from gateway.security import ASYMMETRIC, load_key, mint_token


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gateway.token", description=__doc__.splitlines()[0])
    parser.add_argument("--sub", required=True, help="the user id (the token's subject)")
    parser.add_argument("--role", action="append", required=True, type=str.upper,
                        choices=[role.value for role in Role], help="repeat for several roles")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    parser.add_argument("--private-key", help="PEM (or its path) for RS256/ES256 signing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = get_settings()
    if settings.jwt_algorithm in ASYMMETRIC:
        if not args.private_key:
            print(f"JWT_ALGORITHM={settings.jwt_algorithm}: pass --private-key", file=sys.stderr)
            return 2
        key = load_key(args.private_key)
    else:
        key = settings.jwt_secret
    print(mint_token(args.sub, args.role, args.ttl, settings.jwt_algorithm, key, settings.jwt_audience,
                     settings.jwt_issuer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
