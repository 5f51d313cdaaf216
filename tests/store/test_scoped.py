"""``scoped`` and ``scoped_query``: the BEGIN, the role, the tenant and a first statement
go to PostgreSQL together, and the transaction they open behaves as any other: its role
and tenant last until it ends, it commits when the block ends, it rolls back whatever
ended it early (its first statement failing too), and the connection is idle after.
``scoped_ahead`` (``authenticating``): the same without waiting for the first statement,
so what follows it travels with it."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import AsyncConnection, pq

from tests.support import Tenant, run
from trailseal.store import Role, scoped, scoped_ahead, scoped_query
from trailseal.tenants import authenticated, authenticating, create_key, revoke_key

WHO = "SELECT current_user, current_setting('trailseal.tenant', true)"


def _keys(database_url: str, tenant: Tenant) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM trailseal.api_keys WHERE tenant = %s",
                           (tenant.name,)).fetchone()
    assert row is not None
    return int(row[0])


def test_the_first_statement_runs_as_the_role_for_the_tenant(database_url, tenant):
    async def go() -> tuple[object, ...]:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            async with scoped_query(conn, Role.READER, WHO, (), tenant.name) as cursor:
                first = await cursor.fetchone()
                later = await (await conn.execute(WHO)).fetchone()
            after = await (await conn.execute(WHO)).fetchone()
            return first, later, after, conn.info.transaction_status

    first, later, after, status = run(go())
    assert first == later == ("trailseal_reader", tenant.name)
    assert after is not None and after[0] != "trailseal_reader" and after[1] in (None, "")
    assert status == pq.TransactionStatus.IDLE


def test_the_block_commits_and_an_exception_rolls_it_back(database_url, tenant):
    before = _keys(database_url, tenant)
    insert = ("INSERT INTO trailseal.api_keys (tenant, id, name, token_hash, token_hint,"
              " scopes) VALUES (%s, gen_random_uuid(), %s, sha256(%s), 'tsk_…', '{read}')")

    async def go(name: str, fail: bool) -> None:
        async with (await AsyncConnection.connect(database_url, autocommit=True) as conn,
                    scoped(conn, Role.OWNER, tenant.name)):
            await conn.execute(insert, (tenant.name, name, name.encode()))
            if fail:
                raise LookupError("stop")

    with pytest.raises(LookupError):
        run(go("scoped-rolled-back", fail=True))
    assert _keys(database_url, tenant) == before
    run(go("scoped-committed", fail=False))
    assert _keys(database_url, tenant) == before + 1


def test_a_failing_first_statement_raises_and_leaves_the_connection_usable(database_url):
    async def go() -> tuple[object, ...]:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.DivisionByZero):
                async with scoped_query(conn, Role.READER, "SELECT 1 / %s", (0,)):
                    pytest.fail("the block ran after its first statement failed")
            status = conn.info.transaction_status
            async with scoped_query(conn, Role.READER, "SELECT 1 / %s", (1,)) as cursor:
                return status, await cursor.fetchone()

    status, row = run(go())
    assert status == pq.TransactionStatus.IDLE
    assert row == (1,)


def test_authenticated_scopes_the_transaction_to_the_keys_tenant_only(database_url, tenant):
    async def go(token: str) -> tuple[object, ...]:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            async with authenticated(conn, token) as found:
                who = await (await conn.execute(WHO)).fetchone()
            return found, who

    found, who = run(go(tenant.token))
    assert found is not None and found.tenant == tenant.name
    assert who == ("trailseal_reader", tenant.name)
    for bad in ("tsk_" + "0" * 40, "not-a-token", "tsk_" + "x" * 300):
        found, who = run(go(bad))
        assert found is None
        assert who is not None and who[0] == "trailseal_reader" and who[1] in (None, "")


KEYS = "SELECT count(*) FROM trailseal.api_keys"


def test_authenticating_reads_what_follows_as_the_keys_tenant_or_as_none(database_url,
                                                                          tenant):
    async def revoked() -> str:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            key = await create_key(conn, tenant.name, ("read",), name="gone")
            await revoke_key(conn, tenant.name, key.key_id)
        return key.token

    async def go(token: str) -> tuple[object, ...]:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            async with authenticating(conn, token) as principal:
                # Sent before the lookup's answer is awaited, read under its tenant.
                who, keys = await conn.execute(WHO), await conn.execute(KEYS)
                seen = await who.fetchone(), await keys.fetchone()
                found = await principal()
                assert await principal() is found
            return found, seen, conn.info.transaction_status, conn.info.pipeline_status

    found, seen, status, pipeline = run(go(tenant.token))
    assert found is not None and found.tenant == tenant.name
    assert seen[0] == ("trailseal_reader", tenant.name)
    assert seen[1] is not None and seen[1][0] > 0  # the tenant's keys
    assert (status, pipeline) == (pq.TransactionStatus.IDLE, pq.PipelineStatus.OFF)
    for bad in (run(revoked()), "tsk_" + "0" * 43):
        found, seen, status, pipeline = run(go(bad))
        assert found is None
        assert seen[0] is not None and seen[0][1] in (None, "")
        assert seen[1] == (0,)  # no tenant: no key is visible
        assert (status, pipeline) == (pq.TransactionStatus.IDLE, pq.PipelineStatus.OFF)


def test_scoped_ahead_commits_and_an_exception_rolls_it_back(database_url, tenant):
    before = _keys(database_url, tenant)
    insert = ("INSERT INTO trailseal.api_keys (tenant, id, name, token_hash, token_hint,"
              " scopes) VALUES (%s, gen_random_uuid(), %s, sha256(%s), 'tsk_…', '{read}')")
    scope = "SELECT set_config('trailseal.tenant', %s, true)"

    async def go(name: str, fail: bool) -> tuple[object, ...]:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            try:
                async with scoped_ahead(conn, Role.OWNER, scope, (tenant.name,)):
                    await conn.execute(insert, (tenant.name, name, name.encode()))
                    if fail:
                        raise LookupError("stop")
            except LookupError:
                pass
            return conn.info.transaction_status, conn.info.pipeline_status

    assert run(go("ahead-rolled-back", fail=True)) == (
        pq.TransactionStatus.IDLE, pq.PipelineStatus.OFF)
    assert _keys(database_url, tenant) == before
    run(go("ahead-committed", fail=False))
    assert _keys(database_url, tenant) == before + 1


def test_a_statement_failing_after_authenticating_leaves_the_lookup_and_the_connection(
        database_url, tenant):
    async def go() -> tuple[object, ...]:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            found = None
            with pytest.raises(psycopg.errors.DivisionByZero):
                async with authenticating(conn, tenant.token) as principal:
                    cur = await conn.execute("SELECT 1 / %s", (0,))
                    try:
                        await cur.fetchone()
                    finally:
                        found = await principal()  # answered before the failure
            status, pipeline = conn.info.transaction_status, conn.info.pipeline_status
            async with authenticated(conn, tenant.token) as again:
                return found, again, status, pipeline

    found, again, status, pipeline = run(go())
    assert found is not None and found == again
    assert (status, pipeline) == (pq.TransactionStatus.IDLE, pq.PipelineStatus.OFF)
