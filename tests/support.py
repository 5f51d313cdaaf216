"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import AsyncConnection, sql

from trailseal.ids import uuid7
from trailseal.tenants import SCOPES, create_key, create_tenant


def run(coro):  # type: ignore[no-untyped-def]
    """Run one coroutine to completion (tests are synchronous)."""
    return asyncio.run(coro)


@contextmanager
def fresh_database(database_url: str, prefix: str = "trailseal_test") -> Iterator[str]:
    """The URL of a new, empty (unmigrated) database on ``database_url``'s server,
    dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield psycopg.conninfo.make_conninfo(database_url, dbname=name)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass(frozen=True)
class Tenant:
    """A fresh tenant and one key per scope set."""

    name: str
    token: str  # every scope
    tokens: dict[str, str]  # scope -> a key with only that scope

    def auth(self, scope: str | None = None) -> dict[str, str]:
        token = self.token if scope is None else self.tokens[scope]
        return {"Authorization": f"Bearer {token}"}


def make_tenant(database_url: str, prefix: str = "t") -> Tenant:
    name = f"{prefix}-{secrets.token_hex(5)}"

    async def go() -> Tenant:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            await create_tenant(conn, name)
            full = await create_key(conn, name, SCOPES)
            single = {s: (await create_key(conn, name, (s,), name=s)).token for s in SCOPES}
        return Tenant(name, full.token, single)

    return run(go())


def new_id() -> str:
    return str(uuid7())


def an_event(**overrides: object) -> dict[str, object]:
    """A small valid event; keyword arguments replace its fields."""
    event: dict[str, object] = {
        "id": new_id(),
        "actor": {"type": "user", "id": "u_1", "name": "Alice"},
        "action": "user.login.succeeded",
        "target": {"type": "user", "id": "u_1"},
    }
    event.update(overrides)
    return event




def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
