"""Running SQL as one of trailseal's roles, for one tenant, in a transaction that is
always rolled back: a rule that failed to hold cannot damage what other tests read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

OWNER = "trailseal_owner"
INGEST = "trailseal_ingest"
SEQUENCER = "trailseal_sequencer"
READER = "trailseal_reader"
ARCHIVER = "trailseal_archiver"
RUNTIME_ROLES = (INGEST, SEQUENCER, READER, ARCHIVER)
ROLES = (OWNER, *RUNTIME_ROLES)
SUPERUSER = None  # no SET ROLE: the test connection's own superuser

Query = str | sql.Composable


@contextmanager
def acting(
    conn: psycopg.Connection, role: str | None, tenant: str | None = None
) -> Iterator[psycopg.Connection]:
    """One rolled-back transaction as ``role`` (None: stay superuser) with the
    transaction-local tenant ``tenant`` (None: leave the setting alone)."""
    with conn.transaction(force_rollback=True):
        if role is not None:
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        if tenant is not None:
            conn.execute("SELECT set_config('trailseal.tenant', %s, true)", (tenant,))
        yield conn


def refusal(
    conn: psycopg.Connection,
    role: str | None,
    tenant: str | None,
    statement: Query,
    params: Any = None,
    *,
    setup: Query | None = None,
) -> psycopg.Error:
    """The error (SQLSTATE 42501) that ``statement`` must raise as ``role``; ``setup``
    runs first, as the superuser, in the same transaction."""
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege) as caught,
        conn.transaction(force_rollback=True),
    ):
        if setup is not None:
            conn.execute(setup)
        with acting(conn, role, tenant):
            conn.execute(statement, params)
    return caught.value


def by_trigger(error: psycopg.Error) -> bool:
    """Whether ``error`` is trailseal's append-only refusal (not a missing privilege)."""
    message = error.diag.message_primary or ""
    return "is refused: the audit log is append-only" in message


def rows(conn: psycopg.Connection, query: Query, params: Any = None) -> list[Any]:
    """All rows of ``query``, read as the superuser in a transaction of its own."""
    with conn.transaction():
        return conn.execute(query, params).fetchall()
