"""A producer's database for the pipeline tests: created per test module on the same
server as the service's, with an application table ``public.users`` and an outbox."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from trailseal.pipeline.outbox import install_outbox

USERS = (
    "CREATE TABLE public.users"
    " (id bigint PRIMARY KEY, email text, role text, password_hash text)"
)


@pytest.fixture(scope="module")
def producer_url(database_url: str) -> Iterator[str]:
    """A database of this module's own, as an application would have it."""
    name = f"trailseal_app_{secrets.token_hex(4)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(database_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(USERS)
        install_outbox(conn)
    yield url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def app_url(producer_url: str) -> str:
    """The producer's database, emptied: no users, no outbox rows, no capture trigger."""
    with psycopg.connect(producer_url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER IF EXISTS trailseal_capture ON public.users")
        conn.execute("TRUNCATE public.users, public.trailseal_outbox RESTART IDENTITY")
    return producer_url

