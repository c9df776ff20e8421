"""Databases of the tests' own on the Postgres `make test` runs (the settings' DATABASE_URL
names it), and plain queries for assertions."""

import time
import uuid
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from app.config import get_settings


def database_url(name: str) -> str:
    return make_conninfo(get_settings().database_url, dbname=name)


def create_database() -> str:
    name = f"openride_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(get_settings().database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str, attempts: int = 50) -> None:
    """FORCE cannot end an autovacuum worker busy in the database (that needs superuser:
    InsufficientPrivilege), but the worker is done soon: try again."""
    for attempt in range(attempts):
        try:
            with psycopg.connect(get_settings().database_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.errors.InsufficientPrivilege:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)


def scalar(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


def rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()
