"""Upgrading a populated database: a log sequenced before the tree existed (migration
0001 only) gets its tiles and checkpoints when the sequencer next runs, and verifies; an
event numbered by its producer (migration 0003) is tracked in the upgraded database."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from psycopg import AsyncConnection

from tests.support import an_event, fresh_database, run
from trailseal import ingest
from trailseal.integrity import GENESIS_CHAIN_HASH, chain_hash
from trailseal.integrity.checkpoint import log_origin
from trailseal.runtime import build_sequencer, load_signer
from trailseal.store import create_pool, migrate
from trailseal.tenants import authenticate, create_key, create_tenant, revoke_key
from trailseal.verify import verify_tenant


def test_a_log_from_before_the_tree_is_caught_up(database_url, settings):
    with fresh_database(database_url, "trailseal_upgrade") as url:
        assert [m.version for m in migrate.migrate(url, target=1)] == [1]
        at = ingest.now()
        old = ingest.prepare([an_event() for _ in range(300)], "legacy", at)
        with psycopg.connect(url, autocommit=True) as conn:  # the log as 0001 left it
            run(_tenant(url))
            chain = GENESIS_CHAIN_HASH
            for seq, event in enumerate(old):
                chain = chain_hash(chain, event.leaf_hash)
                conn.execute(
                    "INSERT INTO trailseal.events (tenant, seq, id, occurred_at, received_at,"
                    " actor_type, actor_id, action, target_type, target_id, outcome, canonical,"
                    " leaf_hash, chain_hash) VALUES ('legacy', %s, %s, %s, %s, 'user', 'u_1',"
                    " 'user.login.succeeded', 'user', 'u_1', 'success', %s, %s, %s)",
                    (seq, event.id, at, at, event.canonical, event.leaf_hash, chain))
            conn.execute("INSERT INTO trailseal.log_heads (tenant, size, chain_hash)"
                         " VALUES ('legacy', 300, %s)", (chain,))
        later = [m.version for m in migrate.available()[1:]]
        assert [m.version for m in migrate.migrate(url)] == later
        run(_ingest_and_sequence(url, settings))
        report = run(_verify(url, settings))
        assert report.ok, report.finding
        assert (report.events, report.checkpoints) == (301, 1)


async def _tenant(url: str) -> None:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await create_tenant(conn, "legacy")


async def _ingest_and_sequence(url: str, settings) -> None:
    pool = create_pool(url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        at = ingest.now()
        async with pool.connection() as conn:
            numbered = an_event(context={"source": "legacy-app", "source_seq": 0})
            await ingest.write_inbox(conn, "legacy", ingest.prepare([numbered], "legacy", at), at)
        assert await build_sequencer(pool, settings).sequence_tenant("legacy") == 1
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT source, high_water, max_seen FROM trailseal.sources"
                " WHERE tenant = 'legacy'"
            )
            assert await cur.fetchall() == [("legacy-app", 0, 0)]
    finally:
        await pool.close()


async def _verify(url: str, settings):
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        return await verify_tenant(conn, "legacy", [load_signer(settings).verifier()],
                                   origin=log_origin("audit.test", "legacy"))


def _statistics(url: str) -> list[tuple[str, bool]]:
    """Each events partition, and whether its target statistics are there and filled."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT c.relname, d.stxoid IS NOT NULL FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_statistic_ext s"
            "  ON s.stxrelid = c.oid AND s.stxname = c.relname || '_targets'"
            " LEFT JOIN pg_statistic_ext_data d ON d.stxoid = s.oid"
            " WHERE i.inhparent = 'trailseal.events'::regclass ORDER BY c.relname"
        ).fetchall()


