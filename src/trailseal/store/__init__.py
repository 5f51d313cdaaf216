"""PostgreSQL: connection pools, tenant-scoped transactions, migrations.

Every transaction the service runs takes one of the runtime roles with ``SET LOCAL ROLE``
and names its tenant with a transaction-local setting, so the database's privileges and
row-level security decide what it may touch; both reset at commit, which keeps pooled
connections (and PgBouncer in transaction mode) safe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection, AsyncCursor, AsyncTransaction
from psycopg_pool import AsyncConnectionPool

if TYPE_CHECKING:  # QueryNoTemplate is psycopg 3.3's name
    from psycopg.abc import Params, QueryNoTemplate

SCHEMA = "trailseal"
_SCOPE = "SELECT set_config('role', %s, true), set_config('trailseal.tenant', %s, true)"


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
    so tenant tables show no rows). Its BEGIN and its scope reach PostgreSQL together."""
    async with _begun(conn, role, tenant, ()):
        yield conn


@asynccontextmanager
async def scoped_query(
    conn: AsyncConnection, role: Role, query: QueryNoTemplate, params: Params,
    tenant: str | None = None,
) -> AsyncIterator[AsyncCursor[Any]]:
    """``scoped``, with ``query`` (and its ``params``) for first statement, sent along
    with the BEGIN and the scope: one round trip for the three, where each alone would
    wait for its answer. Yields the query's cursor, its rows fetched."""
    async with _begun(conn, role, tenant, ((query, params),)) as cursors:
        yield cursors[0]


@asynccontextmanager
async def scoped_ahead(
    conn: AsyncConnection, role: Role, query: QueryNoTemplate, params: Params,
) -> AsyncIterator[AsyncCursor[Any]]:
    """``scoped_query`` without waiting for its answer: the BEGIN, the scope (no tenant)
    and ``query`` are sent, and ``conn`` stays in pipeline mode until the transaction
    ends, so what the caller sends next travels in the same round trip. Fetching any
    result (the yielded cursor's, or a later statement's) waits for everything sent
    before it. ``query`` is expected to set the transaction's tenant itself."""
    pipeline, transaction = conn.pipeline(), AsyncTransaction(conn)
    await pipeline.__aenter__()
    try:
        await transaction.__aenter__()
    except BaseException as exc:
        await pipeline.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    try:
        await conn.execute(_SCOPE, (role.value, ""))
        yield await conn.execute(query, params)
    except BaseException as exc:
        # A failed statement leaves the pipeline aborted, where no ROLLBACK runs: end
        # the pipeline first (its Sync), then roll back outside it.
        try:
            await pipeline.__aexit__(type(exc), exc, exc.__traceback__)
        finally:
            await transaction.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    try:
        await transaction.__aexit__(None, None, None)  # the COMMIT, in the pipeline
    except BaseException as exc:
        await pipeline.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    await pipeline.__aexit__(None, None, None)


@asynccontextmanager
async def _begun(
    conn: AsyncConnection, role: Role, tenant: str | None,
    first: tuple[tuple[QueryNoTemplate, Params], ...],
) -> AsyncIterator[list[AsyncCursor[Any]]]:
    # In pipeline mode the BEGIN, the scope and ``first`` are sent without waiting; the
    # pipeline's end waits once for all their answers. The transaction stays open past
    # it and ends (commit, or rollback on an exception) as the stack unwinds.
    async with AsyncExitStack() as stack:
        async with conn.pipeline():
            await stack.enter_async_context(AsyncTransaction(conn))
            await conn.execute(_SCOPE, (role.value, tenant or ""))
            cursors = [await conn.execute(query, params) for query, params in first]
        yield cursors


@asynccontextmanager
async def transaction(
    pool: AsyncConnectionPool, role: Role, tenant: str | None = None
) -> AsyncIterator[AsyncConnection]:
    """A pooled connection in one transaction as ``role`` for ``tenant``."""
    async with pool.connection() as conn, scoped(conn, role, tenant):
        yield conn
