"""PostgreSQL: connection pools, tenant-scoped transactions, migrations.

Every transaction the service runs takes one of the runtime roles with ``SET LOCAL ROLE``
and names its tenant with a transaction-local setting, so the database's privileges and
row-level security decide what it may touch; both reset at commit, which keeps pooled
connections (and PgBouncer in transaction mode) safe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

SCHEMA = "trailseal"


class Role(StrEnum):
    """The database roles of trailseal; the names are a contract."""

    OWNER = "trailseal_owner"
    INGEST = "trailseal_ingest"
    SEQUENCER = "trailseal_sequencer"
    READER = "trailseal_reader"
    ARCHIVER = "trailseal_archiver"


async def _configure(conn: AsyncConnection) -> None:
    await conn.set_autocommit(True)


def create_pool(url: str, *, min_size: int = 2, max_size: int = 10) -> AsyncConnectionPool:
    """A pool of autocommit connections; open it with ``await pool.open()``."""
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        configure=_configure,
        kwargs={"application_name": "trailseal"},
    )


@asynccontextmanager
async def scoped(
    conn: AsyncConnection, role: Role, tenant: str | None = None
) -> AsyncIterator[AsyncConnection]:
    """One transaction on ``conn`` as ``role``, scoped to ``tenant`` (None: no tenant,
    so tenant tables show no rows)."""
    async with conn.transaction():
        await conn.execute(
            "SELECT set_config('role', %s, true), set_config('trailseal.tenant', %s, true)",
            (role.value, tenant or ""),
        )
        yield conn


@asynccontextmanager
async def transaction(
    pool: AsyncConnectionPool, role: Role, tenant: str | None = None
) -> AsyncIterator[AsyncConnection]:
    """A pooled connection in one transaction as ``role`` for ``tenant``."""
    async with pool.connection() as conn, scoped(conn, role, tenant):
        yield conn
