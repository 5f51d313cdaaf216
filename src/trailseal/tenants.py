"""Tenants and their API keys.

A token is ``tsk_`` followed by 43 characters of URL-safe base64 (256 random bits). Only
its SHA-256 is stored: the token is high-entropy, so a fast hash is the right one, and a
lookup by hash is a single index probe. The token is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection

from trailseal.errors import InvalidInput, NotFound
from trailseal.ids import uuid7
from trailseal.store import Role, scoped, scoped_ahead, scoped_query

SCOPES = ("ingest", "read", "export", "admin")
TOKEN_PREFIX = "tsk_"  # noqa: S105 (a prefix, not a secret)
TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: always exactly one tenant, taken from the key."""

    tenant: str
    key_id: uuid.UUID
    scopes: frozenset[str]


@dataclass(frozen=True)
class NewKey:
    """A key just created; ``token`` exists nowhere else."""

    tenant: str
    key_id: uuid.UUID
    name: str
    scopes: tuple[str, ...]
    token: str


@dataclass(frozen=True)
class KeyInfo:
    """A stored key, without its secret."""

    key_id: uuid.UUID
    name: str
    token_hint: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


def token_hash(token: str) -> bytes:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def parse_scopes(text: str) -> tuple[str, ...]:
    """``"ingest,read"`` → ``("ingest", "read")``; unknown or empty scopes are refused."""
    scopes = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise InvalidInput(
            f"scopes must be a comma-separated list of {', '.join(SCOPES)}; got {text!r}"
        )
    return scopes


async def create_tenant(conn: AsyncConnection, name: str) -> bool:
    """Create tenant ``name``; False when it already exists."""
    if not TENANT_NAME.match(name):
        raise InvalidInput(
            "a tenant name is 1-63 characters of a-z, 0-9, '-' and '_', starting with a "
            f"letter or digit; got {name!r}"
        )
    async with scoped(conn, Role.OWNER, name):
        cur = await conn.execute(
            "INSERT INTO trailseal.tenants (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,)
        )
        return cur.rowcount == 1


async def list_tenants(conn: AsyncConnection) -> list[str]:
    """Every tenant's name."""
    async with scoped(conn, Role.OWNER):
        cur = await conn.execute("SELECT name FROM trailseal.tenants ORDER BY name")
        return [row[0] for row in await cur.fetchall()]


async def create_key(
    conn: AsyncConnection, tenant: str, scopes: tuple[str, ...], name: str = "default"
) -> NewKey:
    """Create an API key for ``tenant`` with ``scopes``."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key_id = uuid7()
    async with scoped(conn, Role.OWNER, tenant):
        try:
            await conn.execute(
                "INSERT INTO trailseal.api_keys"
                " (tenant, id, name, token_hash, token_hint, scopes)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (tenant, key_id, name, token_hash(token), token[:8] + "…", list(scopes)),
            )
        except psycopg.errors.ForeignKeyViolation:
            raise NotFound(f"no tenant named {tenant!r}") from None
        except psycopg.errors.CheckViolation as exc:
            raise InvalidInput(f"invalid key: {exc.diag.message_primary}") from None
    return NewKey(tenant, key_id, name, scopes, token)


async def list_keys(conn: AsyncConnection, tenant: str) -> list[KeyInfo]:
    """The keys of ``tenant``, newest first."""
    async with scoped(conn, Role.OWNER, tenant):
        cur = await conn.execute(
            "SELECT id, name, token_hint, scopes, created_at, revoked_at"
            " FROM trailseal.api_keys WHERE tenant = %s ORDER BY created_at DESC",
            (tenant,),
        )
        return [
            KeyInfo(row[0], row[1], row[2], tuple(row[3]), row[4], row[5])
            for row in await cur.fetchall()
        ]


async def revoke_key(conn: AsyncConnection, tenant: str, key_id: uuid.UUID) -> None:
    """Revoke a key of ``tenant``; it stops working at once."""
    async with scoped(conn, Role.OWNER, tenant):
        cur = await conn.execute(
            "UPDATE trailseal.api_keys SET revoked_at = now()"
            " WHERE tenant = %s AND id = %s AND revoked_at IS NULL",
            (tenant, key_id),
        )
        if cur.rowcount != 1:
            raise NotFound(f"no live key {key_id} for tenant {tenant!r}")


async def authenticate(conn: AsyncConnection, token: str) -> Principal | None:
    """The principal a bearer token stands for, or None."""
    async with authenticated(conn, token) as found:
        return found


@asynccontextmanager
async def authenticated(conn: AsyncConnection, token: str) -> AsyncIterator[Principal | None]:
    """A transaction on ``conn`` as trailseal_reader in which ``token``'s key was looked
    up: its principal, or None. When the token is good, the transaction's tenant
    (``trailseal.tenant``) is its key's, set in the lookup's own statement, so what the
    transaction reads next is that tenant's rows and no other's. The BEGIN, the role and
    the lookup reach PostgreSQL in one round trip."""
    if not well_formed(token):
        async with scoped(conn, Role.READER):
            yield None
        return
    async with scoped_query(conn, Role.READER, _LOOKUP, (token_hash(token),)) as cursor:
        yield _principal(await cursor.fetchone())


@asynccontextmanager
async def authenticating(
    conn: AsyncConnection, token: str
) -> AsyncIterator[Callable[[], Awaitable[Principal | None]]]:
    """``authenticated`` without waiting for the lookup's answer (``token`` must be
    well formed): the BEGIN, the role and the lookup are sent, and what the caller sends
    next travels with them, in one round trip. Yields a function that gives the principal
    (or None); await it before answering with anything read. Until then, what the
    transaction reads under row-level security is the key's tenant's rows (the lookup
    sets the tenant in its own statement) or, for a token that does not stand for a live
    key, no tenant's."""
    async with scoped_ahead(conn, Role.READER, _LOOKUP, (token_hash(token),)) as cursor:
        found: list[Principal | None] = []

        async def principal() -> Principal | None:
            if not found:
                found.append(_principal(await cursor.fetchone()))
            return found[0]

        yield principal


def well_formed(token: str) -> bool:
    """Whether ``token`` could be a key's token at all (else no lookup is made)."""
    return token.startswith(TOKEN_PREFIX) and len(token) <= 200


_LOOKUP = ("SELECT tenant, key_id, scopes, set_config('trailseal.tenant', tenant, true)"
           " FROM trailseal.authenticate(%s)")


def _principal(row: tuple[Any, ...] | None) -> Principal | None:
    return None if row is None else Principal(row[0], row[1], frozenset(row[2]))


async def live_key(conn: AsyncConnection, tenant: str, key_id: uuid.UUID) -> Principal | None:
    """The principal of ``tenant``'s key ``key_id`` while it exists and is not revoked
    (a console session holds the key id, never the token, and asks this every request)."""
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(
            "SELECT scopes FROM trailseal.api_keys"
            " WHERE tenant = %s AND id = %s AND revoked_at IS NULL",
            (tenant, key_id),
        )
        row = await cur.fetchone()
    return None if row is None else Principal(tenant, key_id, frozenset(row[0]))


async def key_names(conn: AsyncConnection, tenant: str) -> dict[uuid.UUID, str]:
    """The name of each of ``tenant``'s keys, revoked ones included, by id."""
    async with scoped(conn, Role.READER, tenant):
        cur = await conn.execute(
            "SELECT id, name FROM trailseal.api_keys WHERE tenant = %s", (tenant,)
        )
        return {row[0]: row[1] for row in await cur.fetchall()}
