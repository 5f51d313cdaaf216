"""The service runs under a plain login that is only a member of the runtime roles, as
docs/production.md tells operators to set it up."""

from __future__ import annotations

import secrets
import uuid

import psycopg
import pytest
from psycopg import sql

from tests.support import an_event, make_tenant, run
from trailseal import ingest
from trailseal.reading.query import get_event
from trailseal.runtime import build_sequencer
from trailseal.store import Role, create_pool, scoped


@pytest.fixture
def app_login_url(own_database):
    name = f"trailseal_app_{secrets.token_hex(4)}"
    with psycopg.connect(own_database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("GRANT trailseal_ingest, trailseal_sequencer, trailseal_reader TO {}").format(
                sql.Identifier(name)
            )
        )
    yield psycopg.conninfo.make_conninfo(own_database, user=name)
    with psycopg.connect(own_database, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_ingest_sequence_and_read_as_the_app_login(app_login_url, own_database, settings):
    t = make_tenant(own_database, "prod")
    event = an_event()

    async def go() -> dict | None:
        pool = create_pool(app_login_url, min_size=1, max_size=2)
        await pool.open(wait=True)
        try:
            at = ingest.now()
            async with pool.connection() as conn:
                result = await ingest.write_inbox(
                    conn, t.name, ingest.prepare([event], t.name, at), at
                )
                assert [str(i) for i in result.accepted] == [event["id"]]
            assert await build_sequencer(pool, settings).sequence_tenant(t.name) == 1
            async with pool.connection() as conn:
                return await get_event(conn, t.name, uuid.UUID(str(event["id"])))
        finally:
            await pool.close()

    found = run(go())
    assert found is not None and found["seq"] == 0


def test_the_app_login_cannot_become_the_owner(app_login_url):
    async def go() -> None:
        conn = await psycopg.AsyncConnection.connect(app_login_url, autocommit=True)
        async with conn, scoped(conn, Role.OWNER):
            pass

    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        run(go())