def test_each_partition_gets_the_target_statistics(database_url, settings):
    # Migration 0010: the partitions an earlier version made get the statistics and are
    # analysed (filled in) at once; each partition made later gets them when created.
    with fresh_database(database_url, "trailseal_statistics") as url:
        migrate.migrate(url, target=9)
        run(_tenant(url))
        run(_ingest_and_sequence(url, settings))  # makes this month's partition
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_statistic_ext").fetchone() == (0,)
        with psycopg.connect(url, autocommit=True) as conn:
            before = [row[0] for row in conn.execute(
                "SELECT inhrelid::regclass::text FROM pg_inherits"
                " WHERE inhparent = 'trailseal.events'::regclass ORDER BY 1")]
        migrate.migrate(url)
        found = dict(_statistics(url))
        assert sorted(f"trailseal.{p}" for p in found) == before
        assert found[f"events_{ingest.now():%Y_%m}"]  # the one holding the event: analysed
        with psycopg.connect(url, autocommit=True) as conn:
            made = conn.execute("SELECT trailseal.create_events_partition(now() + interval"
                                " '70 days')").fetchone()
            assert made is not None and made[0] not in found
            assert conn.execute(
                "SELECT stxkind FROM pg_statistic_ext WHERE stxname = %s",
                (made[0] + "_targets",)).fetchone() == (["f", "m"],)  # dependencies, mcv
        assert sorted(dict(_statistics(url))) == sorted([*found, made[0]])


def test_the_event_times_rule_is_checked_on_the_existing_log(database_url, settings):
    # Migration 0011 adds "occurred_at <= received_at + 1 day" to the inbox and the log.
    # Rows ingest wrote always keep it, and the upgrade takes them; a row written around
    # ingest that breaks it stops the upgrade with a message naming the rule, and
    # nothing of 0011 is applied.
    with fresh_database(database_url, "trailseal_times") as url:
        migrate.migrate(url, target=10)
        run(_tenant(url))
        run(_ingest_and_sequence(url, settings))
        assert [m.version for m in migrate.migrate(url, target=11)] == [11]
    with fresh_database(database_url, "trailseal_times") as url:
        migrate.migrate(url, target=10)
        run(_tenant(url))
        run(_ingest_and_sequence(url, settings))
        at = ingest.now()
        event = ingest.prepare([an_event()], "legacy", at)[0]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO trailseal.events (tenant, seq, id, occurred_at, received_at,"
                " actor_type, actor_id, action, target_type, target_id, outcome, canonical,"
                " leaf_hash, chain_hash) VALUES ('legacy', 1, %s, %s, %s, 'user', 'u_1',"
                " 'user.login.succeeded', 'user', 'u_1', 'success', %s, %s, %s)",
                (event.id, at + timedelta(days=2), at, event.canonical, event.leaf_hash,
                 chain_hash(GENESIS_CHAIN_HASH, event.leaf_hash)))
        with pytest.raises(migrate.MigrationError,
                           match=r"holds 1 event\(s\) whose occurred_at is more than a day"):
            migrate.migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute(
                "SELECT max(version) FROM trailseal.schema_migrations").fetchone() == (10,)
            assert conn.execute(
                "SELECT count(*) FROM pg_constraint WHERE conname LIKE '%occurred_by_received'"
            ).fetchone() == (0,)


def test_keys_made_before_authenticate_kept_its_plan_still_authenticate(database_url):
    # Migration 0012 rewrites trailseal.authenticate() in PL/pgSQL: the same answers, the
    # same owner and grants, for keys made before it.
    async def key(url: str) -> tuple[str, str]:
        async with await AsyncConnection.connect(url, autocommit=True) as conn:
            await create_tenant(conn, "legacy")
            live = await create_key(conn, "legacy", ("read",), name="live")
            gone = await create_key(conn, "legacy", ("read",), name="gone")
            await revoke_key(conn, "legacy", gone.key_id)
        return live.token, gone.token

    async def principal(url: str, token: str) -> object:
        async with await AsyncConnection.connect(url, autocommit=True) as conn:
            found = await authenticate(conn, token)
        return None if found is None else (found.tenant, sorted(found.scopes))

    def definition(url: str) -> tuple[object, ...]:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT l.lanname, p.prosecdef, pg_get_userbyid(p.proowner), p.proacl::text[]"
                " FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang"
                " WHERE p.oid = 'trailseal.authenticate(bytea)'::regprocedure").fetchone()
        assert row is not None
        return tuple(row)

    with fresh_database(database_url, "trailseal_authenticate") as url:
        migrate.migrate(url, target=11)
        live, gone = run(key(url))
        before = definition(url)
        assert before[0] == "sql"
        assert [m.version for m in migrate.migrate(url, target=12)] == [12]
        assert definition(url) == ("plpgsql", *before[1:])
        assert run(principal(url, live)) == ("legacy", ["read"])
        assert run(principal(url, gone)) is None
        assert run(principal(url, "tsk_" + "0" * 43)) is None
